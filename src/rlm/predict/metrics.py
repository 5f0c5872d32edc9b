"""Regression metrics: ranking quality, error, fit, and interval calibration.

RLMs are mostly used to *rank* candidates (configurations, architectures, programs), so the rank
correlations come first: Spearman's rho and Kendall's tau-b (tau-b because measured targets have
ties, e.g. whole-millisecond latencies). MAE / MAPE / R^2 say how far off the numbers are, and
coverage / width judge predicted intervals (from sampling several decodes).

Every function validates its inputs the same way (1-D, equal length >= 2, finite) and raises a
ValueError that says what to fix, instead of returning NaN: a NaN metric in a results table is
easy to miss and poisons every mean it enters. Where a metric is undefined for valid data
(MAPE with a zero target, a rank correlation of a constant vector, R^2 of a constant target),
the standalone function raises and :func:`regression_metrics` leaves that key out.

Torch-free on purpose (a test enforces it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ArrayLike = Sequence[float] | np.ndarray


def check_level(level: float, name: str = "level") -> float:
    """A central interval's nominal coverage: a fraction strictly inside (0, 1)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"{name} {level}: use a fraction in (0, 1), e.g. 0.8 for an 80% interval")
    return level


def as_vector(a: ArrayLike, name: str) -> np.ndarray:
    """A finite 1-D float64 array, or a ValueError naming ``name`` and what to fix."""
    try:
        v = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} is not numeric ({e}): pass a sequence of numbers") from e
    if v.ndim != 1:
        raise ValueError(f"{name} has shape {v.shape}: pass a 1-D sequence (one value per example)")
    bad = np.flatnonzero(~np.isfinite(v))
    if bad.size:
        raise ValueError(
            f"{name} has {bad.size} non-finite values (first at index {bad[0]}: {v[bad[0]]}): "
            "drop or fix those examples first"
        )
    return v


def _pair(y_true: ArrayLike, y_pred: ArrayLike, names: tuple[str, str] = ("y_true", "y_pred")):
    a, b = as_vector(y_true, names[0]), as_vector(y_pred, names[1])
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} has {a.size} values but {names[1]} has {b.size}: align them")
    if a.size < 2:
        raise ValueError(f"need at least 2 examples to score, got {a.size}")
    return a, b


def _check_not_constant(a: np.ndarray, name: str, metric: str) -> None:
    if np.all(a == a[0]):
        raise ValueError(
            f"{name} is constant ({a[0]}), so {metric} is undefined: "
            "score more varied examples or report MAE instead"
        )


def spearman(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    a, b = _pair(y_true, y_pred)
    _check_not_constant(a, "y_true", "Spearman's rho")
    _check_not_constant(b, "y_pred", "Spearman's rho")
    from scipy import stats  # lazily: importing scipy.stats costs ~0.3 s of CLI start-up

    return float(stats.spearmanr(a, b).statistic)


def kendall(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Kendall's tau-b (the tie-corrected variant)."""
    a, b = _pair(y_true, y_pred)
    _check_not_constant(a, "y_true", "Kendall's tau")
    _check_not_constant(b, "y_pred", "Kendall's tau")
    from scipy import stats

    return float(stats.kendalltau(a, b, variant="b").statistic)


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error."""
    a, b = _pair(y_true, y_pred)
    with np.errstate(over="ignore"):
        return _finite(float(np.mean(np.abs(a - b))), "MAE")


def mape(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute percentage error, in percent: ``100 * mean(|y - p| / |y|)``."""
    a, b = _pair(y_true, y_pred)
    zeros = np.flatnonzero(a == 0)
    if zeros.size:
        raise ValueError(
            f"y_true has {zeros.size} zeros (first at index {zeros[0]}), where MAPE divides by "
            "zero: use MAE or shift the target"
        )
    with np.errstate(over="ignore"):  # overflow is checked just below, with a better message
        value = float(100.0 * np.mean(np.abs(a - b) / np.abs(a)))
    if not np.isfinite(value):
        raise ValueError(
            "y_true has values so close to zero that MAPE overflows: use MAE or shift the target"
        )
    return value


def r2(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (can be negative)."""
    a, b = _pair(y_true, y_pred)
    _check_not_constant(a, "y_true", "R^2")
    with np.errstate(over="ignore", under="ignore"):  # checked just below
        ss_res = float(np.sum((a - b) ** 2))
        ss_tot = float(np.sum((a - a.mean()) ** 2))
    # Values that differ by less than ~1e-154 square to 0: numerically constant, same verdict.
    value = 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan
    if not math.isfinite(value):
        raise ValueError(
            "y_true is numerically constant (variance under/overflows), so R^2 is undefined: "
            "rescale the target or report MAE instead"
        )
    return value


def _finite(value: float, metric: str) -> float:
    # Finite inputs can still overflow (|1e308 - -1e308|); say so rather than return inf.
    if not math.isfinite(value):
        raise ValueError(f"{metric} overflows for these values: rescale the target first")
    return value


def _check_bounds(lo: np.ndarray, hi: np.ndarray) -> None:
    crossed = np.flatnonzero(lo > hi)
    if crossed.size:
        i = crossed[0]
        raise ValueError(
            f"lower > upper at {crossed.size} examples (first at index {i}: {lo[i]} > {hi[i]}): "
            "swap the bounds or fix the quantiles that produced them"
        )


def interval_coverage(y: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> float:
    """Fraction (0..1) of ``y`` inside its closed interval ``[lower, upper]``."""
    a, lo = _pair(y, lower, ("y", "lower"))
    _, hi = _pair(y, upper, ("y", "upper"))
    _check_bounds(lo, hi)
    return float(np.mean((a >= lo) & (a <= hi)))


def interval_width(lower: ArrayLike, upper: ArrayLike) -> float:
    """Mean interval width ``mean(upper - lower)``, in the target's units."""
    lo, hi = _pair(lower, upper, ("lower", "upper"))
    _check_bounds(lo, hi)
    with np.errstate(over="ignore"):
        return _finite(float(np.mean(hi - lo)), "interval width")


def regression_metrics(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    lower: ArrayLike | None = None,
    upper: ArrayLike | None = None,
) -> dict[str, float]:
    """All point metrics, plus ``coverage`` and ``width`` when both bounds are given.

    Keys: spearman, kendall, mae, mape, r2[, coverage, width]. A metric that is undefined for
    these values is *absent*, never NaN: mape when y_true has a zero, spearman / kendall when
    either vector is constant, r2 when y_true is constant, and any metric that overflows.
    """
    a, b = _pair(y_true, y_pred)
    if (lower is None) != (upper is None):
        raise ValueError("pass both lower and upper for interval metrics, or neither")
    out: dict[str, float] = {}
    # Inputs are validated above, so a ValueError below can only mean "undefined for these
    # values" (see the docstring): leave that key out rather than write NaN.
    for name, fn in (
        ("spearman", spearman),
        ("kendall", kendall),
        ("mae", mae),
        ("mape", mape),
        ("r2", r2),
    ):
        try:
            out[name] = fn(a, b)
        except ValueError:
            continue
    if lower is not None and upper is not None:
        out["coverage"] = interval_coverage(a, lower, upper)
        out["width"] = interval_width(lower, upper)
    return out
