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
with its whole time budget: stage 1's seconds come on top (a few at a few hundred steps).

The rows: each objective's value is drawn, half the time, from its training values (the task's
distribution), else uniformly over its training range (log-uniformly where the target is
learnt in log space, ``numbers.scaling.wants_log``), so values between the measured ones are
seen too. Several objectives are written in order, separated by a space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from .inputs.text import format_number
from .io import Example
from .io.stream import ExampleStream
from .numbers.scaling import wants_log

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
    return [
        Example(
            x=" ".join(format_number(float(v), DIGITS) for v in row),
            y={
                name: float(format_number(float(v), DIGITS))
                for name, v in zip(targets, row, strict=True)
            },
        )
        for row in drawn
    ]


def _draw(seen: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) values: half resampled from ``seen``, half uniform over its range (log-uniform
    when the target is learnt in log space)."""
    lo, hi = float(seen.min()), float(seen.max())
    if wants_log(seen):
        spread = np.exp(rng.uniform(np.log(lo), np.log(hi), size=n))
    else:
        spread = rng.uniform(lo, hi, size=n)
    return np.where(rng.random(n) < 0.5, rng.choice(seen, size=n), spread)


def align_numbers(model: RegressionLM, train: Sequence[Example] | ExampleStream) -> None:
    """Stage 1 on ``model``'s built network (``TrainConfig.align_steps`` steps); stage 2, the
    task, is the caller's ordinary training."""
    cfg = model.train_config
    if model.backbone is None:
        raise ValueError(
            f"align_steps={cfg.align_steps} aligns a frozen backbone's number projections: "
            "set a backbone (BackboneConfig, rlm train --backbone) or align_steps=0"
        )
    if model.task_key is not None or isinstance(train, ExampleStream):
        raise ValueError(
            f"align_steps={cfg.align_steps} draws its rows from one task's training targets: "
            "align a single-task model read from memory (no task_key, no stream), or set "
            "align_steps=0"
        )
    assert model.targets is not None  # set by _build
    rows = alignment_rows(train, model.targets, cfg.align_steps * cfg.batch_size, cfg.seed)
    # one epoch of the drawn rows, no validation, no clock: deterministic, outside the budget
    stage = replace(cfg, align_steps=0, max_epochs=1, max_steps=None, time_budget_s=None)
    model.train_config = stage
    try:
        model._train(rows, None, None, calibrate=False)
    finally:
        model.train_config = cfg
