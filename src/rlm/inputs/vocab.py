"""Input tokenizer: text -> token ids for the encoder, built on Hugging Face ``tokenizers``.

Design choices, and why:

* **Byte-level**: every string encodes, whatever its script, emoji or control characters, because
  the 256 byte symbols are always in the vocabulary. There is no ``<unk>`` in practice, and a
  tokenizer trained on configs still reads program text.
* **One token per digit**: the ``Digits(individual_digits=True)`` pre-tokenizer runs first, so
  BPE can never merge ``23`` into one opaque token. Numbers in the input stay compositional,
  which is what a regression model needs to read magnitudes.
* **Specials are ids only**: ``<pad> <unk> <bos> <eos> <trunc>`` sit at ids 0..4, but they are
  *not* registered as HF "added tokens". An input that literally contains ``<eos>`` (code often
  does) is read as bytes, and only this module ever emits the control ids.
* **Head+tail truncation** with a visible ``<trunc>`` token in the middle, done here in Python
  because HF truncation only keeps the head.
* **Code-aware input** (``code``, ``rlm.inputs.code``): comments, docstrings and blank lines
  are removed (and identifiers split, for ``"split"``) before anything is tokenized, in
  training and in encoding alike (``prepare_text``), so the BPE learns the text it will read.
* **One file**: ``tokenizer.json`` is a wrapper ``{"rlm_vocab_config": {...}, "tokenizer": {...}}``
  holding our config and the unmodified HF tokenizer JSON, so a model directory has one file
  per concept and loading never needs the network.

Training is deterministic (same texts and config -> identical JSON); a test checks it.
Torch-free on purpose (a test enforces it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from ..checkpoint import atomic_write
from ..strict import strict_from_dict
from .code import code_text

Kind = Literal["bpe", "bytes"]
Truncation = Literal["head_tail", "head"]
TextNumbers = Literal["digits", "value", "both"]
CodeInput = Literal["off", "strip", "split"]
T = TypeVar("T")

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>", "<trunc>")
PAD_ID, UNK_ID, BOS_ID, EOS_ID, TRUNC_ID = range(5)
NUM_BYTE_SYMBOLS = 256
MIN_VOCAB_SIZE = len(SPECIAL_TOKENS) + NUM_BYTE_SYMBOLS  # 261: the "bytes" vocabulary
FILE_NAME = "tokenizer.json"
_CONFIG_KEY = "rlm_vocab_config"
_TOKENIZER_KEY = "tokenizer"


@dataclass(frozen=True)
class VocabConfig:
    """Input vocabulary settings.

    ``vocab_size`` is an upper bound: BPE stops earlier when the corpus has no more frequent
    pairs, and the "bytes" kind always has exactly 261 tokens. ``max_length`` counts every token
    of an encoded input, ``<bos>`` and ``<eos>`` included.
    """

    kind: Kind = "bpe"
    vocab_size: int = 512
    min_frequency: int = 2
    max_length: int = 256
    truncation: Truncation = "head_tail"
    # Structure-aware input: a regex whose matches are the only pieces kept (text between
    # matches is dropped) and inside which BPE may merge freely (no digit split). For a
    # NAS-Bench-201 cell, r"[a-z_0-9]+~\d|\+" reduces the string to its edge tokens.
    pattern: str | None = None
    # Numbers in text inputs (strings, logs, code; see ``rlm.inputs.textnums``): "digits" reads
    # them as digit tokens only; "value" replaces each with a <num> position carrying its value
    # (the field encoder's number projection); "both" keeps the digits and adds the <num>.
    # Mapping inputs read as fields always read numbers as values; this option is for text.
    numbers: TextNumbers = "digits"
    # Source code in text inputs (``rlm.inputs.code``): "strip" removes comments, docstrings and
    # blank lines and keeps indentation to one space per level, so more of a long program fits
    # in max_length; "split" also splits identifiers into lowercase words (maxValue -> max
    # value). Applied to whole text inputs, before numbers are read. A tokenizer saved before
    # this option existed loads as "off", which is what it did.
    code: CodeInput = "off"

    def __post_init__(self) -> None:
        if self.code not in ("off", "strip", "split"):
            raise ValueError(f"code={self.code!r}: choose 'off', 'strip' or 'split'")
        if self.code != "off" and self.pattern is not None:
            raise ValueError(
                f"code={self.code!r} with pattern={self.pattern!r}: a pattern already picks the "
                "pieces it keeps, and code would change the text it matches; drop one of the two"
            )
        if self.numbers not in ("digits", "value", "both"):
            raise ValueError(f"numbers={self.numbers!r}: choose 'digits', 'value' or 'both'")
        if self.numbers != "digits" and self.pattern is not None:
            raise ValueError(
                f"numbers={self.numbers!r} with pattern={self.pattern!r}: a pattern keeps only "
                "its matches, so numbers between them cannot be read; drop one of the two"
            )
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as e:
                raise ValueError(f"pattern={self.pattern!r} is not a valid regex: {e}") from None
            if not self.pattern:
                raise ValueError("pattern='' matches nothing useful: use None for the default")
        if self.kind not in ("bpe", "bytes"):
            raise ValueError(f"kind={self.kind!r}: choose 'bpe' or 'bytes'")
        for name in ("vocab_size", "min_frequency", "max_length"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{name}={v!r}: use an int")
        if self.vocab_size < MIN_VOCAB_SIZE:
            raise ValueError(
                f"vocab_size={self.vocab_size}: need at least {MIN_VOCAB_SIZE} "
                f"({len(SPECIAL_TOKENS)} specials + {NUM_BYTE_SYMBOLS} bytes)"
            )
        if self.min_frequency < 1:
            raise ValueError(f"min_frequency={self.min_frequency}: use 1 or more")
        if self.truncation not in ("head_tail", "head"):
            raise ValueError(f"truncation={self.truncation!r}: choose 'head_tail' or 'head'")
        need = self.min_length()
        if self.max_length < need:
            raise ValueError(
                f"max_length={self.max_length}: {self.truncation} truncation needs at least "
                f"{need} (<bos>, kept tokens, <trunc>, <eos>)"
            )

    def min_length(self) -> int:
        # <bos> head <trunc> [tail] <eos>, with at least one kept token per side.
        return 5 if self.truncation == "head_tail" else 4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VocabConfig:
        return strict_from_dict(cls, d)


def _byte_level_pipeline(tok: Tokenizer, pattern: str | None = None) -> Tokenizer:
    if pattern is None:
        first = pre_tokenizers.Digits(individual_digits=True)
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        # keep only the matches, each one pre-token; BPE merges within them
        first = pre_tokenizers.Split(Regex(pattern), "removed", invert=True)
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.pre_tokenizer = pre_tokenizers.Sequence([first, byte_level])
    tok.decoder = decoders.ByteLevel()
    return tok


def _strip_added_tokens(tok: Tokenizer) -> Tokenizer:
    """Drop HF's added-token table so literal '<eos>' text is encoded as bytes (see module doc)."""
    d = json.loads(tok.to_str())
    d["added_tokens"] = []
    return Tokenizer.from_str(json.dumps(d))


class InputTokenizer:
    """Byte-level BPE (or plain bytes) over input text, with fixed special ids 0..4."""

    # the special ids are the same in every tokenizer (checked in __init__)
    pad_id: int = PAD_ID
    unk_id: int = UNK_ID
    bos_id: int = BOS_ID
    eos_id: int = EOS_ID
    trunc_id: int = TRUNC_ID

    def __init__(self, tokenizer: Tokenizer, config: VocabConfig) -> None:
        for i, s in enumerate(SPECIAL_TOKENS):
            if tokenizer.token_to_id(s) != i:
                raise ValueError(
                    f"tokenizer maps {s!r} to id {tokenizer.token_to_id(s)}, not {i}: "
                    "build it with InputTokenizer.train"
                )
        self._tok = tokenizer
        self._config = config

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def train(
        cls, texts: Iterable[str], config: VocabConfig | None = None, *, prepared: bool = False
    ) -> InputTokenizer:
        """Train a tokenizer; for ``kind="bytes"`` the texts are ignored (nothing to learn).

        Each text is read as ``encode`` reads it (``prepare_text``: ``VocabConfig.code``)
        unless ``prepared``: the caller passes pieces of texts it prepared itself (the text
        between numbers, ``rlm.inputs.textnums``), which must not be prepared again.
        """
        cfg = VocabConfig() if config is None else config
        # Sorted so the byte ids do not depend on set iteration order.
        alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
        if cfg.kind == "bytes":
            vocab = {s: i for i, s in enumerate(SPECIAL_TOKENS)}
            vocab.update({s: len(SPECIAL_TOKENS) + i for i, s in enumerate(alphabet)})
            tok = _byte_level_pipeline(
                Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>")), cfg.pattern
            )
            return cls(tok, cfg)
        tok = _byte_level_pipeline(Tokenizer(models.BPE(unk_token="<unk>")), cfg.pattern)
        trainer = trainers.BpeTrainer(
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=alphabet,
            show_progress=False,
        )
        read = checked(texts)
        if not prepared and cfg.code != "off":
            read = (prepare_text(t, cfg) for t in read)
        tok.train_from_iterator(read, trainer)
        return cls(_strip_added_tokens(tok), cfg)

    # -- properties --------------------------------------------------------------------------

    @property
    def config(self) -> VocabConfig:
        return self._config

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def hf_tokenizer(self) -> Tokenizer:
        """The underlying HF tokenizer (no specials added by it; use ``encode`` for model input)."""
        return self._tok

    # -- encoding ----------------------------------------------------------------------------

    def _frame(self, ids: list[int]) -> list[int]:
        return frame(ids, self._config, (BOS_ID, TRUNC_ID, EOS_ID))

    def prepare(self, text: str) -> str:
        """``text`` as this tokenizer reads a whole input: ``prepare_text`` (``code``)."""
        return prepare_text(text, self._config)

    def encode(self, text: str) -> list[int]:
        """``<bos> ... <eos>``, at most ``max_length`` ids (exactly that many when truncated)."""
        if not isinstance(text, str):
            raise ValueError(f"encode needs a str, got {type(text).__name__}: serialize x first")
        return self._frame(self.pieces(self.prepare(text)))

    def pieces(self, text: str) -> list[int]:
        """Token ids of ``text`` alone: no ``<bos>``/``<eos>``, no truncation (the caller, e.g.
        the field encoder reading a string value, bounds how many it keeps), and no
        ``prepare``: a piece is a part of an input, not a program."""
        return self._tok.encode(text, add_special_tokens=False).ids if text else []

    def pieces_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """``pieces`` for many texts at once, using the (parallel) Rust batch encoder."""
        encs = self._tok.encode_batch(list(checked(texts, "text")), add_special_tokens=False)
        return [e.ids for e in encs]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """``encode`` for many texts at once."""
        read = [self.prepare(t) for t in checked(texts, "text")]
        return [self._frame(ids) for ids in self.pieces_batch(read)]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; <pad>, <bos> and <eos> are dropped, <trunc> is shown as '<trunc>'.

        ``decode(encode(s)) == prepare(s)`` (``s`` itself with ``code="off"``) whenever it
        was not truncated.
        """
        bad = [i for i in ids if not 0 <= int(i) < self.vocab_size]
        if bad:
            raise ValueError(f"ids {bad[:5]} are outside the vocabulary (size {self.vocab_size})")
        keep = [int(i) for i in ids if int(i) not in (PAD_ID, BOS_ID, EOS_ID)]
        # The specials are ordinary vocab entries made of printable ASCII, which the byte-level
        # decoder maps to themselves, so <trunc> and <unk> come out as their literal names.
        return self._tok.decode(keep, skip_special_tokens=False)

    def tokens(self, text: str) -> list[str]:
        """Token strings of ``encode(text)`` (byte-level symbols, e.g. 'Ġ' for a space)."""
        return [self._tok.id_to_token(i) for i in self.encode(text)]

    # -- persistence -------------------------------------------------------------------------

    def to_json(self) -> str:
        """``{"rlm_vocab_config": {...}, "tokenizer": <HF tokenizer JSON>}``."""
        obj = {_CONFIG_KEY: self._config.to_dict(), _TOKENIZER_KEY: json.loads(self._tok.to_str())}
        return json.dumps(obj, ensure_ascii=False)

    @classmethod
    def from_json(cls, s: str) -> InputTokenizer:
        obj = json.loads(s)
        if not isinstance(obj, dict) or set(obj) != {_CONFIG_KEY, _TOKENIZER_KEY}:
            keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise ValueError(
                f"not an rlm tokenizer file (top-level {keys}); expected keys "
                f"{[_CONFIG_KEY, _TOKENIZER_KEY]}: save it with InputTokenizer.save"
            )
        config = VocabConfig.from_dict(obj[_CONFIG_KEY])
        return cls(Tokenizer.from_str(json.dumps(obj[_TOKENIZER_KEY])), config)

    def save(self, path: str | Path) -> Path:
        """Write the single tokenizer file; a directory path gets ``tokenizer.json`` inside."""
        p = Path(path)
        if p.is_dir():
            p = p / FILE_NAME
        atomic_write(p, self.to_json().encode("utf-8"))  # never a half-written tokenizer
        return p

    @classmethod
    def load(cls, path: str | Path) -> InputTokenizer:
        """Read a file written by :meth:`save` (a directory means its ``tokenizer.json``)."""
        p = Path(path)
        if p.is_dir():
            p = p / FILE_NAME
        try:
            return cls.from_json(p.read_text(encoding="utf-8"))
        except ValueError as e:  # bad JSON or UTF-8, or not ours: say which file
            raise ValueError(f"{p} cannot be read: {e}") from None
        except Exception as e:  # the Rust parser's own error type: the same for the user
            raise ValueError(f"{p} cannot be read ({e}): the file is damaged") from None

    def __repr__(self) -> str:
        c = self._config
        return (
            f"InputTokenizer(kind={c.kind!r}, vocab_size={self.vocab_size}, "
            f"max_length={c.max_length}, truncation={c.truncation!r})"
        )


def frame(items: list[T], config: VocabConfig, marks: tuple[T, T, T]) -> list[T]:
    """``<bos> items <eos>``, truncated to exactly ``config.max_length`` when too long.

    ``marks`` are the (<bos>, <trunc>, <eos>) items: ids here, (id, value) pairs for text read
    with number values (``rlm.inputs.textnums``), so both readers cut inputs the same way.
    """
    bos, trunc, eos = marks
    budget = config.max_length - 2
    if len(items) <= budget:
        return [bos, *items, eos]
    keep = budget - 1  # one slot goes to <trunc>
    if config.truncation == "head":
        return [bos, *items[:keep], trunc, eos]
    head = (keep + 1) // 2
    tail = keep - head
    return [bos, *items[:head], trunc, *items[len(items) - tail :], eos]


def prepare_text(text: str, config: VocabConfig) -> str:
    """A whole text input as the tokenizer reads it: ``VocabConfig.code`` applied. The one
    place a text is transformed before tokenizing, for training, encoding and number reading."""
    if config.code == "off":
        return text
    return code_text(text, split_identifiers=config.code == "split")


def checked(texts: Iterable[str], what: str = "training text") -> Iterable[str]:
    """``texts``, each checked to be a str: a stray None or number would otherwise fail deep
    inside Rust, without saying which row."""
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"{what} {i} is {type(t).__name__}, not str: serialize x first")
        yield t
