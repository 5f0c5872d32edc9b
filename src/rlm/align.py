"""Staged training for a frozen backbone: numbers to numbers first, then text to numbers.

The recipe of the frozen-GPT-2 seed this project follows: when a frozen language model is read
through small trainable projections, first *align* those projections on number-to-number pairs
(the input is the text of a number, the target is that number), so that the input projection,
the model on top and the number decoder or value head agree on what a number is before they
see the task; then train on the task's text-to-number rows. Stage 1 costs no labels: its rows
are drawn from the training targets' own range.

``TrainConfig.align_steps`` turns it on (``rlm train --backbone ... --align-steps N``): stage 1
runs N optimiser steps on N x batch_size drawn rows, with the task's learning rate, no
validation and no clock (so a resumed run repeats it exactly); stage 2 is the ordinary fit,
with its whole time budget: stage 1's seconds come on top, and are recorded in the training
summary (``align_s``). A resumed run does not repeat stage 1: the saved weights replace its
result anyway. ``finetune`` does not re-run it: the copy's projections are aligned already.

The rows: each objective's value is drawn, half the time, from its training values (the task's
distribution), else uniformly over its training range (log-uniformly where the target is
learnt in log space, ``numbers.scaling.log_offset``), so values between the measured ones are
seen too. Several objectives are written in order, separated by a space.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from .io import Example
from .io.stream import ExampleStream
from .numbers.scaling import from_log, log_offset, to_log

if TYPE_CHECKING:
    from .api import RegressionLM

DIGITS = 6  # significant digits of a drawn number's text


def alignment_rows(
    train: Sequence[Example], targets: Sequence[str], n: int, seed: int
) -> list[Example]:
    """``n`` rows whose input is the text of one number per objective and whose targets are
    those numbers, drawn from the training targets (see the module docstring)."""
    rng = np.random.default_rng(seed)
    columns = []
    for name in targets:
        seen = np.array([e.y[name] for e in train if name in e.y], dtype=float)
        if seen.size == 0:
            raise ValueError(f"target {name!r} has no training values to draw alignment rows from")
        columns.append(_draw(seen, n, rng))
    drawn = np.stack(columns, axis=1)  # (n, K)
    # repr: the shortest text that reads back as exactly the target
    return [
        Example(
            x=" ".join(repr(float(v)) for v in row),
            y={name: float(v) for name, v in zip(targets, row, strict=True)},
        )
        for row in drawn
    ]


def _draw(seen: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) values: half resampled from ``seen``, half uniform over its range (log-uniform
    when the target is learnt in log space), rounded to ``DIGITS`` significant digits and kept
    inside the training range (a number range fitted on it, e.g. ``scheme="normalized"``,
    refuses a value rounded past its ends)."""
    lo, hi = float(seen.min()), float(seen.max())
    c = log_offset(seen)
    if c is not None:
        spread = from_log(rng.uniform(to_log(lo, c), to_log(hi, c), size=n), c)
    else:
        spread = rng.uniform(lo, hi, size=n)
    rounded = np.array([float(f"{v:.{DIGITS}g}") for v in spread])
    return np.where(rng.random(n) < 0.5, rng.choice(seen, size=n), np.clip(rounded, lo, hi))


def check_alignment(model: RegressionLM, train: Sequence[Example] | ExampleStream) -> None:
    """Refuse, before anything is fitted, an alignment stage that cannot run."""
    steps = model.train_config.align_steps
    if model.backbone_config is None:
        raise ValueError(
            f"align_steps={steps} aligns a frozen backbone's number projections: set a "
            "backbone (BackboneConfig, rlm train --backbone) or align_steps=0"
        )
    if model.task_key is not None or isinstance(train, ExampleStream):
        raise ValueError(
            f"align_steps={steps} draws its rows from one task's training targets: align a "
            "single-task model read from memory (no task_key, no stream), or set align_steps=0"
        )


def align_numbers(model: RegressionLM, train: Sequence[Example]) -> float:
    """Stage 1 on ``model``'s built network (``TrainConfig.align_steps`` steps; checked by
    ``check_alignment``); stage 2, the task, is the caller's ordinary training. Returns the
    seconds it took (recorded in the training summary)."""
    cfg = model.train_config
    assert model.targets is not None  # set by _build
    rows = alignment_rows(train, model.targets, cfg.align_steps * cfg.batch_size, cfg.seed)
    # one epoch of the drawn rows, no validation, no clock: deterministic, outside the budget;
    # no weight average (without validation the average, lagging behind, would be kept)
    stage = replace(cfg, align_steps=0, max_epochs=1, max_steps=None, time_budget_s=None, ema=0.0)
    start = time.perf_counter()
    model.train_config = stage
    try:
        model._train(rows, None, None, calibrate=False)
    finally:
        model.train_config = cfg
    return time.perf_counter() - start
