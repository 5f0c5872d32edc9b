"""Field-aware encoding of mapping inputs: one encoder position per field, values read as what
they are.

A configuration serialised to text costs ~90 BPE/digit tokens for 17 options and hides each
number's magnitude in digit pieces. Read as fields, the same row is 17 positions, and each
position says *which option* (a key embedding) and *what value*:

* **categories**: booleans, strings, and numbers of a key with few distinct training values
  (at most ``max_categories``) get one token per ``key=value``;
* **numbers as values**: every number also carries features (sign, log-magnitude, the value
  standardised per key, its training quantile, a piecewise-linear encoding over the key's
  quantile bins) that the model projects into the encoder's width (``rlm.nn.model``). An
  unseen ``Crf=24.5`` lands between 24 and 25 instead of becoming byte pieces;
* **unseen strings are read from their content**, never collapsed into one unknown token: the
  value's BPE pieces follow its head position, and the numbers inside it (``"2.30GHz"``) are
  ``<num>`` positions carrying their value. A string that is exactly a number (``"0.01"``, a
  CSV cell) *is* a number. Seen strings get the same pieces, so the model learns to read them.
* nested mappings flatten to dotted keys (``a.b``), lists to indices (``a[0]``); ``null`` (or
  NaN) has its own token; a key never seen in training is counted in ``unknown_keys`` (the API
  warns) and read through a shared ``<unknown>`` key embedding.

Everything fitted (keys, categories, per-key statistics, the pieces' tokenizer) is saved with
the checkpoint and shown by ``rlm info``. Torch-free.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, get_args

import numpy as np

from ..strict import strict_from_dict
from .numtext import (
    parse_number,
    piecewise_linear,
    quantile_edges,
    quantile_position,
    segments,
    signed_log,
)
from .text import format_number
from .vocab import InputTokenizer, VocabConfig

NumberMode = Literal["auto", "both", "value", "category"]
VALUE_SPECIALS = ("<pad>", "<null>", "<number>", "<string>", "<num>")
PAD, NULL, NUMBER, STRING, NUM = range(len(VALUE_SPECIALS))
KEY_SPECIALS = ("<none>", "<unknown>")  # <none>: padding and the empty mapping's one position
NO_KEY, UNKNOWN_KEY = range(len(KEY_SPECIALS))
BASE_FEATURES = 5  # is_number, sign, signed log, asinh(z), quantile; then the PLE bins


@dataclass(frozen=True)
class FieldConfig:
    """How mapping inputs become encoder positions; saved with the model. ``numbers``:
    ``"both"`` gives few-valued numeric keys a token per value *and* every number its value
    features; ``"value"`` only the features; ``"category"`` only tokens (an unseen number is a
    bare ``<number>``: an ablation); ``"auto"`` (default): see ``resolved``."""

    numbers: NumberMode = "auto"
    max_categories: int = 32  # a numeric key with more distinct training values: value only
    bins: int = 16  # piecewise-linear bins per numeric key (training quantiles)
    max_pieces: int = 16  # positions after a string's head (its pieces and numbers)
    float_digits: int = 6  # how a number is spelled in its category token (``Qp=23``)

    def __post_init__(self) -> None:
        if self.numbers not in (modes := get_args(NumberMode)):
            raise ValueError(f"numbers={self.numbers!r}: choose one of {modes}")
        for name in ("max_categories", "bins", "max_pieces", "float_digits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}: use an int >= 1")

    @property
    def features(self) -> int:
        return BASE_FEATURES + self.bins

    def resolved(self, mixer: str = "attention") -> FieldConfig:
        """``numbers="auto"`` settled for ``ModelConfig.mixer``: ``"value"`` for slots (x264,
        1,000 rows, MSE, 60 s, three seeds: 0.958 / 0.958 / 0.950 test Spearman against 0.943
        / 0.931 / 0.943 with tokens too), ``"both"`` for attention (results/ablation.md)."""
        if self.numbers != "auto":
            return self
        return replace(self, numbers="value" if mixer == "slots" else "both")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FieldConfig:
        return strict_from_dict(cls, d)


@dataclass(frozen=True)
class KeyStats:
    """A numeric key's training statistics: mean, standard deviation, quantile bin edges."""

    mean: float
    std: float
    edges: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "edges": list(self.edges)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> KeyStats:
        return strict_from_dict(cls, d, tuples=("edges",))


@dataclass
class FieldRow:
    """One encoded mapping: per position a value token, a key, a position within the field
    (0 for the field's head, 1.. for a string's pieces) and the number features."""

    ids: np.ndarray  # (T,) int64 value-token ids
    keys: np.ndarray  # (T,) int64 key ids
    pos: np.ndarray  # (T,) int64
    nums: np.ndarray  # (T, F) float32; all zero where the position is not a number

    def __len__(self) -> int:
        return len(self.ids)


def flatten(x: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{"a": {"b": 1}, "c": [2, 3]}`` -> ``[("a.b", 1), ("c[0]", 2), ("c[1]", 3)]``, keys sorted."""
    out: list[tuple[str, Any]] = []
    for k in sorted(x, key=_key_text(prefix)):
        path = f"{prefix}.{k}" if prefix else k
        v = x[k]
        if type(v) in _PLAIN:  # most values: skip the abstract-class checks below (speed)
            out.append((path, v))
        elif isinstance(v, Mapping):
            out += flatten(v, path)
        elif isinstance(v, list | tuple):
            for i, e in enumerate(v):
                item = f"{path}[{i}]"
                out += flatten(e, item) if isinstance(e, Mapping) else [(item, e)]
        else:
            out.append((path, v))
    return out


_PLAIN = frozenset({int, float, str, bool, type(None)})  # JSON scalars, exactly these types


def _key_text(prefix: str):
    def check(k: Any) -> str:
        if not isinstance(k, str):
            where = prefix or "top level"
            raise ValueError(f"key {k!r} at {where} is not a string: convert keys to str")
        return k

    return check


def _scalar(key: str, v: Any) -> tuple[str, Any]:
    """Classify a field value: ("null" | "bool" | "number" | "string", normalised value)."""
    if v is None:
        return "null", None
    if type(v) is int:  # the common case first, without the abstract-class check below
        return "number", v
    if isinstance(v, bool):  # before numbers: bool is an int subclass
        return "string", "true" if v else "false"
    if isinstance(v, numbers.Real):
        f = float(v)
        if math.isnan(f):
            return "null", None  # a missing value, as pandas and CSV readers write it
        if math.isinf(f):
            raise ValueError(
                f"value {v} at key {key!r} is not finite: use null for a missing value, "
                "or a large finite number"
            )
        return "number", f if not isinstance(v, numbers.Integral) else int(v)
    if isinstance(v, str):
        n = parse_number(v)
        return ("number", n) if n is not None else ("string", v)
    raise ValueError(
        f"value {v!r} at key {key!r} has type {type(v).__name__}: use str, int, float, bool, "
        "None, a list or a mapping"
    )


def number_features(v: float, stats: KeyStats | None, bins: int) -> list[float]:
    """The value features of a number (layout in the module docstring)."""
    sign = float((v > 0) - (v < 0))
    if stats is None:  # a number inside a string, or of an unknown key: magnitude only
        return [1.0, sign, signed_log(v), 0.0, 0.0] + [0.0] * bins
    z = (v - stats.mean) / stats.std if stats.std > 0 else 0.0
    edges = stats.edges
    q = quantile_position(v, edges) if edges else 0.0
    return [1.0, sign, signed_log(v), math.asinh(z), q, *piecewise_linear(v, edges, bins)]


@dataclass
class _Fit:
    """What fitting collects in one pass over the training mappings."""

    keys: set[str] = field(default_factory=set)
    values: dict[str, list[float]] = field(default_factory=dict)
    categories: dict[str, Counter[str]] = field(default_factory=dict)
    strings: list[str] = field(default_factory=list)


def _collect(xs: Iterable[Mapping[str, Any]], cfg: FieldConfig) -> _Fit:
    """One pass over training mappings: keys, numbers per key, category counts, strings."""
    seen = _Fit()
    for i, x in enumerate(xs):
        if not isinstance(x, Mapping):
            raise ValueError(
                f"input {i} is a {type(x).__name__}, not a mapping: field encoding reads "
                "mappings (configs, table rows); use inputs='text' for strings"
            )
        for k, v in flatten(x):
            seen.keys.add(k)
            kind, value = _scalar(k, v)
            if kind == "number":
                seen.values.setdefault(k, []).append(float(value))
                text = format_number(value, cfg.float_digits)
            elif kind == "string":
                seen.strings.append(value)
                text = value
            else:
                continue
            seen.categories.setdefault(k, Counter())[f"{k}={text}"] += 1
    return seen


def _key_stats(values: Sequence[float], cfg: FieldConfig) -> KeyStats:
    return KeyStats(float(np.mean(values)), float(np.std(values)), quantile_edges(values, cfg.bins))


class FieldEncoder:
    """Mapping -> ``FieldRow``. Build with :meth:`fit`; save with :meth:`to_dict` (the pieces'
    tokenizer is saved on its own, as the model's ``tokenizer.json``)."""

    def __init__(
        self,
        config: FieldConfig,
        keys: Sequence[str],
        categories: Sequence[str],
        stats: Mapping[str, KeyStats],
        tokenizer: InputTokenizer,
    ) -> None:
        self.config = config.resolved()  # "auto" unsettled by a mixer reads as attention's
        self.keys = list(keys)
        self.categories = list(categories)
        self.stats = dict(stats)
        self.tokenizer = tokenizer
        self._key_id = {k: i + len(KEY_SPECIALS) for i, k in enumerate(self.keys)}
        self._cat_id = {c: i + len(VALUE_SPECIALS) for i, c in enumerate(self.categories)}
        self._piece0 = len(VALUE_SPECIALS) + len(self.categories)
        self.unknown_keys: Counter[str] = Counter()  # keys never seen in training, as read
        self._piece_cache: dict[str, list[tuple[int, list[float]]]] = {}

    # -- fitting ----------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        xs: Iterable[Mapping[str, Any]],
        config: FieldConfig | None = None,
        vocab: VocabConfig | None = None,
    ) -> FieldEncoder:
        cfg = (config or FieldConfig()).resolved()  # a model's reader resolves it for its mixer
        seen = _collect(xs, cfg)
        stats = {k: _key_stats(v, cfg) for k, v in seen.values.items()}
        categories = sorted(cls._categories(seen, seen.keys, cfg))
        pieces = [p for s in seen.strings for p in segments(s, False) if isinstance(p, str)]
        # prepared: a string value's pieces are read as they are (``pieces`` never applies
        # VocabConfig.code), so the tokenizer learns them as they are too
        vocab = vocab or VocabConfig(min_frequency=2)
        tokenizer = InputTokenizer.train(pieces, vocab, prepared=True)
        return cls(cfg, sorted(seen.keys), categories, stats, tokenizer)

    def extend(self, xs: Iterable[Mapping[str, Any]]) -> tuple[FieldEncoder, np.ndarray]:
        """An encoder that also knows the keys first seen in ``xs`` (a new system's options,
        for fine-tuning): each gets its own key id, categories and statistics, fitted on ``xs``
        as ``fit`` would. What the known keys learnt is kept as it is: their values unseen so
        far are read as at prediction time (features, pieces). Known ids keep their meaning;
        the new keys come after them, the new categories before the pieces.

        Returns the encoder and ``old``: for each new value-token id, the id it had here, or
        -1 for a new category (what ``rlm.nn.grow`` needs to carry the embeddings over)."""
        seen = _collect(xs, self.config)
        new_keys = seen.keys - set(self.keys)
        stats = {k: _key_stats(v, self.config) for k, v in seen.values.items() if k in new_keys}
        added = sorted(self._categories(seen, new_keys, self.config))
        grown = FieldEncoder(
            self.config,
            self.keys + sorted(new_keys),
            self.categories + added,
            {**self.stats, **stats},
            self.tokenizer,
        )
        old = np.arange(grown.vocab_size, dtype=np.int64)
        old[self._piece0 : grown._piece0] = -1
        old[grown._piece0 :] -= len(added)  # the pieces moved up by the new categories
        return grown, old

    @classmethod
    def _categories(cls, seen: _Fit, keys: set[str], cfg: FieldConfig) -> Iterable[str]:
        """The ``key=value`` tokens of ``keys`` that are read as categories."""
        for k, counts in seen.categories.items():
            if k in keys and cls._categorical(k, counts, seen, cfg):
                yield from counts

    @staticmethod
    def _categorical(key: str, counts: Counter[str], seen: _Fit, cfg: FieldConfig) -> bool:
        if key not in seen.values:  # strings and booleans only
            return True
        if cfg.numbers == "value":
            return False
        return cfg.numbers == "category" or len(counts) <= cfg.max_categories

    # -- sizes --------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Value tokens: specials, then ``key=value`` categories, then the pieces' vocabulary."""
        return self._piece0 + self.tokenizer.vocab_size

    @property
    def n_keys(self) -> int:
        return len(KEY_SPECIALS) + len(self.keys)

    @property
    def category_ids(self) -> range:
        """The value-token ids of the ``key=value`` categories (after the specials)."""
        return range(len(VALUE_SPECIALS), self._piece0)

    @property
    def key_ids(self) -> range:
        """The ids of the keys (after the specials)."""
        return range(len(KEY_SPECIALS), self.n_keys)

    @property
    def n_features(self) -> int:
        return self.config.features

    # -- encoding -----------------------------------------------------------------------------
    def encode(self, x: Mapping[str, Any]) -> FieldRow:
        if not isinstance(x, Mapping):
            raise ValueError(
                f"this model reads mappings (field encoding), got a {type(x).__name__}: pass "
                "the configuration as a dict"
            )
        cols: list[tuple[int, int, int, list[float]]] = []  # (id, key, pos, features)
        for k, v in flatten(x):
            key = self._key_id.get(k)
            if key is None:
                self.unknown_keys[k] += 1
                key = UNKNOWN_KEY
            cols += self._field(k, key, v)
        if not cols:  # the empty mapping still needs one position to attend to
            cols = [(NULL, NO_KEY, 0, self._zeros())]
        ids, keys, pos, feats = zip(*cols, strict=True)
        return FieldRow(
            np.asarray(ids, dtype=np.int64),
            np.asarray(keys, dtype=np.int64),
            np.asarray(pos, dtype=np.int64),
            np.asarray(feats, dtype=np.float32).reshape(len(ids), self.n_features),
        )

    def encode_batch(self, xs: Sequence[Mapping[str, Any]]) -> list[FieldRow]:
        """``encode`` each; keys never seen in training get one warning per call."""
        before = self.unknown_keys.copy()
        rows = [self.encode(x) for x in xs]
        new = self.unknown_keys - before
        if new:
            named = ", ".join(f"{k!r} ({n})" for k, n in new.most_common(5))
            warnings.warn(
                f"{new.total()} values of keys never seen in training, read through the shared "
                f"<unknown> key: {named}{' ...' if len(new) > 5 else ''}",
                stacklevel=4,
            )
        return rows

    def _zeros(self) -> list[float]:
        return [0.0] * self.n_features

    def _field(self, k: str, key: int, v: Any) -> list[tuple[int, int, int, list[float]]]:
        kind, value = _scalar(k, v)
        cfg = self.config
        if kind == "null":
            return [(NULL, key, 0, self._zeros())]
        if kind == "number":
            token = self._cat_id.get(f"{k}={format_number(value, cfg.float_digits)}", NUMBER)
            if cfg.numbers == "category":
                return [(token, key, 0, self._zeros())]
            return [(token, key, 0, number_features(value, self.stats.get(k), cfg.bins))]
        head = (self._cat_id.get(f"{k}={value}", STRING), key, 0, self._zeros())
        return [head, *self._pieces(value, key)]

    def _pieces(self, s: str, key: int) -> list[tuple[int, int, int, list[float]]]:
        """A string's content: BPE pieces of its text, ``<num>`` for each number inside it,
        the first ``max_pieces`` of them."""
        out = self._piece_cache.get(s)
        if out is None:
            out = []
            for part in segments(s, False):
                if isinstance(part, str):
                    ids = self.tokenizer.pieces(part)
                    out += [(self._piece0 + i, self._zeros()) for i in ids]
                else:
                    out.append((NUM, number_features(part, None, self.config.bins)))
            out = out[: self.config.max_pieces]
            if len(self._piece_cache) < 100_000:  # categorical strings repeat: read each once
                self._piece_cache[s] = out
        return [(i, key, p + 1, f) for p, (i, f) in enumerate(out)]

    # -- persistence and description ----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "keys": self.keys,
            "categories": self.categories,
            "stats": {k: s.to_dict() for k, s in sorted(self.stats.items())},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], tokenizer: InputTokenizer) -> FieldEncoder:
        want = {"config", "keys", "categories", "stats"}
        if set(d) != want:
            raise ValueError(f"field encoder keys {sorted(d)}: expected {sorted(want)}")
        stats = {k: KeyStats.from_dict(s) for k, s in d["stats"].items()}
        config = FieldConfig.from_dict(d["config"])
        return cls(config, d["keys"], d["categories"], stats, tokenizer)

    def describe(self) -> dict[str, Any]:
        """What ``rlm info`` shows: the keys, how each is read, and the vocabulary sizes."""
        per_key: dict[str, str] = {}
        cat_keys = Counter(c.split("=", 1)[0] for c in self.categories)
        for k in self.keys:
            parts = []
            if k in cat_keys:
                parts.append(f"{cat_keys[k]} categories")
            if k in self.stats and self.config.numbers != "category":
                s = self.stats[k]
                parts.append(f"number (mean {s.mean:.4g}, std {s.std:.4g}, {len(s.edges)} edges)")
            per_key[k] = ", ".join(parts) or "text pieces"
        return {
            "config": self.config.to_dict(),
            "keys": len(self.keys),
            "categories": len(self.categories),
            "piece_vocab": self.tokenizer.vocab_size,
            "fields": per_key,
        }
