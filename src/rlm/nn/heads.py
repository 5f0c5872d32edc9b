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

from ..inputs.fields import KEY_SPECIALS
from ..predict.draws import MIN_VARIANCE

# SlotHead's shape, TabM's MLP (Gorishniy et al., ICLR 2025: blocks of 512, dropout 0.1)
SLOT_WIDTH = 32  # each key's slot: enough for one option's value, small for many keys
SLOT_HIDDEN = 512
SLOT_DROPOUT = 0.1


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
        return member_outputs(self, F.gelu(self.fc(self.ln(pooled))))


def member_outputs(head: ValueHead | SlotHead, h: torch.Tensor) -> torch.Tensor:
    """Each member's own block of ``head.out``: h (B*M, H), rows member-minor -> (B, M, K, C).

    Every member's output layer is one matrix; member m's row reads its own block only."""
    m, k, c = head.members, head.objectives, head.outputs
    out = head.out(h).view(-1, m, m, k, c)  # (B, M rows, M output blocks, K, C)
    # row m's own block: (B, K, C, M) from the diagonal, then members before objectives
    return torch.diagonal(out, dim1=1, dim2=2).permute(0, 3, 1, 2)


class SlotHead(nn.Module):
    """``mixer="slots"``: each position's input vector, by its key, into that key's slot; the
    slots side by side read by an MLP: (B*M, T, D) -> (B, M, K, C). No attention.

    Why: a configuration is a fixed set of options, a row of a table. Measured on x264 at 1,000
    rows (MSE head, one member, 60 s, 3 seeds, test Spearman): the field encoder's vectors read
    this way 0.958 / 0.958 / 0.950 against 0.936 / 0.939 / 0.929 through the attention encoder
    and its mean pool, as TabM's MLP reads its per-feature embeddings (0.957 with one member).
    Each key has its own weights into the MLP, so each option's value can act in its own way;
    pooled states share one map for every key. A string's pieces add up in its key's slot.

    Shapes: S slot width, N keys (the key vocabulary, specials included), H hidden width.
    """

    def __init__(self, d: int, n_keys: int, objectives: int, gaussian: bool, members: int) -> None:
        super().__init__()
        self.objectives, self.outputs = objectives, 2 if gaussian else 1
        self.members, self.n_keys = members, n_keys
        self.slot = nn.Linear(d, SLOT_WIDTH)  # one map into every slot; the MLP tells them apart
        self.mlp = nn.Sequential(
            nn.Linear(n_keys * SLOT_WIDTH, SLOT_HIDDEN), nn.GELU(), nn.Dropout(SLOT_DROPOUT),
            nn.Linear(SLOT_HIDDEN, SLOT_HIDDEN), nn.GELU(), nn.Dropout(SLOT_DROPOUT),
        )  # fmt: skip
        self.out = nn.Linear(SLOT_HIDDEN, members * objectives * self.outputs)

    def forward(self, x: torch.Tensor, pad: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """x (B*M, T, D), pad (B*M, T) True at padding, keys (B*M, T) ids -> (B, M, K, C)"""
        v = self.slot(x) * (~pad)[..., None].to(x.dtype)  # (B*M, T, S), padding adds nothing
        n, t, s = v.shape
        slots = v.new_zeros(n, self.n_keys, s).scatter_add(1, keys[..., None].expand(n, t, s), v)
        return member_outputs(self, self.mlp(slots.reshape(n, self.n_keys * s)))  # (B, M, K, C)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """torch's own init (as measured), except the special keys' slots (``<none>``,
        ``<unknown>``) at zero: no training field reaches them, so an unseen key read through
        ``<unknown>`` adds nothing instead of a random, never-trained contribution."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        first = self.mlp[0]
        assert isinstance(first, nn.Linear)
        first.weight[:, : len(KEY_SPECIALS) * SLOT_WIDTH] = 0.0

    @torch.no_grad()
    def grow_keys(self, n_keys: int) -> None:
        """Slots for ``n_keys`` keys, the new ones (appended) at zero weight: a fine-tune's new
        options start contributing nothing and learn from there; the known ones are kept."""
        first = self.mlp[0]
        assert isinstance(first, nn.Linear)
        grown = nn.Linear(n_keys * SLOT_WIDTH, SLOT_HIDDEN).to(first.weight.device)
        grown.weight.zero_()
        grown.weight[:, : first.in_features] = first.weight
        grown.bias.copy_(first.bias)
        self.mlp[0], self.n_keys = grown, n_keys


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
