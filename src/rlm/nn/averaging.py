"""An exponential moving average of the weights (Polyak averaging), validated and kept in place
of the raw weights when ``TrainConfig(ema=...)`` is set.

Why: at a hundred rows per task a step's gradient is mostly noise, and the weights wander
around a good region instead of settling in it; their running average sits nearer its middle
(Polyak & Juditsky, 1992; the "EMA of weights" of most modern training recipes). Validation,
weight selection and the saved checkpoint all use the average, so it costs one extra copy
of the weights and no extra training.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class WeightAverage:
    """avg <- avg + (1 - d) (w - avg) after each step, with d = min(decay, (1 + t) / (10 + t)):
    the warm-up of ``d`` keeps the random initial weights from lingering in the average."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay, self.steps = decay, 0
        self.avg = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.avg[k].lerp_(v, 1.0 - d)
            else:  # integer buffers (none today) follow the model
                self.avg[k].copy_(v)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """The average in the model's place for the block (validation), then the raw weights."""
        raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.avg)
        try:
            yield
        finally:
            model.load_state_dict(raw)
