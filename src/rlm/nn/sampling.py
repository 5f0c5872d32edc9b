"""Encoded inputs -> draws (B, n, K) in target units, for either output of the model.

* ``sample_digits``: constrained decoding of number tokens (``rlm.nn.decoding``), decoded by the
  target codec;
* ``sample_values``: a value head's Gaussian (its point, for MSE), mapped back from the unit
  scale by the target scaler.

Both draw their uniforms in the caller's (B, n, ...) order from ``torch.Generator(seed)``: an
input's draws depend only on its position, the seed and n, not on how inputs are grouped into
batches (the server draws them the same way).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..numbers.scaling import TargetScaler
from ..numbers.targets import TargetCodec
from .decoding import DecodeConfig, GrammarTable, decode
from .heads import value_draws
from .model import RegressionTransformer
from .source import Row, collate


@dataclass(frozen=True)
class Draws:
    """What to draw: n per input, of the first k objectives, how, from which seed, and how many
    inputs to run at once (None: a default that bounds memory)."""

    n: int
    k: int
    cfg: DecodeConfig
    seed: int
    batch_size: int | None = None


def sample_digits(
    net: RegressionTransformer,
    codec: TargetCodec,
    rows: Sequence[Row],
    pad_id: int,
    how: Draws,
) -> np.ndarray:
    """Draws (B, n, k) of the first k objectives by constrained decoding."""
    n, k, cfg = how.n, how.k, how.cfg
    length = codec.spans[k - 1][1]
    grammar = GrammarTable(codec.grammar)
    gen = torch.Generator().manual_seed(how.seed)
    shape = (len(rows), n, length)
    u = None if cfg.greedy else torch.rand(shape, generator=gen, dtype=torch.float64)
    # bound the number of sequences decoded together (memory), whole inputs at a time
    bs = how.batch_size or max(1, 8192 // n)
    order = np.argsort([len(s) for s in rows], kind="stable")  # similar lengths together
    out = np.empty((len(rows), n, k))
    net.eval()
    for i in range(0, len(rows), bs):
        idx = order[i : i + bs]
        src = collate([rows[j] for j in idx], pad_id)
        rows_u = None if u is None else u[idx].reshape(-1, length)
        toks = decode(net, src, grammar, n, cfg, length=length, uniforms=rows_u)
        out[idx] = codec.decode(toks.numpy(), objectives=k)
    return out


@torch.inference_mode()
def sample_values(
    net: RegressionTransformer,
    scaler: TargetScaler,
    rows: Sequence[Row],
    pad_id: int,
    how: Draws,
) -> np.ndarray:
    """Draws (B, n, k) of a value head: its Gaussian, or its point repeated (MSE)."""
    cfg = how.cfg
    if cfg.top_p < 1.0:
        raise ValueError(
            "top_p applies to the digit decoder; a value head samples a Gaussian: use "
            "temperature to widen or narrow it"
        )
    gen = torch.Generator().manual_seed(how.seed)
    shape = (len(rows), how.n, len(scaler.names))
    u = None if cfg.greedy else torch.rand(shape, generator=gen, dtype=torch.float64)
    z = np.empty(shape)
    bs = how.batch_size or 1024
    net.eval()
    for i in range(0, len(rows), bs):
        head = net.values(collate(rows[i : i + bs], pad_id))  # (b, M, K, C)
        rows_u = None if u is None else u[i : i + bs]
        z[i : i + bs] = value_draws(head, rows_u, cfg.temperature).numpy()  # (b, n or 1, K)
    return scaler.inverse(z)[..., : how.k]
