"""Diagnostic plots: files are written, axes follow the data, bad inputs are clear errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from rlm.predict import plots

PNG = b"\x89PNG\r\n\x1a\n"


def test_scatter_with_intervals_writes_a_png(tmp_path: Path) -> None:
    t = np.linspace(80, 95, 50)
    p = plots.scatter(t, t + 0.5, tmp_path / "sub" / "s.png", "acc", lower=t - 1, upper=t + 2)
    assert p == tmp_path / "sub" / "s.png" and p.read_bytes()[:8] == PNG


def test_log_axes_only_for_positive_data_over_two_decades() -> None:
    assert plots.spans_decades(np.array([0.01, 5.0]))
    assert not plots.spans_decades(np.array([1.0, 99.0]))
    assert not plots.spans_decades(np.array([-1.0, 1e6]))  # non-positive: linear
    assert not plots.spans_decades(np.array([0.0, 1e6]))


def test_residuals_and_calibration(tmp_path: Path) -> None:
    t = np.geomspace(1e-3, 10, 40)  # log x axis
    assert plots.residuals(t, t * 1.1, tmp_path / "r.png", "lat").read_bytes()[:8] == PNG
    levels = [0.5, 0.8, 0.9]
    assert plots.calibration(levels, [0.4, 0.7, 0.92], tmp_path / "c.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: plots.scatter([1, 2], [1], p, "t"), "lengths differ"),
        (lambda p: plots.scatter([1, 2], [1, float("nan")], p, "t"), "non-finite"),
        (lambda p: plots.scatter([1, 2], [1, 2], p, "t", lower=[0, 0]), "both lower and upper"),
        (
            lambda p: plots.scatter([1, 2], [1, 2], p, "t", lower=[3, 0], upper=[1, 3]),
            "lower > upper",
        ),
        (lambda p: plots.residuals([], [], p, "t"), "empty"),
        (lambda p: plots.calibration([80], [0.7], p), "fractions in [0, 1]"),
    ],
)
def test_bad_inputs_are_value_errors(tmp_path: Path, call, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        call(tmp_path / "x.png")


def test_missing_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib...` fail
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ValueError, match=r"pip install rlm\[plots\]"):
        plots.scatter([1, 2], [1, 2], tmp_path / "s.png", "t")
