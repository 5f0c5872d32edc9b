"""The loss of a batch: cross-entropy over the number tokens *under the grammar* for the digit
decoder, the squared error or Gaussian NLL for a value head, averaged over the model's exits.

Logits of tokens the grammar forbids at a position are masked before the softmax, exactly as at
decoding time, so the model spends no capacity on impossible strings. Missing objectives have
weight 0. A model with early exits (``ModelConfig.exits``) is trained on the mean of every
exit's loss, so each exit learns to predict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..numbers.scaling import ScaledTargets
from ..numbers.targets import EncodedTargets
from .decoding import GrammarTable
from .heads import value_loss
from .model import RegressionTransformer
from .source import Row, Source, collate

Targets = EncodedTargets | ScaledTargets  # digit-decoder tokens, or a value head's floats


@dataclass
class Batch:
    src: Source  # (B, T) encoder positions, padded
    tgt: torch.Tensor | None  # (B, L) number-token ids (digit decoder)
    weight: torch.Tensor | None  # (B, L)
    states: torch.Tensor | None  # (B, L) grammar state before each target token
    values: torch.Tensor | None = None  # (B, K) unit-scale targets (value heads)
    value_mask: torch.Tensor | None = None  # (B, K) 1 where the objective is present

    @property
    def weight_sum(self) -> float:
        """How much this batch counts in a mean loss: its present tokens or objectives."""
        w = self.value_mask if self.values is not None else self.weight
        assert w is not None
        return float(w.sum())


def make_batch(
    idx: np.ndarray,
    src: Sequence[Row],
    tg: Targets,
    pad_id: int,
    device: torch.device | None = None,
) -> Batch:
    """The examples ``idx`` as padded tensors, on ``device`` (default: the CPU)."""
    inputs = collate([src[i] for i in idx], pad_id)
    if device is not None and device.type != "cpu":
        inputs = inputs.to(device)

    def tensor(a: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype, device=device)

    if isinstance(tg, ScaledTargets):
        return Batch(inputs, None, None, None, tensor(tg.values[idx]), tensor(tg.mask[idx]))
    return Batch(
        inputs, tensor(tg.ids[idx]), tensor(tg.weight[idx]), tensor(tg.states[idx], torch.int64)
    )


def grammar_loss(
    model: RegressionTransformer,
    batch: Batch,
    grammar: GrammarTable,
    label_smoothing: float = 0.0,
    over: float | None = None,
    every_exit: bool = True,
) -> torch.Tensor:
    """Weighted mean cross-entropy over allowed tokens; ``over``: the total weight the mean
    divides by (default this batch's; a micro-batch passes its whole batch's). ``every_exit``:
    the mean over the model's exits (training); False: the last layer's alone (selection)."""
    assert batch.tgt is not None and batch.weight is not None and batch.states is not None
    b = batch.tgt.shape[0]
    device = batch.tgt.device
    bos = torch.full((b, 1), model.bos, dtype=torch.int64, device=device)
    tgt_in = torch.cat([bos, batch.tgt[:, :-1]], dim=1)  # (B, L): shift right behind BOS
    allowed = grammar.mask[batch.states]  # (B, L, V)
    total, denominator = (
        torch.zeros((), device=device),
        max(batch.weight_sum if over is None else over, 1.0),
    )
    # one loss per exit (the last layer alone without exits), averaged: every exit learns
    last = None if every_exit else (model.cfg.enc_layers,)
    exits = model.logits_per_exit(batch.src, tgt_in, last)  # each (B, L, V)
    for logits in exits:
        logp = logits.float().masked_fill(~allowed, float("-inf")).log_softmax(-1)
        nll = -logp.gather(-1, batch.tgt[..., None])[..., 0]  # (B, L)
        if label_smoothing > 0:
            # smooth only over the tokens the grammar allows here
            uniform = -logp.masked_fill(~allowed, 0.0).sum(-1) / allowed.sum(-1)
            nll = (1 - label_smoothing) * nll + label_smoothing * uniform
        total = total + (nll * batch.weight).sum() / denominator
    return total / len(exits)


def batch_loss(
    model: RegressionTransformer,
    batch: Batch,
    grammar: GrammarTable,
    label_smoothing: float = 0.0,
    over: float | None = None,
    every_exit: bool = True,
) -> torch.Tensor:
    """The training loss of either output: value head (MSE / Gaussian NLL) or digit decoder.
    ``over``: the weight its mean divides by, as in ``grammar_loss``: micro-batches that pass
    their whole batch's weight sum to exactly the whole batch's loss (and gradient).
    ``every_exit``: as in ``grammar_loss``."""
    if batch.values is not None:
        assert batch.value_mask is not None
        last = None if every_exit else (model.cfg.enc_layers,)
        exits = model.values_per_exit(batch.src, last)  # each (B, M, K, C); one without exits
        losses = [value_loss(out, batch.values, batch.value_mask, over) for out in exits]
        return torch.stack(losses).mean()
    return grammar_loss(model, batch, grammar, label_smoothing, over, every_exit)
