"""Validation during training: the loss of the last layer over the validation rows (what
selection keeps by default), and the score a run selects on. Data-parallel, rank 0 validates
and every rank takes its figures, so early stopping and weight selection agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..inputs.padding import micro_batches
from .config import TrainConfig
from .decoding import GrammarTable
from .device import CPU, Placement
from .distributed import ONE, World, broadcast_floats
from .loss import Targets, batch_loss, make_batch
from .model import RegressionTransformer
from .source import Row


@torch.no_grad()
def eval_loss(
    model: RegressionTransformer,
    src: Sequence[Row],
    tg: Targets,
    grammar: GrammarTable,
    pad_id: int,
    batch_size: int = TrainConfig.batch_size,
    max_positions: int = TrainConfig.max_positions,
    placement: Placement = CPU,
) -> float:
    """Mean loss of the last layer (what selection keeps; early exits are trained, not
    selected on) over the rows, in length-sorted batches of at most ``max_positions``."""
    model.eval()
    lengths = [len(s) for s in src]
    order = np.argsort(lengths, kind="stable")
    total, weight = 0.0, 0.0
    copies = model.copies_per_position
    for i in range(0, len(order), batch_size):
        for part in micro_batches(order[i : i + batch_size], lengths, max_positions, copies):
            batch = make_batch(part, src, tg, pad_id, placement.device)
            w = batch.weight_sum
            with placement.autocast():
                loss = batch_loss(model, batch, grammar, every_exit=False)
            total += float(loss) * w
            weight += w
    return total / max(weight, 1.0)


def validate(
    row: dict,
    model: RegressionTransformer,
    valid: tuple[Sequence[Row], Targets],
    grammar: GrammarTable,
    pad_id: int,
    cfg: TrainConfig,
    score_fn: Callable[[], float] | None,
    placement: Placement = CPU,
    world: World = ONE,
) -> float:
    """Validation loss (and Spearman) into ``row``; returns the score to select on (higher
    wins). Data-parallel: rank 0 validates and every rank takes its figures."""
    if cfg.select == "spearman" and score_fn is None:
        raise ValueError("select='spearman' needs a score function (validation data)")
    loss, spearman = math.nan, math.nan
    if world.main:
        # as training batches: larger ones only add a memory peak (benchmarks/memory.py)
        loss = eval_loss(
            model, valid[0], valid[1], grammar, pad_id, cfg.batch_size, cfg.max_positions,
            placement,
        )  # fmt: skip
        if cfg.select == "spearman":
            spearman = score_fn()  # type: ignore[misc]
    if world.active:
        loss, spearman = broadcast_floats([loss, spearman], placement.device)
    row["valid_loss"] = loss
    if cfg.select != "spearman":
        return -loss
    row["valid_spearman"] = spearman
    return spearman
