"""Batched constrained decoding with the PyTorch model: every sample of every input in one loop.

The encoder runs once per input; its cross-attention keys/values are shared by the S samples of
that input; the decoder advances all N = B*S sequences together with a KV cache. What happens
to the logits (the grammar's mask, greedy or inverse-CDF sampling, temperature, top-p) is
``rlm.numbers.decoding``, the one loop every runtime shares: this module only supplies the
model's step. ``GrammarTable`` is the grammar as tensors, for the training loss.
"""

from __future__ import annotations

import numpy as np
import torch

from ..numbers.decoding import DecodeConfig, decode_tokens
from ..numbers.grammar import Grammar
from .model import RegressionTransformer
from .source import Source

__all__ = ["DecodeConfig", "GrammarTable", "decode", "decode_memory"]


class GrammarTable:
    """The grammar as tensors: table (states, V) int64 and its boolean mask (training loss)."""

    def __init__(self, grammar: Grammar, device: torch.device | None = None) -> None:
        self.grammar = grammar
        self.table = torch.as_tensor(grammar.table, dtype=torch.int64, device=device)
        self.mask = self.table >= 0
        self.start = grammar.start

    def to(self, device: torch.device) -> GrammarTable:
        """The same grammar with its tensors on ``device``."""
        return self if self.table.device == device else GrammarTable(self.grammar, device)


@torch.inference_mode()
def decode(
    model: RegressionTransformer,
    src: Source,
    grammar: Grammar,
    samples: int,
    config: DecodeConfig,
    *,
    length: int | None = None,
    uniforms: np.ndarray | None = None,
) -> np.ndarray:
    """src (B, T) positions -> token ids (B, S, L) accepted by the grammar.

    ``uniforms`` (N, L), N = B*S in input-major order: one per sequence and position, required
    unless greedy (``rlm.numbers.decoding.uniforms`` draws them from a seed). ``length`` < L
    stops after a prefix (e.g. the first objectives only): objectives are decoded in order, so a
    prefix is exactly what full decoding would have produced up to there.
    """
    memory = model.encode(src)  # (B, T, D), once per input
    return decode_memory(model, memory, src.pad, grammar, samples, config, length, uniforms)


@torch.inference_mode()
def decode_memory(
    model: RegressionTransformer,
    memory: torch.Tensor,
    pad: torch.Tensor,
    grammar: Grammar,
    samples: int,
    config: DecodeConfig,
    length: int | None = None,
    uniforms: np.ndarray | None = None,
) -> np.ndarray:
    """``decode`` from an encoder memory (B, T, D) and its padding (B, T) (e.g. an early exit's,
    ``rlm.nn.exits``) -> token ids (B, S, L)."""
    b = memory.shape[0]
    n, length = b * samples, length or model.out_len
    kv = model.cross_kv(memory)  # per layer 2 x (B, h, T, dh), shared by the samples
    mask = model.attn_mask(pad)  # (B, 1, 1, T), broadcast over the S sample-queries
    device = memory.device
    cache = model.new_cache(n, dtype=memory.dtype, device=device)

    def step(tok: np.ndarray, pos: int) -> np.ndarray:
        prev = torch.from_numpy(tok).to(device)
        logits = model.decode_step(prev, pos, cache, kv, mask, samples)
        return logits.float().cpu().numpy()  # (N, V)

    out = decode_tokens(step, n, length, grammar, config, model.bos, uniforms)
    return out.reshape(b, samples, length)
