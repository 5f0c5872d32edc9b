"""Input tokenizer: golden encodings, truncation, round trips, persistence, determinism."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.inputs.text import serialize
from rlm.inputs.vocab import SPECIAL_TOKENS, InputTokenizer, VocabConfig
from rlm.io import load_demo


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    texts = [serialize(e.x) for e in load_demo("x264", split="train")[:300]]
    return texts + [e.x for e in load_demo("nas201", split="train")[:300]]  # type: ignore[misc]


@pytest.fixture(scope="module")
def bpe(corpus) -> InputTokenizer:
    return InputTokenizer.train(corpus, VocabConfig(vocab_size=400, max_length=512))


@pytest.fixture(scope="module")
def byte_tok() -> InputTokenizer:
    return InputTokenizer.train([], VocabConfig(kind="bytes", max_length=512))


@pytest.fixture(params=["bpe", "bytes"])
def tok(request, bpe, byte_tok) -> InputTokenizer:
    return bpe if request.param == "bpe" else byte_tok


def test_specials_at_fixed_ids(tok):
    hf = tok.hf_tokenizer
    assert [hf.id_to_token(i) for i in range(5)] == list(SPECIAL_TOKENS)
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id, tok.trunc_id) == (0, 1, 2, 3, 4)


def test_sizes(bpe, byte_tok):
    assert byte_tok.vocab_size == 261
    assert 261 < bpe.vocab_size <= 400


@pytest.mark.parametrize("text", ["x264 123", "Qp 23, Crf 0.6", "|nor_conv_3x3~0|", "1e-07 99"])
def test_each_digit_is_one_token(tok, text):
    toks = tok.tokens(text)
    assert toks[0] == "<bos>" and toks[-1] == "<eos>"
    for t in toks[1:-1]:
        # A token holding a digit is exactly that digit: BPE never merges across digits.
        if any(c.isdigit() for c in t):
            assert len(t) == 1, toks


def test_x264_digits_golden(tok):
    toks = tok.tokens("x264 123")
    assert [t for t in toks if t.isdigit()] == ["2", "6", "4", "1", "2", "3"]


def test_bpe_learns_merges(bpe, byte_tok):
    text = serialize(load_demo("x264")[0].x)
    assert len(bpe.encode(text)) < len(byte_tok.encode(text))


def test_literal_special_text_is_not_a_control_token(tok):
    ids = tok.encode("<eos><pad><trunc>")
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert not set(ids[1:-1]) & {0, 1, 2, 3, 4}
    assert tok.decode(ids) == "<eos><pad><trunc>"


@pytest.mark.parametrize(
    ("truncation", "n_chars", "max_length"),
    [("head_tail", 100, 10), ("head_tail", 100, 11), ("head", 100, 10), ("head_tail", 5, 5)],
)
def test_truncation_exact_length(byte_tok, truncation, n_chars, max_length):
    cfg = VocabConfig(kind="bytes", max_length=max_length, truncation=truncation)
    tok = InputTokenizer(byte_tok.hf_tokenizer, cfg)
    text = "".join(chr(ord("a") + i % 26) for i in range(n_chars))
    ids = tok.encode(text)
    assert len(ids) == max_length
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert ids.count(tok.trunc_id) == 1
    keep = max_length - 3
    if truncation == "head":
        assert tok.decode(ids) == text[:keep] + "<trunc>"
    else:
        head, tail = (keep + 1) // 2, keep // 2
        assert tok.decode(ids) == text[:head] + "<trunc>" + text[n_chars - tail :]


def test_fitting_text_is_not_truncated(byte_tok):
    tok = InputTokenizer(byte_tok.hf_tokenizer, VocabConfig(kind="bytes", max_length=6))
    assert tok.encode("abcd") == [2, *byte_tok.encode("abcd")[1:-1], 3]
    assert len(tok.encode("abcd")) == 6
    assert tok.trunc_id in tok.encode("abcde")
    assert tok.encode("") == [tok.bos_id, tok.eos_id]


def test_encode_batch_matches_encode(tok, corpus):
    texts = [*corpus[:20], "", "é 😀 \t\n", "x" * 500]
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]


def test_decode_drops_padding(tok):
    ids = tok.encode("Qp 23")
    assert tok.decode(ids + [tok.pad_id] * 3) == "Qp 23"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([10_000])


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40))
def test_round_trip(bpe, byte_tok, s):
    # 40 characters are at most 160 UTF-8 bytes; both tokenizers get room for all of them.
    for base in (bpe, byte_tok):
        tok = InputTokenizer(base.hf_tokenizer, VocabConfig(kind=base.config.kind, max_length=170))
        ids = tok.encode(s)
        assert tok.trunc_id not in ids
        assert tok.decode(ids) == s


def test_save_load_round_trip(tmp_path, bpe, byte_tok, corpus):
    for tok in (bpe, byte_tok):
        path = tok.save(tmp_path)  # a directory gets tokenizer.json inside
        assert path == tmp_path / "tokenizer.json"
        obj = json.loads(path.read_text())
        assert set(obj) == {"rlm_vocab_config", "tokenizer"}
        loaded = InputTokenizer.load(path)
        assert loaded.config == tok.config
        assert loaded.to_json() == tok.to_json()
        assert loaded.encode_batch(corpus[:50]) == tok.encode_batch(corpus[:50])
        assert InputTokenizer.from_json(tok.to_json()).vocab_size == tok.vocab_size


def test_from_json_rejects_foreign_files(bpe):
    with pytest.raises(ValueError, match="not an rlm tokenizer file"):
        InputTokenizer.from_json(bpe.hf_tokenizer.to_str())


def test_training_is_deterministic(corpus, bpe):
    again = InputTokenizer.train(corpus, VocabConfig(vocab_size=400, max_length=512))
    assert again.to_json() == bpe.to_json()


def test_training_rejects_non_strings():
    with pytest.raises(ValueError, match="training text 1 is NoneType"):
        InputTokenizer.train(["a", None], VocabConfig())  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "wordpiece"}, "'bpe' or 'bytes'"),
        ({"vocab_size": 100}, "at least 261"),
        ({"min_frequency": 0}, "1 or more"),
        ({"max_length": 4}, "at least 5"),
        ({"max_length": 3, "truncation": "head"}, "at least 4"),
        ({"truncation": "tail"}, "'head_tail' or 'head'"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VocabConfig(**kwargs)


def test_config_dict_round_trip():
    cfg = VocabConfig(kind="bytes", vocab_size=300, max_length=32, truncation="head")
    assert VocabConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown VocabConfig keys \['size'\]"):
        VocabConfig.from_dict({"size": 3})


def test_structure_aware_pattern_keeps_only_matches_as_whole_tokens() -> None:
    cell = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
    cfg = VocabConfig(pattern=r"[a-z_0-9]+~\d|\+", vocab_size=512, min_frequency=1)
    tok = InputTokenizer.train([cell] * 3, cfg)
    assert tok.tokens(cell)[1:-1] == [
        "nor_conv_3x3~0",
        "+",
        "none~0",
        "skip_connect~1",
        "+",
        "avg_pool_3x3~0",
        "nor_conv_1x1~1",
        "none~2",
    ]
    again = InputTokenizer.from_json(tok.to_json())
    assert again.encode(cell) == tok.encode(cell) and again.config.pattern == cfg.pattern


def test_bad_pattern_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a valid regex"):
        VocabConfig(pattern="[unclosed")
