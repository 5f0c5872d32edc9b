"""Targets -> decoder sequences: several objectives, one fixed-length token string.

Objectives are written one after another in a fixed, saved order, so each is conditioned on
those before it. Every objective has its own number tokenizer (same scheme and token set; the
normalized scheme fits its own bounds per objective), and their grammars are concatenated into
one DFA that drives constrained decoding of the whole sequence.

A row may lack some objectives. Its loss is masked there (weight 0), and the decoder is fed a
placeholder number in its place (the objective's training median) so the later objectives still
see a well-formed prefix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .grammar import Grammar
from .tokenizers import NumberConfig, NumberTokenizer, make_number_tokenizer


@dataclass(frozen=True)
class EncodedTargets:
    ids: np.ndarray  # (N, L) int64 number-token ids
    weight: np.ndarray  # (N, L) float32, 0 where the objective is missing
    states: np.ndarray  # (N, L) int32 grammar state before each token


class TargetCodec:
    """Named objectives <-> concatenated number-token sequences."""

    def __init__(
        self, names: Sequence[str], configs: Sequence[NumberConfig], fill: Sequence[float]
    ) -> None:
        if not names:
            raise ValueError("need at least one target name")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate target names in {list(names)}")
        if not len(names) == len(configs) == len(fill):
            raise ValueError("names, configs and fill must have the same length")
        self.names = tuple(names)
        self.configs = tuple(configs)
        self.fill = tuple(float(v) for v in fill)
        self.tokenizers: list[NumberTokenizer] = [make_number_tokenizer(c) for c in configs]
        vocab = {t.tokens for t in self.tokenizers}
        if len(vocab) != 1:
            raise ValueError("all objectives must share one number scheme and token set")
        self.tokens: tuple[str, ...] = self.tokenizers[0].tokens
        self.spans: list[tuple[int, int]] = []
        start = 0
        for t in self.tokenizers:
            self.spans.append((start, start + t.length))
            start += t.length
        self.length = start
        self.grammar: Grammar = Grammar.concat([t.grammar() for t in self.tokenizers])

    @classmethod
    def fit(
        cls, rows: Sequence[Mapping[str, float]], names: Sequence[str], config: NumberConfig
    ) -> TargetCodec:
        """Per-objective tokenizers (normalized bounds fitted) and placeholders from training rows."""
        configs, fill = [], []
        for name in names:
            values = [r[name] for r in rows if name in r]
            if not values:
                raise ValueError(f"target {name!r} has no value in the training rows")
            if len(values) > 1 and min(values) == max(values):
                raise ValueError(
                    f"target {name!r} is constant ({values[0]:g} in all {len(values)} training "
                    "rows): there is nothing to learn; check the target name and the data"
                )
            configs.append(make_number_tokenizer(config, values).config)
            fill.append(float(np.median(values)))
        return cls(names, configs, fill)

    def extend(
        self, rows: Sequence[Mapping[str, float]], names: Sequence[str], config: NumberConfig
    ) -> TargetCodec:
        """This codec with objectives ``names`` appended (fitted on ``rows`` as ``fit`` would):
        written after the known ones, so each new one is conditioned on them."""
        new = TargetCodec.fit(rows, names, config)
        return TargetCodec(self.names + new.names, self.configs + new.configs, self.fill + new.fill)

    @property
    def clamped(self) -> int:
        return sum(t.clamped for t in self.tokenizers)

    def encode(self, rows: Sequence[Mapping[str, float]]) -> EncodedTargets:
        n, length = len(rows), self.length
        ids = np.zeros((n, length), dtype=np.int64)
        weight = np.zeros((n, length), dtype=np.float32)
        for i, row in enumerate(rows):
            for (a, b), name, tok, fill in zip(
                self.spans, self.names, self.tokenizers, self.fill, strict=True
            ):
                present = name in row
                try:
                    ids[i, a:b] = tok.encode_ids(row[name] if present else fill)
                except ValueError as e:
                    raise ValueError(f"row {i}, target {name!r}: {e}") from None
                weight[i, a:b] = 1.0 if present else 0.0
        # every row follows the same grammar path length, so states are a vectorised walk
        states = np.zeros((n, length), dtype=np.int32)
        s = np.full(n, self.grammar.start, dtype=np.int64)
        for j in range(length):
            states[:, j] = s
            s = self.grammar.table[s, ids[:, j]]
            if (s < 0).any():  # cannot happen for ids produced by the tokenizers
                raise AssertionError("encoded targets rejected by their own grammar")
        return EncodedTargets(ids, weight, states)

    def decode(self, ids: np.ndarray, objectives: int | None = None) -> np.ndarray:
        """ids (..., L) -> values (..., K) float64; ``objectives=k`` decodes a k-objective prefix."""
        k = len(self.names) if objectives is None else objectives
        want = self.spans[k - 1][1]
        if ids.shape[-1] != want:
            raise ValueError(f"expected {want} tokens for {k} objective(s), got {ids.shape[-1]}")
        flat = ids.reshape(-1, want)
        spans = zip(self.spans[:k], self.tokenizers[:k], strict=True)
        out = np.stack([t.decode_ids(flat[:, a:b]) for (a, b), t in spans], axis=-1)
        return out.reshape(*ids.shape[:-1], k)

    def to_dict(self) -> dict:
        return {
            "names": list(self.names),
            "numbers": [c.to_dict() for c in self.configs],
            "fill": list(self.fill),
        }

    @classmethod
    def from_dict(cls, d: dict) -> TargetCodec:
        unknown = set(d) - {"names", "numbers", "fill"}
        if unknown:
            raise ValueError(f"unknown target codec keys {sorted(unknown)}")
        return cls(d["names"], [NumberConfig.from_dict(c) for c in d["numbers"]], d["fill"])
