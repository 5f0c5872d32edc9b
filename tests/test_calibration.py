"""Split-conformal interval calibration: coverage on synthetic draws, invariants, round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.predict.calibration import LEVELS, IntervalCalibration, fit_calibration, quantile_table


def synthetic(n: int, seed: int, spread: float, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Targets ~ N(mu, 1) with draws ~ N(mu, spread^2): spread < 1 is an overconfident model."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(-50, 50, size=(n, 1, k))
    y = mu[:, 0, :] + rng.normal(size=(n, k))
    draws = mu + spread * rng.normal(size=(n, 64, k))
    return draws, y


def coverage(draws: np.ndarray, y: np.ndarray, level: float, cal: IntervalCalibration | None):
    a = (1 - level) / 2
    lo, hi = quantile_table(draws, [a, 1 - a], cal)
    return float(np.mean((y >= lo) & (y <= hi)))


@pytest.mark.parametrize(
    ("spread", "raw_low", "raw_high"),
    [
        (0.3, 0.0, 0.45),  # overconfident: the raw 80% interval covers about 30%
        (1.0, 0.70, 0.90),  # well specified
        (3.0, 0.97, 1.0),  # underconfident: calibration narrows it
    ],
)
@pytest.mark.parametrize("level", [0.5, 0.8, 0.9])
def test_calibrated_coverage_is_nominal(spread, raw_low, raw_high, level):
    draws, y = synthetic(600, seed=0, spread=spread)
    cal = fit_calibration(draws, y)
    test_draws, test_y = synthetic(4000, seed=1, spread=spread)
    if level == 0.8:
        assert raw_low <= coverage(test_draws, test_y, level, None) <= raw_high
    assert abs(coverage(test_draws, test_y, level, cal) - level) < 0.04


def test_between_grid_levels_interpolates():
    draws, y = synthetic(600, seed=0, spread=0.3)
    cal = fit_calibration(draws, y)
    test_draws, test_y = synthetic(4000, seed=1, spread=0.3)
    assert 0.75 not in LEVELS
    assert abs(coverage(test_draws, test_y, 0.75, cal) - 0.75) < 0.04


def test_missing_targets_are_skipped_per_objective():
    draws, y = synthetic(300, seed=0, spread=0.5, k=2)
    y[:150, 1] = np.nan
    cal = fit_calibration(draws, y)
    assert cal.rows == (300, 150)


def test_too_few_rows_is_an_error_naming_the_fix():
    draws, y = synthetic(5, seed=0, spread=0.5)
    with pytest.raises(ValueError, match="at least 10"):
        fit_calibration(draws, y)


def test_shape_mismatch_is_an_error():
    draws, y = synthetic(50, seed=0, spread=0.5, k=2)
    cal = fit_calibration(draws, y)
    with pytest.raises(ValueError, match="expected"):
        cal.quantiles(draws[:, :, :1], [0.1])


def test_constant_draws_get_a_finite_margin():
    # every sample agrees (width 0): the floor keeps the normalised score finite
    y = np.arange(20, dtype=float)[:, None]
    draws = np.repeat(y[:, None, :] + 0.5, 64, axis=1)
    cal = fit_calibration(draws, y)
    assert all(np.isfinite(m).all() for m in cal.margins)


@given(
    taus=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8),
    spread=st.floats(0.05, 5.0),
)
@settings(max_examples=40, deadline=None)
def test_quantiles_are_monotone_and_bracket_the_median(taus, spread):
    draws, y = synthetic(40, seed=2, spread=spread)
    cal = fit_calibration(draws, y)
    table = cal.quantiles(draws, taus)  # (Q, B, 1)
    order = np.argsort(taus, kind="stable")
    assert (np.diff(table[order], axis=0) >= 0).all()
    median = np.median(draws, axis=1)
    for j, t in enumerate(taus):
        if t < 0.5:
            assert (table[j] <= median).all()
        elif t > 0.5:
            assert (table[j] >= median).all()


def test_dict_round_trip_and_unknown_fields():
    draws, y = synthetic(100, seed=0, spread=0.5, k=2)
    cal = fit_calibration(draws, y)
    back = IntervalCalibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back == cal
    with pytest.raises(ValueError, match="unknown calibration fields"):
        IntervalCalibration.from_dict({**cal.to_dict(), "temperature": 1.0})


def test_invalid_calibration_is_rejected():
    with pytest.raises(ValueError, match="strictly increasing"):
        IntervalCalibration(levels=(0.8, 0.5), margins=((0.0,), (0.0,)), floors=(1.0,), rows=(10,))
    with pytest.raises(ValueError, match="finite"):
        IntervalCalibration(levels=(0.5,), margins=((float("inf"),),), floors=(1.0,), rows=(10,))


def test_draws_beyond_the_float_range_are_refused_with_the_reason() -> None:
    from rlm.predict.calibration import NonFiniteDraws

    draws = np.random.default_rng(0).normal(size=(12, 8, 1))
    draws[3, 2, 0] = np.inf
    with pytest.raises(NonFiniteDraws, match=r"1 of the 96 draws .* beyond the float range"):
        fit_calibration(draws, np.zeros((12, 1)))


def multiplicative(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A value head's constant draws (its point repeated) on a target spanning four decades
    whose error is multiplicative: y = point * exp(N(0, 0.3^2))."""
    rng = np.random.default_rng(seed)
    point = 10.0 ** rng.uniform(1, 5, size=n)
    y = point * np.exp(0.3 * rng.normal(size=n))
    return np.repeat(point[:, None, None], 16, axis=1), y[:, None]


@pytest.mark.parametrize(
    ("log", "covers_small", "covers_large"),
    [
        (False, (0.99, 1.0), (0.0, 0.7)),  # one width in target units: too wide, too narrow
        (True, (0.74, 0.86), (0.74, 0.86)),  # on the log-like scale: nominal at every size
    ],
)
def test_a_log_scaled_objective_is_calibrated_on_a_log_scale(log, covers_small, covers_large):
    draws, y = multiplicative(800, seed=0)
    cal = fit_calibration(draws, y, log=[log])
    assert (cal.log_scales[0] > 0) == log
    test_draws, test_y = multiplicative(6000, seed=1)
    lo, mid, hi = quantile_table(test_draws, [0.1, 0.5, 0.9], cal)
    np.testing.assert_allclose(mid, test_draws[:, 0])  # the median never moves
    inside = (test_y >= lo) & (test_y <= hi)
    small = test_draws[:, 0, 0] < 1e3
    assert covers_small[0] <= inside[small].mean() <= covers_small[1]
    assert covers_large[0] <= inside[~small].mean() <= covers_large[1]
    assert abs(inside.mean() - 0.8) < 0.04  # either is valid over all rows
    back = IntervalCalibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back == cal
    # a calibration saved before log_scales existed reads as target units
    old = {k: v for k, v in cal.to_dict().items() if k != "log_scales"}
    assert IntervalCalibration.from_dict(old).log_scales == (0.0,)


def test_only_a_value_head_alone_is_calibrated_on_its_log_scale() -> None:
    from rlm.numbers.scaling import TargetScaler
    from rlm.predictor import Predictor

    p = Predictor()
    assert p.logged(["a", "b"]) == [False, False]  # the digit decoder: no scaler
    p.scaler = TargetScaler(
        names=("a", "b"), log=(True, False), offset=(0.0, 0.0), mean=(0.0, 0.0),
        std=(1.0, 1.0), ranks=(None, None),
    )  # fmt: skip
    assert p.logged(["b", "a"]) == [False, True]
    p.blend = object()  # type: ignore[assignment]  # a blend's draws have its member's spread
    assert p.logged(["a", "b"]) == [False, False]
