"""Summaries of a sampling pass: per input and objective, the median and a central interval,
and metrics per objective over the rows that have it (within each task for a shared model).
Shared by ``RegressionLM``, ``rlm eval`` and the benchmarks. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..io import Example
from ..io.examples import groups
from .metrics import check_level, regression_metrics
from .tasks import Calibration, calibrated_quantiles, mean_task_spearman


@dataclass(frozen=True)
class Predictions:
    """One sampling pass, summarised: per input and objective, median and central interval."""

    point: np.ndarray  # (B, K) median of the samples
    lower: np.ndarray  # (B, K) (1 - level) / 2 quantile (calibrated when ``calibrated``)
    upper: np.ndarray  # (B, K) (1 + level) / 2 quantile
    draws: np.ndarray  # (B, S, K) the samples themselves
    level: float
    calibrated: bool = False

    @classmethod
    def from_draws(
        cls,
        draws: np.ndarray,
        level: float,
        calibration: Calibration | None = None,
        tasks: Sequence[str] | None = None,
    ) -> Predictions:
        """``tasks``: each row's task, needed by a per-task calibration."""
        a = (1.0 - check_level(level)) / 2.0
        lower, upper = calibrated_quantiles(draws, [a, 1.0 - a], calibration, tasks)
        return cls(np.median(draws, axis=1), lower, upper, draws, level, calibration is not None)

    def subset(self, idx: np.ndarray) -> Predictions:
        """The rows ``idx`` of this pass."""
        return Predictions(
            self.point[idx],
            self.lower[idx],
            self.upper[idx],
            self.draws[idx],
            self.level,
            self.calibrated,
        )


def score(
    rows: Sequence[Example], names: Sequence[str], pred: Predictions
) -> dict[str, dict[str, float]]:
    """Metrics per objective over the rows that have it (at least 2), with the count ``n``."""
    report: dict[str, dict[str, float]] = {}
    for k, name in enumerate(names):
        have = [i for i, e in enumerate(rows) if name in e.y]
        if len(have) < 2:
            continue
        true = np.array([rows[i].y[name] for i in have])
        metrics = regression_metrics(
            true, pred.point[have, k], lower=pred.lower[have, k], upper=pred.upper[have, k]
        )
        report[name] = {"n": len(have), **metrics}
    return report


def score_by_task(
    rows: Sequence[Example], names: Sequence[str], pred: Predictions, tasks: Sequence[str]
) -> dict[str, dict[str, dict[str, float]]]:
    """``score`` within each task: {task: {objective: metrics}}, tasks in first-seen order."""
    return {
        task: score([rows[i] for i in idx], names, pred.subset(idx))
        for task, idx in groups(tasks).items()
    }


def mean_spearman(
    rows: Sequence[Example], names: Sequence[str], pred: Predictions, tasks: Sequence[str] | None
) -> float:
    """What weight selection maximises: the mean Spearman over objectives, and over tasks when
    ``tasks`` are given. An objective whose predictions are still constant (early training)
    has no Spearman and counts as not yet scoring; -inf while none scores."""
    report = (
        {"": score(rows, names, pred)} if tasks is None else score_by_task(rows, names, pred, tasks)
    )
    return mean_task_spearman(report)
