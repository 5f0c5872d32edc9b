"""Early exit: each input leaves the encoder at the first exit whose prediction agrees with the
previous exit's, so easy inputs pay for fewer layers.

A model trained with ``ModelConfig(exits=...)`` (``RegressionLM.add_exits``) has a head that can
read the encoder's memory after those layers as well as after the last one (one shared final
norm and head, trained on the mean of the exits' losses). At prediction time ``walk`` runs the
encoder one layer at a time over the inputs still active; at each exit it asks the head for a
greedy point (the digit decoder's greedy number, or a value head's mean) and retires every
input whose point agrees with its point at the previous exit within a relative ``tolerance``
(all objectives: ``|a - b| <= tolerance * max(|a|, |b|)``, in the units the model writes; a
model with a ``task_key`` writes standardised values and is refused). The last layer retires
the rest; the first exit only sets the reference, so a model needs two or more exits.
Retired inputs keep their memory, from which the answer is then drawn as usual, and their head
output, which already is the answer for greedy decoding and for a value head.

Where the time goes: a check costs one greedy decode with the digit decoder (several decoder
steps) but only a pooled linear layer with a value head, so early exit pays off for value heads
and for encoders much deeper than the decoder; ``benchmarks/edge.py`` measures both.

Shapes: B inputs, A inputs still active, M value-head members, T positions, D width, K
objectives, S samples, L output tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..numbers.decoding import DecodeConfig
from ..numbers.grammar import Grammar
from ..numbers.scaling import TargetScaler
from ..numbers.targets import TargetCodec
from ..predict.draws import value_draws
from .config import ModelConfig
from .decoding import decode_memory
from .device import CPU, Placement
from .model import RegressionTransformer
from .sampling import TorchNetwork
from .source import Row

# memory (A*M, T, D) and padding (A*M, T) of the active inputs -> (points (A, K) in the head's
# units, the head's output per input (A, ...): greedy tokens or value-head output)
Check = Callable[[torch.Tensor, torch.Tensor], tuple[np.ndarray, np.ndarray]]


def check_tolerance(tolerance: float) -> float:
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"early exit tolerance={tolerance}: a relative difference >= 0, e.g. 0.01")
    return float(tolerance)


def check_exits(cfg: ModelConfig) -> None:
    """Early exit needs two exits below the last layer: the first only sets the reference."""
    if cfg.mixer == "slots":
        raise ValueError("mixer='slots' has no encoder layers to exit from: early exit needs "
                         "mixer='attention'")  # fmt: skip
    if len(cfg.exits) < 2:
        have = f"exits={cfg.exits}" if cfg.exits else "no exits"
        fix = (
            "e.g. exits=(1, 2, 3) (rlm compress DIR DATA --out OUT --exits 1,2,3)"
            if cfg.enc_layers >= 3
            else f"this encoder has {cfg.enc_layers} layer(s): early exit needs 3 or more"
        )
        raise ValueError(
            f"{have}: early exit needs two or more exits below the last layer (the first "
            f"only sets the reference the next one must agree with); {fix}"
        )


def agree(a: np.ndarray, b: np.ndarray, tolerance: float) -> np.ndarray:
    """(A, K) points at two exits -> (A,) True where every objective agrees within tolerance."""
    close = np.abs(a - b) <= tolerance * np.maximum(np.abs(a), np.abs(b))
    return close.all(-1)


def _rows(inputs: np.ndarray, members: int) -> torch.Tensor:
    """Input indices (A,) -> their rows (A*M,) in a member-minor batch."""
    rows = inputs[:, None] * members + np.arange(members)  # (A, M)
    return torch.from_numpy(rows.reshape(-1))


@torch.inference_mode()
def walk(
    net: RegressionTransformer,
    x: torch.Tensor,
    pad: torch.Tensor,
    check: Check,
    tolerance: float,
    members: int = 1,
    keep_memory: bool = True,
) -> tuple[torch.Tensor | None, np.ndarray, np.ndarray]:
    """Input vectors x (B*M, T, D) -> each input's memory at its exit (B*M, T, D; None unless
    ``keep_memory``), its head output there (B, ...) and its exit layer (B,), 1-based."""
    exits = net.cfg.exit_layers
    b = x.shape[0] // members
    memory = torch.empty_like(x) if keep_memory else None
    taken = np.zeros(b, dtype=np.int64)
    heads: np.ndarray | None = None
    active = np.arange(b)  # inputs still in the encoder, in the order of x's rows
    prev: np.ndarray | None = None
    for layer, block in enumerate(net.encoder_layers, start=1):
        x = block(x, net.attn_mask(pad))  # (A*M, T, D)
        if layer not in exits:
            continue
        mem = net.ln_enc(x)
        points, out = check(mem, pad)  # (A, K), (A, ...)
        if heads is None:
            heads = np.empty((b, *out.shape[1:]), dtype=out.dtype)
        if layer == exits[-1]:
            done = np.ones(len(active), dtype=bool)
        elif prev is None:
            done = np.zeros(len(active), dtype=bool)  # nothing to agree with yet
        else:
            done = agree(points, prev, tolerance)
        here = np.flatnonzero(done)
        if memory is not None:
            memory[_rows(active[here], members)] = mem[_rows(here, members)]
        heads[active[here]] = out[here]
        taken[active[here]] = layer
        stay = np.flatnonzero(~done)
        if not len(stay):
            break
        keep = _rows(stay, members)
        x, pad, active, prev = x[keep], pad[keep], active[stay], points[stay]
    assert heads is not None
    return memory, heads, taken


class ExitNetwork(TorchNetwork):
    """``TorchNetwork`` with early exit; every input's exit layer is appended to ``log``."""

    def __init__(
        self,
        net: RegressionTransformer,
        pad_id: int,
        *,
        tolerance: float,
        codec: TargetCodec,
        scaler: TargetScaler | None,
        log: list[np.ndarray],
        placement: Placement = CPU,
    ) -> None:
        check_exits(net.cfg)
        super().__init__(net, pad_id, placement)
        self.tolerance = check_tolerance(tolerance)
        self.codec, self.scaler, self.log = codec, scaler, log

    @torch.inference_mode()
    def tokens(
        self,
        rows: Sequence[Row],
        grammar: Grammar,
        samples: int,
        config: DecodeConfig,
        length: int,
        uniforms: np.ndarray | None,
    ) -> np.ndarray:
        """As ``TorchNetwork.tokens``; the greedy checks' tokens are the greedy answer."""
        objectives = next(k for k, (_, end) in enumerate(self.codec.spans, 1) if end == length)
        greedy = DecodeConfig(greedy=True)

        def check(mem: torch.Tensor, pad: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
            toks = decode_memory(self.net, mem, pad, grammar, 1, greedy, length)  # (A, 1, L)
            return self.codec.decode(toks[:, 0], objectives=objectives), toks[:, 0]

        src = self.source(rows)
        with self.placement.autocast():
            x = self.net.embed(src)
            memory, toks, taken = walk(
                self.net, x, src.pad, check, self.tolerance, 1, not config.greedy
            )
        self.log.append(taken)
        if memory is None:  # greedy: the checks' tokens are the answer
            return np.repeat(toks[:, None], samples, axis=1)  # (B, S, L)
        with self.placement.autocast():
            return decode_memory(
                self.net, memory, src.pad, grammar, samples, config, length, uniforms
            )

    @torch.inference_mode()
    def values(self, rows: Sequence[Row]) -> np.ndarray:
        """As ``TorchNetwork.values``, each input's head output at its exit (B, M, K, C)."""
        assert self.scaler is not None and self.net.value_head is not None
        scaler, head, m = self.scaler, self.net.value_head, self.net.cfg.members

        def check(mem: torch.Tensor, pad: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
            out = head(mem, pad).float().cpu().numpy()  # (A, M, K, C)
            return scaler.inverse(value_draws(out, None))[:, 0], out

        with self.placement.autocast():
            x, pad = self.net.member_inputs(self.source(rows))
            _, out, taken = walk(self.net, x, pad, check, self.tolerance, m, keep_memory=False)
        self.log.append(taken)
        return out
