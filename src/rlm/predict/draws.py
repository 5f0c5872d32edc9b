"""Encoded inputs -> draws (B, n, K) on the output's scale, from any runtime. Torch-free.

A runtime is a ``Network``: the PyTorch model (``rlm.nn.sampling.TorchNetwork``) or the
ONNX graphs run by onnxruntime (``rlm.deploy.runtime``). Each gives two things, for a batch of
encoded inputs: constrained token ids from the digit decoder, or a value head's raw output.
Everything else is here, once:

* ``sample_digits``: uniforms from the seed, inputs of similar length batched together, tokens
  decoded by the target codec;
* ``sample_values``: a value head's Gaussian (its point, for MSE), on the unit scale, mapped
  back by the target scaler.

Uniforms are drawn in the caller's (B, n, ...) order from ``rlm.numbers.decoding.uniforms``: an
input's draws depend only on its position, the seed and n, not on how inputs are grouped into
batches, nor on the runtime (the server draws them the same way).

Shapes: B inputs, n samples, M ensemble members, K objectives, C = 1 (mse) or 2 (gaussian)
outputs per objective, L output tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.special import ndtri

from ..inputs.padding import Row, micro_batches
from ..numbers.decoding import DecodeConfig, uniforms
from ..numbers.grammar import Grammar
from ..numbers.scaling import TargetScaler
from ..numbers.targets import TargetCodec

MIN_VARIANCE = 1e-4  # a Gaussian head's variance floor on the unit scale: keeps the NLL finite
# sequences decoded together by default: bounds the decoder's memory. Measured on the memory
# benchmark (small, x264 fields): 8,192 -> 2,048 took rlm predict from 563 to 379 MB peak and
# training with calibration from 807 to 666 MB, at the same sampling speed (+-10%)
MAX_SEQUENCES = 2048
# encoder positions (inputs x padded length) encoded together: bounds the encoder's memory at
# prediction time however long the inputs (attention alone is inputs x heads x length^2)
MAX_POSITIONS = 8192


class Network(Protocol):
    """What a runtime computes for a batch of encoded inputs."""

    def tokens(
        self,
        rows: Sequence[Row],
        grammar: Grammar,
        samples: int,
        config: DecodeConfig,
        length: int,
        uniforms: np.ndarray | None,
    ) -> np.ndarray:
        """Token ids (B, samples, length) accepted by ``grammar``; uniforms (B*samples, length)."""
        ...

    def values(self, rows: Sequence[Row]) -> np.ndarray:
        """A value head's raw output (B, M, K, C)."""
        ...


@dataclass(frozen=True)
class Draws:
    """What to draw: n per input, of the first k objectives, how, from which seed, and how many
    inputs to run at once (None: as many as keep ``max_sequences`` sequences decoding together,
    which bounds memory; a runtime sets its own)."""

    n: int
    k: int
    cfg: DecodeConfig
    seed: int
    batch_size: int | None = None
    max_sequences: int = MAX_SEQUENCES


def sample_digits(
    network: Network, codec: TargetCodec, rows: Sequence[Row], how: Draws
) -> np.ndarray:
    """Draws (B, n, k) of the first k objectives by constrained decoding."""
    n, k, cfg = how.n, how.k, how.cfg
    length = codec.spans[k - 1][1]
    u = None if cfg.greedy else uniforms(how.seed, (len(rows), n, length))
    out = np.empty((len(rows), n, k))
    # bound the sequences decoded and the positions encoded together (memory), whole inputs
    for idx in batches(rows, how.batch_size or max(1, how.max_sequences // n)):
        rows_u = None if u is None else u[idx].reshape(-1, length)
        toks = network.tokens([rows[j] for j in idx], codec.grammar, n, cfg, length, rows_u)
        out[idx] = codec.decode(toks, objectives=k)
    return out


def sample_values(
    network: Network, scaler: TargetScaler, rows: Sequence[Row], how: Draws
) -> np.ndarray:
    """Draws (B, n, k) of a value head: its Gaussian, or its point repeated (MSE)."""
    cfg = how.cfg
    if cfg.top_p < 1.0:
        raise ValueError(
            "top_p applies to the digit decoder; a value head samples a Gaussian: use "
            "temperature to widen or narrow it"
        )
    shape = (len(rows), how.n, len(scaler.names))
    u = None if cfg.greedy else uniforms(how.seed, shape)
    z = np.empty(shape)
    for idx in batches(rows, how.batch_size or 1024):
        head = network.values([rows[j] for j in idx])  # (b, M, K, C)
        rows_u = None if u is None else u[idx]
        z[idx] = value_draws(head, rows_u, cfg.temperature)  # (b, n or 1, K)
    return scaler.inverse(z)[..., : how.k]


def batches(rows: Sequence[Row], size: int) -> list[np.ndarray]:
    """Input indices in batches of similar length: at most ``size`` inputs and
    ``MAX_POSITIONS`` encoder positions each (at least one input)."""
    lengths = [len(r) for r in rows]
    order = np.argsort(lengths, kind="stable")  # similar lengths together: less padding
    return [
        part
        for i in range(0, len(order), size)
        for part in micro_batches(order[i : i + size], lengths, MAX_POSITIONS)
    ]


def variance(out: np.ndarray) -> np.ndarray:
    """(..., 2) Gaussian head output -> (...) variance: softplus(raw) + ``MIN_VARIANCE``, as the
    head is trained (``rlm.nn.heads.variance``)."""
    return np.logaddexp(0.0, out[..., 1].astype(np.float64)) + MIN_VARIANCE


def value_draws(
    out: np.ndarray, uniforms: np.ndarray | None, temperature: float = 1.0
) -> np.ndarray:
    """(B, M, K, C) head output -> draws (B, S, K) on the unit scale, float64.

    Gaussian: sample s is ``mu + temperature * sigma * Phi^-1(u)`` of one member of the
    mixture, both chosen by the caller's uniforms (B, S, K), so a seed gives the same draws
    however the inputs are batched, whatever S is.
    MSE has no spread: every draw is the members' mean. Without uniforms (greedy) both return
    the members' mean, S = 1 (it broadcasts).
    """
    mu = out[..., 0].astype(np.float64)  # (B, M, K)
    if uniforms is None or out.shape[-1] == 1:
        s = 1 if uniforms is None else uniforms.shape[1]
        mean = mu.mean(1, keepdims=True)  # (B, 1, K)
        return np.repeat(mean, s, axis=1)  # (B, S, K)
    m, k = out.shape[1], out.shape[2]
    u = uniforms.astype(np.float64)
    # An exact draw from the members' equal mixture with no extra randomness: the first
    # objective's uniform picks the member (its slice of [0, 1)) and, rescaled to that slice, is
    # still uniform for the draw itself. One member per sample serves every objective.
    member = np.minimum(np.floor(u[..., 0] * m), m - 1)  # (B, S)
    u = np.concatenate([u[..., :1] * m - member[..., None], u[..., 1:]], axis=-1)  # (B, S, K)
    idx = np.repeat(member.astype(np.int64)[..., None], k, axis=-1)  # (B, S, K)
    mean = np.take_along_axis(mu, idx, 1)  # (B, S, K)
    sigma = temperature * np.sqrt(np.take_along_axis(variance(out), idx, 1))  # (B, S, K)
    # keep u strictly inside (0, 1): Phi^-1 is infinite at the ends
    return mean + sigma * ndtri(np.clip(u, 1e-12, 1 - 1e-12))
