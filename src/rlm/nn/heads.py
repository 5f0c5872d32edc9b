"""Value heads: the alternative to the digit decoder, on the same encoder.

``mse`` regresses each objective's standardised value (``rlm.numbers.scaling``) from the mean
of the encoder's states; ``gaussian`` writes a mean and a variance per objective and is trained
by the Gaussian negative log-likelihood, so its point estimate comes with an interval. Both
are one forward pass, no decoding loop: the regression-LM paper reports that digit decoding
beats such heads; ``benchmarks/accuracy.py`` measures whether that holds here.

Shapes: B inputs, T positions, D encoder width, K objectives, S samples, C = 1 (mse) or
2 (gaussian) outputs per objective.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MIN_VARIANCE = 1e-4  # on the unit scale: a floor that keeps the likelihood finite


class ValueHead(nn.Module):
    """Pooled encoder states (B, D) -> (B, K, C)."""

    def __init__(self, d: int, objectives: int, gaussian: bool) -> None:
        super().__init__()
        self.objectives, self.outputs = objectives, 2 if gaussian else 1
        self.ln = nn.LayerNorm(d)
        self.fc = nn.Linear(d, d)
        self.out = nn.Linear(d, objectives * self.outputs)

    def forward(self, memory: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """memory (B, T, D), pad (B, T) True at padding -> (B, K, C)"""
        keep = (~pad)[..., None].to(memory.dtype)  # (B, T, 1)
        pooled = (memory * keep).sum(1) / keep.sum(1).clamp_min(1.0)  # (B, D): mean over inputs
        h = F.gelu(self.fc(self.ln(pooled)))
        return self.out(h).view(-1, self.objectives, self.outputs)  # (B, K, C)


def variance(out: torch.Tensor) -> torch.Tensor:
    """(B, K, 2) head output -> (B, K) variance: softplus keeps it positive and smooth."""
    return F.softplus(out[..., 1]) + MIN_VARIANCE


def value_loss(out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over present objectives of the squared error (C = 1) or the Gaussian NLL (C = 2)."""
    mu = out[..., 0]  # (B, K)
    if out.shape[-1] == 1:
        per = (mu - target) ** 2
    else:
        var = variance(out)
        per = 0.5 * (var.log() + (target - mu) ** 2 / var)
    return (per * mask).sum() / mask.sum().clamp_min(1.0)


def value_draws(
    out: torch.Tensor, uniforms: torch.Tensor | None, temperature: float = 1.0
) -> torch.Tensor:
    """(B, K, C) head output -> draws (B, S, K) on the unit scale.

    Gaussian: ``mu + temperature * sigma * Phi^-1(u)`` from the caller's uniforms (B, S, K), so
    a seed gives the same draws however the inputs are batched. MSE has no spread: every draw
    is the point. Without uniforms (greedy) both return the mean, S = 1 (it broadcasts).
    """
    mu = out[..., 0].double()[:, None, :]  # (B, 1, K)
    if uniforms is None or out.shape[-1] == 1:
        s = 1 if uniforms is None else uniforms.shape[1]
        return mu.expand(-1, s, -1)
    sigma = temperature * variance(out).double().sqrt()[:, None, :]  # (B, 1, K)
    # keep u strictly inside (0, 1): Phi^-1 is infinite at the ends
    u = uniforms.clamp(1e-12, 1 - 1e-12)
    return mu + sigma * torch.special.ndtri(u)
