"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.predict.metrics import (
    interval_coverage,
    interval_width,
    kendall,
    mae,
    mape,
    r2,
    regression_metrics,
    spearman,
)

Y = [1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize(
    ("fn", "y_true", "y_pred", "expected"),
    [
        (spearman, Y, [10, 20, 30, 40], 1.0),
        (spearman, Y, [4, 3, 2, 1], -1.0),
        # ranks of pred: 1,3,2,4 -> d^2 = 0+1+1+0 = 2 -> 1 - 6*2/(4*15) = 0.8
        (spearman, Y, [1, 3, 2, 4], 0.8),
        # 6 pairs, 5 concordant, 1 discordant -> (5-1)/6
        (kendall, Y, [1, 3, 2, 4], 4 / 6),
        # tau-b with a tie in pred: C=5, D=0, pairs 6, ties_pred=1 -> 5/sqrt(6*5)
        (kendall, Y, [1, 2, 2, 4], 5 / math.sqrt(30)),
        (mae, Y, [2, 2, 2, 2], (1 + 0 + 1 + 2) / 4),
        # |1-2|/1, 0, |3-2|/3, |4-2|/4 -> mean(1, 0, 1/3, 1/2) * 100
        (mape, Y, [2, 2, 2, 2], 100 * (1 + 0 + 1 / 3 + 0.5) / 4),
        (mape, [-2.0, 4.0], [-1.0, 5.0], 100 * (0.5 + 0.25) / 2),
        (r2, Y, Y, 1.0),
        # SS_res = 1+0+1+4 = 6, SS_tot = 5 -> 1 - 6/5
        (r2, Y, [2, 2, 2, 2], -0.2),
        (r2, Y, [2.5, 2.5, 2.5, 2.5], 0.0),
    ],
)
def test_point_metrics_golden(fn, y_true, y_pred, expected):
    assert fn(y_true, y_pred) == pytest.approx(expected, abs=1e-12)
    assert fn(np.array(y_true), np.array(y_pred, dtype=float)) == pytest.approx(expected, abs=1e-12)


def test_intervals_golden():
    y, lo, hi = [1.0, 2.0, 3.0, 4.0], [0.0, 2.0, 3.5, 1.0], [1.0, 3.0, 4.0, 2.0]
    assert interval_coverage(y, lo, hi) == 0.5  # closed interval: 1 in [0,1], 2 in [2,3]
    assert interval_width(lo, hi) == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    with pytest.raises(ValueError, match="lower > upper at 1 examples"):
        interval_coverage(y, hi, [2.0, 3.0, 4.0, 0.5])


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [
        ([1.0], [1.0], "at least 2"),
        ([1.0, 2.0], [1.0], "align them"),
        ([1.0, float("nan")], [1.0, 2.0], "non-finite"),
        ([1.0, 2.0], [1.0, float("inf")], "y_pred has 1 non-finite"),
        ([[1.0, 2.0]], [[1.0, 2.0]], "1-D"),
        (["a", "b"], [1.0, 2.0], "not numeric"),
    ],
)
def test_input_validation(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        mae(y_true, y_pred)


@pytest.mark.parametrize(
    ("fn", "y_true", "y_pred", "message"),
    [
        (mape, [0.0, 1.0], [1.0, 1.0], "use MAE or shift the target"),
        (spearman, [1.0, 2.0], [3.0, 3.0], "y_pred is constant"),
        (kendall, [5.0, 5.0], [1.0, 2.0], "y_true is constant"),
        (r2, [5.0, 5.0], [1.0, 2.0], "y_true is constant"),
    ],
)
def test_undefined_metrics_raise(fn, y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        fn(y_true, y_pred)


def test_regression_metrics_keys():
    m = regression_metrics(Y, [1, 3, 2, 4])
    assert list(m) == ["spearman", "kendall", "mae", "mape", "r2"]
    assert m["spearman"] == pytest.approx(0.8)
    m = regression_metrics(Y, [1, 3, 2, 4], lower=[0, 0, 0, 0], upper=[2, 2, 2, 2])
    assert m["coverage"] == 0.5 and m["width"] == 2.0
    assert "mape" not in regression_metrics([0.0, 1.0, 2.0], [0.5, 1.0, 2.0])
    const = regression_metrics(Y, [2.0, 2.0, 2.0, 2.0])
    assert set(const) == {"mae", "mape", "r2"}
    with pytest.raises(ValueError, match="both lower and upper"):
        regression_metrics(Y, Y, lower=Y)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)), min_size=2, max_size=30))
def test_regression_metrics_never_nan(pairs):
    y, p = zip(*pairs, strict=True)
    m = regression_metrics(y, p)
    assert all(math.isfinite(v) for v in m.values())
    if "spearman" in m:
        assert -1 - 1e-9 <= m["spearman"] <= 1 + 1e-9
        assert -1 - 1e-9 <= m["kendall"] <= 1 + 1e-9
    assert m["mae"] >= 0
