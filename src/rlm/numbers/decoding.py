"""Constrained decoding of number tokens, for any network that scores the next token. Torch-free.

The loop is written once, in numpy, and serves every runtime: the PyTorch model
(``rlm.nn.decoding``) and the torch-free ONNX runtime (``rlm.deploy.runtime``) only supply a
``step``: previous tokens (N,) at position ``pos`` -> logits (N, V). Each step masks the logits
with the grammar's allowed tokens for every sequence's state and advances the states, two
gathers on the (states, V) table, so no Python runs per sequence and every decoded sequence is
a string the grammar accepts, hence a valid finite number per objective, whatever the weights.

Sampling is by inverse CDF from uniforms the caller supplies (``uniforms``: numpy's PCG64 from a
seed, in the caller's (B, S, L) order), so a seed gives the same draws in every runtime and an
input's draws do not depend on how inputs are batched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .grammar import Grammar

# previous tokens (N,) int64 and the position being written -> logits (N, V) float32
Step = Callable[[np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class DecodeConfig:
    """How tokens are chosen. ``greedy`` ignores temperature and top_p."""

    greedy: bool = False
    temperature: float = 1.0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature={self.temperature}: must be > 0 (use greedy=True)")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p={self.top_p}: must be in (0, 1]")


def uniforms(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """The uniforms in [0, 1) that sampling consumes, float64 in ``shape``: numpy's PCG64, so the
    same on every platform and runtime (torch is not needed to reproduce a draw)."""
    return np.random.default_rng(seed).random(shape)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, V) logits; -inf entries get probability exactly 0."""
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def top_p_filter(logits: np.ndarray, top_p: float) -> np.ndarray:
    """Keep the smallest set of tokens whose probability reaches top_p (per row)."""
    order = np.argsort(-logits, axis=-1, kind="stable")  # (N, V) descending
    sorted_logits = np.take_along_axis(logits, order, -1)
    probs = softmax(sorted_logits)
    # drop a token when the mass *before* it already reaches top_p; the argmax always stays
    drop = (probs.cumsum(-1) - probs) >= top_p
    kept = np.where(drop, -np.inf, sorted_logits).astype(logits.dtype)
    out = np.full_like(logits, -np.inf)
    np.put_along_axis(out, order, kept, -1)
    return out


def inverse_cdf(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Token per row whose cumulative probability first exceeds ``u * total``; u in [0, 1).

    Zero-probability (forbidden) tokens add exactly 0 to the float64 cdf, so they can never be
    the first to exceed the target, and the clamp only guards the u -> 1 rounding edge.
    """
    cdf = probs.astype(np.float64).cumsum(-1)  # (N, V)
    target = (u * cdf[:, -1])[:, None]  # (N, 1)
    return np.minimum((cdf <= target).sum(-1), cdf.shape[1] - 1)


def decode_tokens(
    step: Step,
    n: int,
    length: int,
    grammar: Grammar,
    config: DecodeConfig,
    bos: int,
    uniforms: np.ndarray | None = None,
) -> np.ndarray:
    """Token ids (n, length) accepted by ``grammar``, one ``step`` call per position.

    ``uniforms`` (n, length): one per sequence and position, required unless greedy.
    """
    if not config.greedy and (uniforms is None or uniforms.shape != (n, length)):
        got = None if uniforms is None else uniforms.shape
        raise ValueError(f"sampling needs uniforms of shape {(n, length)}, got {got}")
    allowed = grammar.table >= 0  # (states, V)
    table = grammar.table.astype(np.int64)
    state = np.full(n, grammar.start, dtype=np.int64)
    tok = np.full(n, bos, dtype=np.int64)
    out = np.empty((n, length), dtype=np.int64)
    for pos in range(length):
        logits = np.asarray(step(tok, pos), dtype=np.float32)  # (N, V)
        logits = np.where(allowed[state], logits, np.float32(-np.inf))
        if config.greedy:
            tok = logits.argmax(-1)
        else:
            logits = logits / np.float32(config.temperature)
            if config.top_p < 1.0:
                logits = top_p_filter(logits, config.top_p)
            tok = inverse_cdf(softmax(logits), uniforms[:, pos])  # type: ignore[index]
        out[:, pos] = tok
        state = table[state, tok]
    return out
