"""Text read with number values: <num> positions for the numbers in strings, logs and code."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.inputs.numtext import segments
from rlm.inputs.textnums import TextNumberEncoder
from rlm.inputs.vocab import BOS_ID, EOS_ID, TRUNC_ID, InputTokenizer, VocabConfig

CODE = [
    "int a[100005]; for (i = 0; i < n; i++) a[i] = 2 * i;",
    "double lr = 3e-4; // conv3x3 x264 v2 0x1F",
    "long long dp[2005][2005];",
    "print(-5 + 2.5)",
    "",
]


@pytest.mark.parametrize(
    ("text", "keep_digits", "expected"),
    [
        ("a[100005];", False, ["a[", 100005.0, "];"]),
        ("a[100005];", True, ["a[100005", 100005.0, "];"]),
        ("lr = 3e-4", False, ["lr = ", 0.0003]),
        ("-5 + 2.5", False, [-5.0, " + ", 2.5]),
        ("-5 + 2.5", True, ["-5", -5.0, " + 2.5", 2.5]),
        ("conv3x3 x264 lr_1e3 v2 0x1F 3.11.4", False, ["conv3x3 x264 lr_1e3 v2 0x1F 3.11.4"]),
        ("", False, []),
        ("7", True, ["7", 7.0]),
    ],
)
def test_segments(text: str, keep_digits: bool, expected: list) -> None:
    assert segments(text, keep_digits) == expected


def _encoder(numbers: str, max_length: int = 64) -> TextNumberEncoder:
    config = VocabConfig(numbers=numbers, vocab_size=300, max_length=max_length)  # type: ignore[arg-type]
    return TextNumberEncoder.train(CODE * 5, config)


@pytest.mark.parametrize("numbers", ["value", "both"])
def test_each_number_is_one_num_position_carrying_its_value(numbers: str) -> None:
    enc = _encoder(numbers)
    row = enc.encode("a[100005] = -2.5;")
    at = np.flatnonzero(row.ids == enc.num_id)
    assert len(at) == 2
    assert row.nums[at, 0].tolist() == [1.0, 1.0]  # is_number
    assert row.nums[at, 1].tolist() == [1.0, -1.0]  # sign
    assert row.nums[np.setdiff1d(np.arange(len(row)), at)].sum() == 0
    assert row.keys.tolist() == [0] * len(row)
    assert row.pos.tolist() == list(range(len(row)))
    assert row.ids[0] == BOS_ID and row.ids[-1] == EOS_ID
    digits = set(enc.tokenizer.pieces("100005"))
    assert bool(digits & set(row.ids.tolist())) == (numbers == "both")


def test_value_mode_is_shorter_and_the_tokenizer_never_learns_digits() -> None:
    value, both = _encoder("value"), _encoder("both")
    text = CODE[0]
    assert len(value.encode(text)) < len(both.encode(text))
    assert value.vocab_size == value.tokenizer.vocab_size + 1


def test_truncation_keeps_features_with_their_positions() -> None:
    enc = _encoder("value", max_length=8)
    row = enc.encode(" ".join(str(i) for i in range(1, 40)))  # <num> " " <num> " " ...
    assert len(row) == 8
    assert row.ids[4] == TRUNC_ID  # <bos>, 3 head items, <trunc>, 2 tail items, <eos>
    kept = row.ids == enc.num_id
    # head 1 " " 2, tail " " 39: each value still on its own <num>
    np.testing.assert_allclose(row.nums[kept, 2] * 5, np.log10(1 + np.array([1, 2, 39])), rtol=1e-6)


ENCODERS = {n: _encoder(n, max_length=24) for n in ("value", "both")}


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab 0123456789.-e+x_[];", max_size=80), st.sampled_from(["value", "both"]))
def test_any_text_encodes_within_bounds(text: str, numbers: str) -> None:
    enc = ENCODERS[numbers]
    row = enc.encode(text)
    assert 2 <= len(row) <= enc.tokenizer.config.max_length
    assert ((row.ids == enc.num_id) == (row.nums[:, 0] == 1.0)).all()
    assert np.isfinite(row.nums).all()
    assert row.ids.min() >= 0 and row.ids.max() < enc.vocab_size


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"numbers": "values"}, "numbers='values'"),
        ({"numbers": "value", "pattern": r"\w+"}, "drop one of the two"),
    ],
)
def test_bad_vocab_config(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        VocabConfig(**kw)


def test_digit_tokenizer_is_refused() -> None:
    tok = InputTokenizer.train(CODE, VocabConfig(vocab_size=300))
    with pytest.raises(ValueError, match="numbers='digits'"):
        TextNumberEncoder(tok)
    with pytest.raises(ValueError, match="text 1 is int"):
        _encoder("value").encode_batch(["ok", 3])  # type: ignore[list-item]


def test_model_reads_text_numbers_saves_and_loads(tmp_path) -> None:
    from rlm import RegressionLM, TrainConfig

    xs = [f"int a[{n}]; fill(a, {n % 7});" for n in range(100, 4100, 100)]
    y = [float(n) for n in range(100, 4100, 100)]
    m = RegressionLM(
        model="tiny",
        vocab=VocabConfig(numbers="value", vocab_size=300, max_length=32),
        train=TrainConfig(max_epochs=2, progress=False, batch_size=8),
    )
    m.fit(xs, y)
    assert m.text_numbers is not None and m.fields is None
    assert m.net is not None and m.net.numbers is not None  # the number projection is built
    before = m.predict(xs[:3], samples=4)
    loaded = RegressionLM.load(m.save(tmp_path / "ck"))
    assert loaded.text_numbers is not None
    assert loaded.vocab_config.numbers == "value"
    np.testing.assert_array_equal(loaded.predict(xs[:3], samples=4), before)


def test_inputs_longer_than_the_position_table_are_refused() -> None:
    from rlm import RegressionLM, TrainConfig

    m = RegressionLM(
        model="tiny",
        vocab=VocabConfig(numbers="value", max_length=4096),
        train=TrainConfig(max_epochs=1, progress=False),
    )
    with pytest.raises(ValueError, match="max_length=4096 exceeds the model's max_input_len"):
        m.fit(["a 1", "b 2"], [1.0, 2.0])


def test_cli_option(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from rlm.cli import app

    rows = [{"x": f"n = {i}", "y": {"t": float(i)}, "split": "train"} for i in range(1, 30)]
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "ck"
    args = ["train", str(data), "--out", str(out), "--preset", "tiny", "--epochs", "1"]
    result = CliRunner().invoke(app, [*args, "--text-numbers", "both", "--no-progress"])
    assert result.exit_code == 0, result.output
    info = json.loads(CliRunner().invoke(app, ["info", str(out), "--json"]).stdout)
    assert info["vocab"]["numbers"] == "both"
