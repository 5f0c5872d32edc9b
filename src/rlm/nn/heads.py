"""Value heads: the alternative to the digit decoder, on the same encoder.

``mse`` regresses each objective's standardised value (``rlm.numbers.scaling``) from the mean
of the encoder's states; ``gaussian`` writes a mean and a variance per objective and is trained
by the Gaussian negative log-likelihood, so its point estimate comes with an interval. Both
are one forward pass, no decoding loop: the regression-LM paper reports that digit decoding
beats such heads; ``benchmarks/accuracy.py`` measures whether that holds here.

With ``members`` M > 1 the encoder runs once per member on its own scaling of the input
(``RegressionTransformer.values``) and each member has its own output layer: an ensemble at
about the parameters of one model (TabM's recipe). Each member is trained on its own loss; the
point is the members' mean, and the Gaussian samples are exact draws from their equal mixture
(``rlm.predict.draws.value_draws``), so the interval carries the members' disagreement as well as their noise.

Shapes: B inputs, T positions, D encoder width, M members, K objectives, S samples, C = 1 (mse)
or 2 (gaussian) outputs per objective.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..predict.draws import MIN_VARIANCE


class ValueHead(nn.Module):
    """Pooled encoder states of each member (B*M, D) -> (B, M, K, C)."""

    def __init__(self, d: int, objectives: int, gaussian: bool, members: int = 1) -> None:
        super().__init__()
        self.objectives, self.outputs = objectives, 2 if gaussian else 1
        self.members = members
        self.ln = nn.LayerNorm(d)
        self.fc = nn.Linear(d, d)
        # every member's output layer in one matrix; member m reads its own block (below)
        self.out = nn.Linear(d, members * objectives * self.outputs)

    def forward(self, memory: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """memory (B*M, T, D), pad (B*M, T) True at padding, rows member-minor -> (B, M, K, C)"""
        keep = (~pad)[..., None].to(memory.dtype)  # (B*M, T, 1)
        pooled = (memory * keep).sum(1) / keep.sum(1).clamp_min(1.0)  # (B*M, D): mean over inputs
        h = F.gelu(self.fc(self.ln(pooled)))
        m, k, c = self.members, self.objectives, self.outputs
        out = self.out(h).view(-1, m, m, k, c)  # (B, M rows, M output blocks, K, C)
        # row m's own block: (B, K, C, M) from the diagonal, then members before objectives
        return torch.diagonal(out, dim1=1, dim2=2).permute(0, 3, 1, 2)


def variance(out: torch.Tensor) -> torch.Tensor:
    """(..., 2) head output -> (...) variance: softplus keeps it positive and smooth."""
    return F.softplus(out[..., 1]) + MIN_VARIANCE


def value_loss(
    out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, over: float | None = None
) -> torch.Tensor:
    """Mean over members and present objectives of the squared error (C = 1) or the Gaussian
    NLL (C = 2): out (B, M, K, C), target and mask (B, K). ``over``: the count of present
    objectives the mean divides by (default the batch's own; a micro-batch passes its whole
    batch's)."""
    mu = out[..., 0]  # (B, M, K)
    target, mask = target[:, None, :], mask[:, None, :]  # (B, 1, K): every member's target
    if out.shape[-1] == 1:
        per = (mu - target) ** 2
    else:
        var = variance(out)
        per = 0.5 * (var.log() + (target - mu) ** 2 / var)
    count = mask.sum() if over is None else torch.tensor(over, device=mask.device)
    return (per * mask).sum() / (count * mu.shape[1]).clamp_min(1.0)
