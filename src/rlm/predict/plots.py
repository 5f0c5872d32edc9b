"""Diagnostic plots for regression predictions: predicted vs true, residuals, calibration.

matplotlib is an optional dependency (``pip install rlm[plots]``) and is imported only when a plot
is drawn, so ``import rlm.plots`` costs nothing. Figures are built with the object API
(``matplotlib.figure.Figure``), never ``pyplot``: no global figure registry to leak memory in
long runs, no GUI backend to pick, and the module works from threads and headless machines alike.

Every function validates its inputs (1-D, equal lengths, finite) with a ValueError that says what
to fix, writes one PNG (parent folders are created) and returns its path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .metrics import ArrayLike, as_vector

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


# Log axes only pay off when the values cover orders of magnitude; 2 decades is where a linear
# axis starts to squash most points into one corner.
LOG_DECADES = 2.0
_DPI = 120


def require_matplotlib() -> None:
    """Fail now, not after a long training or sampling run, when matplotlib is missing."""
    try:
        import matplotlib.figure  # noqa: F401  # lazy: optional and slow to import
    except ImportError as e:
        raise ValueError("plots need matplotlib: pip install rlm[plots]") from e


def _figure(width: float = 5.5, height: float = 5.0) -> tuple[Figure, Axes]:
    require_matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    return fig, fig.subplots()


def _vector(a: ArrayLike, name: str) -> np.ndarray:
    v = as_vector(a, name)  # the same checks as scoring: numeric, 1-D, finite
    if v.size == 0:
        raise ValueError(f"{name} is empty: there is nothing to plot")
    return v


def _same_length(**arrays: np.ndarray) -> None:
    sizes = {name: a.size for name, a in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"lengths differ: {sizes}; pass one value per point in each")


def spans_decades(*arrays: np.ndarray, decades: float = LOG_DECADES) -> bool:
    """True when every value is positive and max/min exceeds ``10**decades``."""
    v = np.concatenate([np.ravel(a) for a in arrays])
    if v.size == 0 or np.any(v <= 0):
        return False
    return bool(np.log10(v.max() / v.min()) > decades)


def _save(fig: Figure, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, format="png")
    return p


def scatter(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    path: str | Path,
    title: str,
    lower: ArrayLike | None = None,
    upper: ArrayLike | None = None,
) -> Path:
    """Predicted vs true, with the y = x line; vertical error bars when ``lower``/``upper`` given.

    Both axes go logarithmic when all points are positive and span more than two decades, e.g.
    latencies from microseconds to seconds. The view covers the true values and the bulk of the
    predictions: a sampled decode can be wildly off (a wrong exponent digit), and one such point
    must not squash every other point into a corner, so the few beyond the view are drawn at its
    edge as red triangles and counted in the legend. Interval bars are clipped to the view.
    """
    t, p = _vector(y_true, "y_true"), _vector(y_pred, "y_pred")
    _same_length(y_true=t, y_pred=p)
    if (lower is None) != (upper is None):
        raise ValueError("pass both lower and upper for error bars, or neither")
    lo = hi = None
    if lower is not None and upper is not None:
        lo, hi = _vector(lower, "lower"), _vector(upper, "upper")
        _same_length(y_true=t, lower=lo, upper=hi)
        if np.any(lo > hi):
            raise ValueError("lower > upper for some points: swap the bounds or fix the quantiles")
    log = spans_decades(t, p)
    lim = _limits(np.concatenate([t, _bulk(p)]), log)
    off = (p < lim[0]) | (p > lim[1])
    shown = np.clip(p, *lim)
    fig, ax = _figure()
    # many points overlap in a typical test set: small, translucent markers keep density visible
    alpha = 0.6 if t.size <= 200 else 0.35
    if lo is not None and hi is not None:
        # a point estimate may sit outside its interval (e.g. a mean); clip so bars stay >= 0
        bar_lo, bar_hi = np.clip(lo, *lim), np.clip(hi, *lim)
        yerr = np.stack([np.clip(shown - bar_lo, 0, None), np.clip(bar_hi - shown, 0, None)])
        ax.errorbar(
            t, shown, yerr=yerr, fmt="none", ecolor="tab:blue", alpha=alpha * 0.4, lw=0.8, zorder=1
        )
    ax.scatter(
        t[~off], shown[~off], s=12, alpha=alpha, color="tab:blue", edgecolors="none", zorder=2
    )
    if off.any():
        high = p > lim[1]
        for mask, marker in ((off & high, "^"), (off & ~high, "v")):
            ax.scatter(t[mask], shown[mask], s=22, marker=marker, color="tab:red", zorder=4)
        ax.scatter([], [], marker="^", color="tab:red", label=f"{int(off.sum())} off scale")
    ax.plot(lim, lim, color="0.3", lw=1, ls="--", label="y = x", zorder=3)
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted" + (" (bars: interval)" if lo is not None else ""))
    ax.set_title(title)
    ax.legend(loc="upper left", frameon=False)
    ax.grid(True, alpha=0.3, which="both" if log else "major")
    return _save(fig, path)


def _bulk(v: np.ndarray, tail: float = 0.02) -> np.ndarray:
    """The 2nd and 98th percentiles: where most of ``v`` lies, ignoring a few wild values."""
    return np.quantile(v, [tail, 1 - tail])


def _limits(v: np.ndarray, log: bool) -> tuple[float, float]:
    """Axis range around ``v`` with a 5% margin (multiplicative on log axes)."""
    lo, hi = float(v.min()), float(v.max())
    if log:
        f = (hi / lo) ** 0.05
        return lo / f, hi * f
    pad = 0.05 * (hi - lo) or max(abs(lo) * 0.05, 1.0)  # constant data still gets a visible box
    return lo - pad, hi + pad


def residuals(y_true: ArrayLike, y_pred: ArrayLike, path: str | Path, title: str) -> Path:
    """Residuals (predicted - true) against the true value, with a zero line.

    Shows where the model is biased (e.g. over-predicting the low end). The x axis is
    logarithmic under the same rule as :func:`scatter`; as there, the few residuals far beyond
    the bulk are drawn at the edge of the view as red triangles.
    """
    t, p = _vector(y_true, "y_true"), _vector(y_pred, "y_pred")
    _same_length(y_true=t, y_pred=p)
    r = p - t
    lim = _limits(np.concatenate([[0.0], _bulk(r)]), log=False)
    off = (r < lim[0]) | (r > lim[1])
    shown = np.clip(r, *lim)
    fig, ax = _figure(6.5, 4.0)
    alpha = 0.6 if t.size <= 200 else 0.35
    ax.scatter(t[~off], shown[~off], s=12, alpha=alpha, color="tab:orange", edgecolors="none")
    if off.any():
        ax.scatter(
            t[off],
            shown[off],
            s=22,
            marker="d",
            color="tab:red",
            label=f"{int(off.sum())} off scale",
        )
        ax.legend(loc="upper right", frameon=False)
    ax.axhline(0.0, color="0.3", lw=1, ls="--")
    ax.set_ylim(lim)
    if spans_decades(t):
        ax.set_xscale("log")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted - true")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def calibration(
    levels: ArrayLike, empirical: ArrayLike, path: str | Path, title: str = "Interval calibration"
) -> Path:
    """Empirical coverage of central intervals against their nominal level (ideal: the diagonal).

    Points below the diagonal mean intervals that are too narrow (over-confident samples).
    """
    lv, em = _vector(levels, "levels"), _vector(empirical, "empirical")
    _same_length(levels=lv, empirical=em)
    for name, v in (("levels", lv), ("empirical", em)):
        if np.any((v < 0) | (v > 1)):
            raise ValueError(f"{name} must be fractions in [0, 1] (e.g. 0.8, not 80)")
    order = np.argsort(lv)
    fig, ax = _figure(4.5, 4.5)
    ax.plot([0, 1], [0, 1], color="0.3", lw=1, ls="--", label="ideal")
    ax.plot(lv[order], em[order], marker="o", color="tab:green", label="empirical")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("nominal level")
    ax.set_ylabel("empirical coverage")
    ax.set_title(title)
    ax.legend(loc="upper left", frameon=False)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)
