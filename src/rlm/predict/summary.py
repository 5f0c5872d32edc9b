"""Summaries of a sampling pass: per input and objective, the median and a central interval,
and metrics per objective over the rows that have it. Shared by ``RegressionLM``, ``rlm eval``
and the benchmarks. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..io import Example
from .calibration import IntervalCalibration, quantile_table
from .metrics import check_level, regression_metrics


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
        cls, draws: np.ndarray, level: float, calibration: IntervalCalibration | None = None
    ) -> Predictions:
        a = (1.0 - check_level(level)) / 2.0
        lower, upper = quantile_table(draws, [a, 1.0 - a], calibration)
        return cls(np.median(draws, axis=1), lower, upper, draws, level, calibration is not None)


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
