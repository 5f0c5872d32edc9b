"""Constrained, batched decoding: every sample of every input in one loop over positions.

The encoder runs once per input; its cross-attention keys/values are shared by the S samples of
that input; the decoder advances all N = B*S sequences together with a KV cache. The grammar's
transition table (a tensor) gives, for each sequence's state, the allowed-token mask and the next
state: two gathers per step, no Python per sequence. Whatever the weights, every decoded sequence
is a string the grammar accepts, hence a valid finite number per objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..numbers.grammar import Grammar
from .model import RegressionTransformer
from .source import Source


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


class GrammarTable:
    """The grammar as tensors: table (states, V) int64 and its boolean mask."""

    def __init__(self, grammar: Grammar) -> None:
        self.table = torch.as_tensor(grammar.table, dtype=torch.int64)
        self.mask = self.table >= 0
        self.start = grammar.start


def _top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches top_p (per row)."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    # drop a token when the mass *before* it already reaches top_p; the argmax always stays
    drop = (probs.cumsum(-1) - probs) >= top_p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


def inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Token per row whose cumulative probability first reaches ``u * total``; u in [0, 1).

    Zero-probability (forbidden) tokens add exactly 0 to the float64 cdf, so they can never be
    the first to reach the target, and the clamp only guards the u -> 1 rounding edge.
    """
    cdf = probs.double().cumsum(-1)  # (N, V)
    target = (u * cdf[:, -1]).unsqueeze(-1)  # (N, 1)
    return torch.searchsorted(cdf, target, right=True)[:, 0].clamp_(max=cdf.shape[1] - 1)


@torch.inference_mode()
def decode(
    model: RegressionTransformer,
    src: Source,
    grammar: GrammarTable,
    samples: int,
    config: DecodeConfig,
    generator: torch.Generator | None = None,
    length: int | None = None,
    uniforms: torch.Tensor | None = None,
) -> torch.Tensor:
    """src (B, T) positions -> token ids (B, S, L) accepted by the grammar.

    Sampling is by inverse CDF from uniforms (N, L), N = B*S in input-major order: drawn here
    from ``generator``, or given by the caller (the server draws them per request so that a
    request's samples do not depend on its batch-mates). ``length`` < L stops after a prefix
    (e.g. the first objectives only): objectives are decoded in order, so a prefix is exactly
    what full decoding would have produced up to there.
    """
    b = len(src)
    n, length = b * samples, length or model.out_len
    if not config.greedy:
        if uniforms is None:
            uniforms = torch.rand((n, length), generator=generator, dtype=torch.float64)
        if uniforms.shape != (n, length):
            raise ValueError(f"uniforms must have shape {(n, length)}, got {tuple(uniforms.shape)}")
    memory = model.encode(src)  # (B, T, D), once per input
    kv = model.cross_kv(memory)  # per layer 2 x (B, h, T, dh), shared by the samples
    mask = model.attn_mask(src.pad)  # (B, 1, 1, T), broadcast over the S sample-queries
    cache = model.new_cache(n, dtype=memory.dtype)
    state = torch.full((n,), grammar.start, dtype=torch.int64)
    tok = torch.full((n,), model.bos, dtype=torch.int64)
    out = torch.empty((n, length), dtype=torch.int64)
    for pos in range(length):
        logits = model.decode_step(tok, pos, cache, kv, mask, samples).float()  # (N, V)
        logits = logits.masked_fill(~grammar.mask[state], float("-inf"))
        if config.greedy:
            tok = logits.argmax(-1)
        else:
            logits = logits / config.temperature
            if config.top_p < 1.0:
                logits = _top_p_filter(logits, config.top_p)
            tok = inverse_cdf(logits.softmax(-1), uniforms[:, pos])
        out[:, pos] = tok
        state = grammar.table[state, tok]
    return out.view(b, samples, length)
