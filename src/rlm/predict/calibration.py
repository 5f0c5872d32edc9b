"""Calibrated predictive quantiles: split-conformal widening of the sampled intervals.

Why: an RLM's samples come from a decoder trained by maximum likelihood on a few hundred rows.
Its distribution is usually *overconfident* (on NAS-Bench-201 an 80% interval from 64 samples
at temperature 1 covered only 48% of test targets). Tuning the sampling temperature would
rescale every digit's distribution at once and has no guarantee. Conformalized quantile
regression (Romano, Patterson & Candes, 2019) does: on held-out rows, score how far each
target falls outside its raw interval, in units of that interval's width, and widen every
future interval by the score's empirical quantile. If held-out and future rows are
exchangeable (random splits are), the widened central ``level`` interval covers at least
``level`` of future targets, whatever the model.

The score is *normalised* by the raw width so that the widening follows the model's own idea of
uncertainty: a config whose samples spread over 10 ms gets ten times the margin of one spread
over 1 ms. Raw quantiles come from the draws; quantile ``tau < 0.5`` is the lower end of the
central ``1 - 2 tau`` interval and moves down by ``margin(level) * width``; ``tau > 0.5`` moves
up; the median never moves. Margins are fitted on a grid of levels and interpolated between.

Scores can be taken on a log-like scale, per objective (``log_scales``): ``asinh(y / s)``, which
is ``log(2 y / s)`` to within 0.2% of a decade above ``10 s`` and still defined at 0 and below.
A value head that learned an objective on a log scale (``rlm.numbers.scaling``) is calibrated
there: its draws are its point repeated (an MSE head has no spread), so every interval is one
normalised width, and on a decade-spanning target one width in target units is too wide for the
small values and too narrow for the large. Measured on PIE memory at 1,000 rows (MSE ensemble,
226 valid rows, one fit): 80% intervals covered 64% of the test rows in target units and 80% on
the log scale (offline, on that fit's saved outputs; in the accuracy benchmark's re-run, another
fit, 67% became 73%); on x264 PSNR, which is not logged, nothing changes. Deep-ensemble spread was
tried as the width instead and covered 59% (PIE memory) and 77% (x264 at 100 rows). A blend's
draws (``rlm.blend``) stay in target units: they carry the digit decoder's spread, and a
normalised margin times a spread is exponentiated on the log scale (``Predictor.logged``).

Torch-free: it works on sample arrays, so the API, the server and the CLI all share it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# central levels at which margins are fitted; requests between them interpolate linearly and
# requests outside [0.05, 0.99] use the nearest end (documented on IntervalCalibration)
LEVELS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
# a width floor of this fraction of the held-out targets' scale: an input whose samples all
# agree (width 0) would otherwise get an infinite normalised score and poison the quantile
FLOOR_FRACTION = 1e-3
MIN_ROWS = 10
# s of a log-scaled objective's asinh(y / s): this fraction of its smallest positive held-out
# target, so that every target of that size or more is on the log-like part of the curve
LOG_SCALE_FRACTION = 0.1


def raw_quantiles(draws: np.ndarray, taus: Sequence[float]) -> np.ndarray:
    """Empirical quantiles of the draws (B, S, K) at ``taus``: array (Q, B, K)."""
    return np.quantile(draws, list(taus), axis=1)


@dataclass(frozen=True)
class IntervalCalibration:
    """Per objective, the normalised margin to add at each central level (see module doc).

    ``margins[j][k]`` belongs to ``levels[j]`` and objective ``k``. A negative margin narrows an
    underconfident model's intervals, but never past the median. Levels below 0.05 or above
    0.99 use the margin of the nearest fitted level; held-out sets too small for a level (fewer
    than ``1/(1-level) - 1`` rows) get the largest observed score there, so their guarantee is
    weaker than nominal.
    """

    levels: tuple[float, ...]
    margins: tuple[tuple[float, ...], ...]  # (len(levels), K)
    floors: tuple[float, ...]  # (K,) smallest width used to normalise, in score units
    rows: tuple[int, ...]  # (K,) held-out rows that had each objective
    # (K,) s > 0: that objective is scored on asinh(y / s); 0: in target units. () = all 0
    log_scales: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.log_scales:
            object.__setattr__(self, "log_scales", (0.0,) * len(self.floors))
        if list(self.levels) != sorted(set(self.levels)) or not all(
            0.0 < lv < 1.0 for lv in self.levels
        ):
            raise ValueError(f"levels {self.levels}: need strictly increasing fractions in (0, 1)")
        k = len(self.floors)
        if len(self.margins) != len(self.levels) or any(len(m) != k for m in self.margins):
            raise ValueError(
                f"margins must be {len(self.levels)} levels x {k} objectives to match levels "
                "and floors"
            )
        if len(self.rows) != k:
            raise ValueError(f"rows has {len(self.rows)} entries for {k} objectives")
        if len(self.log_scales) != k or not all(
            math.isfinite(v) and v >= 0 for v in self.log_scales
        ):
            raise ValueError(
                f"log_scales {self.log_scales}: need {k} finite values >= 0 (0: target units)"
            )
        values = [v for m in self.margins for v in m] + list(self.floors)
        if not all(math.isfinite(v) for v in values) or not all(f > 0 for f in self.floors):
            raise ValueError("margins must be finite and floors finite and positive")

    @property
    def objectives(self) -> int:
        return len(self.floors)

    def margin(self, level: float) -> np.ndarray:
        """(K,) normalised margin for a central ``level`` interval (interpolated)."""
        m = np.asarray(self.margins)  # (L, K)
        return np.array([np.interp(level, self.levels, m[:, k]) for k in range(m.shape[1])])

    def quantiles(self, draws: np.ndarray, taus: Sequence[float]) -> np.ndarray:
        """Calibrated quantiles (Q, B, K) of the draws (B, S, K) at each ``tau`` in [0, 1]."""
        if draws.ndim != 3 or draws.shape[2] != self.objectives:
            raise ValueError(
                f"draws of shape {draws.shape}: expected (inputs, samples, {self.objectives}) "
                "for this calibration (was it fitted on a model with other objectives?)"
            )
        taus = [float(t) for t in taus]
        lows = [min(t, 1.0 - t) for t in taus]  # the lower end of each tau's central interval
        draws = to_score_scale(draws, self.log_scales)
        table = raw_quantiles(draws, [*lows, *(1.0 - a for a in lows), 0.5])  # (2Q+1, B, K)
        q = len(taus)
        lo, hi, median = table[:q], table[q : 2 * q], table[-1]
        width = np.maximum(hi - lo, np.asarray(self.floors))  # (Q, B, K)
        out = np.empty_like(lo)
        for j, t in enumerate(taus):
            if t == 0.5:  # the median: both ends coincide, nothing to widen
                out[j] = lo[j]
                continue
            shift = self.margin(1.0 - 2.0 * lows[j]) * width[j]  # (B, K)
            # a narrowing (negative) margin stops at the median: quantiles below 1/2 stay below it
            if t < 0.5:
                out[j] = np.minimum(lo[j] - shift, median)
            else:
                out[j] = np.maximum(hi[j] + shift, median)
        # interpolated margins could make neighbouring quantiles cross; quantiles never decrease
        order = np.argsort(taus, kind="stable")
        out[order] = np.maximum.accumulate(out[order], axis=0)
        return from_score_scale(out, self.log_scales)

    def to_dict(self) -> dict[str, Any]:
        return {
            "levels": list(self.levels),
            "margins": [list(m) for m in self.margins],
            "floors": list(self.floors),
            "rows": list(self.rows),
            "log_scales": list(self.log_scales),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IntervalCalibration:
        unknown = set(d) - {"levels", "margins", "floors", "rows", "log_scales"}
        if unknown:
            raise ValueError(f"unknown calibration fields {sorted(unknown)}")
        return cls(
            levels=tuple(float(v) for v in d["levels"]),
            margins=tuple(tuple(float(v) for v in m) for m in d["margins"]),
            floors=tuple(float(v) for v in d["floors"]),
            rows=tuple(int(v) for v in d["rows"]),
            # calibrations saved before 2026-12-02 scored every objective in target units
            log_scales=tuple(float(v) for v in d.get("log_scales", ())),
        )


def to_score_scale(values: np.ndarray, log_scales: Sequence[float]) -> np.ndarray:
    """Values (..., K) onto each objective's score scale: ``asinh(v / s)`` where ``s > 0``."""
    s = np.asarray(log_scales, dtype=float)
    if not s.any():
        return values
    logged = s > 0
    return np.where(logged, np.arcsinh(values / np.where(logged, s, 1.0)), values)


def from_score_scale(values: np.ndarray, log_scales: Sequence[float]) -> np.ndarray:
    """The inverse of ``to_score_scale``: ``s * sinh(z)`` where ``s > 0``."""
    s = np.asarray(log_scales, dtype=float)
    if not s.any():
        return values
    logged = s > 0
    return np.where(logged, s * np.sinh(np.where(logged, values, 0.0)), values)


def log_scale(targets: np.ndarray) -> float:
    """An objective's ``s`` for ``asinh(y / s)`` from its held-out targets (0: none positive,
    so target units)."""
    positive = targets[targets > 0]
    return LOG_SCALE_FRACTION * float(positive.min()) if positive.size else 0.0


def quantile_table(
    draws: np.ndarray, taus: Sequence[float], calibration: IntervalCalibration | None
) -> np.ndarray:
    """(Q, B, K) quantiles of the draws: calibrated when a calibration is given, raw otherwise."""
    if calibration is None:
        return raw_quantiles(draws, taus)
    return calibration.quantiles(draws, taus)


def calibratable(rows: Sequence[Any], names: Sequence[str]) -> bool:
    """Whether held-out rows (with a ``y`` mapping) have ``MIN_ROWS`` targets of every objective."""
    return all(sum(name in e.y for e in rows) >= MIN_ROWS for name in names)


class NonFiniteDraws(ValueError):
    """Held-out draws beyond the float range: nothing to calibrate on (see ``fit_calibration``)."""


def fit_calibration(
    draws: np.ndarray,
    y: np.ndarray,
    levels: Sequence[float] = LEVELS,
    log: Sequence[bool] | None = None,
) -> IntervalCalibration:
    """Margins from held-out draws (B, S, K) and targets (B, K); NaN marks a missing target.
    ``log`` (K,): objectives scored on the log-like scale (see the module doc)."""
    if draws.ndim != 3 or y.shape != (draws.shape[0], draws.shape[2]):
        raise ValueError(
            f"draws {draws.shape} and targets {y.shape}: need (B, S, K) draws and (B, K) targets"
        )
    bad = int((~np.isfinite(draws)).sum())
    if bad:
        raise NonFiniteDraws(
            f"{bad} of the {draws.size} draws on the held-out rows are beyond the float range "
            "(an undertrained digit decoder writing huge numbers, made infinite by a log-scaled "
            "target): train longer, or use a value head (ModelConfig(head='mse'))"
        )
    log = [False] * y.shape[1] if log is None else list(log)
    if len(log) != y.shape[1]:
        raise ValueError(f"log has {len(log)} entries for {y.shape[1]} objectives")
    scales = tuple(
        log_scale(y[np.isfinite(y[:, k]), k]) if log[k] else 0.0 for k in range(y.shape[1])
    )
    draws, y = to_score_scale(draws, scales), to_score_scale(y, scales)
    taus = [(1.0 - lv) / 2.0 for lv in levels]
    table = raw_quantiles(draws, [*taus, *(1.0 - t for t in taus)])  # (2L, B, K)
    lo, hi = table[: len(levels)], table[len(levels) :]
    margins = np.zeros((len(levels), y.shape[1]))
    floors, rows = [], []
    for k in range(y.shape[1]):
        have = np.isfinite(y[:, k])
        n = int(have.sum())
        if n < MIN_ROWS:
            raise ValueError(
                f"objective {k} has {n} held-out targets: calibrating needs at least {MIN_ROWS}; "
                "pass more validation rows or skip calibration"
            )
        t = y[have, k]
        scale = float(np.median(np.abs(t))) + float(np.std(t))
        floor = FLOOR_FRACTION * scale if scale > 0 else FLOOR_FRACTION
        for j, lv in enumerate(levels):
            a, b = lo[j, have, k], hi[j, have, k]
            score = np.maximum(a - t, t - b) / np.maximum(b - a, floor)  # (n,) <= 0 inside
            # the ceil((n+1) lv)-th smallest score: the split-conformal finite-sample quantile
            rank = min(math.ceil((n + 1) * lv), n)
            margins[j, k] = float(np.sort(score)[rank - 1])
        floors.append(floor)
        rows.append(n)
    return IntervalCalibration(
        levels=tuple(float(v) for v in levels),
        margins=tuple(tuple(float(v) for v in m) for m in margins),
        floors=tuple(floors),
        rows=tuple(rows),
        log_scales=scales,
    )
