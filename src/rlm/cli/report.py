"""The Markdown report of ``rlm eval --report``: the metrics table, and per target a scatter of
predicted vs true with intervals, residuals, and the calibration of the intervals (plots need
matplotlib, imported here on first use)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..io import Example
from ..predict import plots
from ..predict.summary import Predictions
from ..predict.tasks import Calibration, calibrated_quantiles
from .format import METRICS, fmt, safe_name

LEVELS = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])  # calibration plot


def write_report(
    path: Path,
    directory: Path,
    data: Path,
    scope: str,
    rows: Sequence[Example],
    names: Sequence[str],
    pred: Predictions,
    metrics: Mapping[str, Mapping[str, float]],
    calibration: Calibration | None,
    tasks: Sequence[str] | None = None,
) -> None:
    """``tasks``: each row's task, for a model calibrated per task."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# rlm evaluation: `{directory.name}`",
        "",
        f"- checkpoint: `{directory}`",
        f"- data: `{data}`, {scope}: {len(rows):,} rows",
        f"- samples per input: {pred.draws.shape[1]}, interval level: {pred.level:.0%}",
        f"- written: {time.strftime('%Y-%m-%d %H:%M:%S')}",
        "",
        "| target | " + " | ".join(h for _, h, _ in METRICS) + " |",
        "|---|" + "---:|" * len(METRICS),
    ]
    for name, m in metrics.items():
        lines.append(
            f"| {name} | " + " | ".join(fmt(m.get(k), kind) for k, _, kind in METRICS) + " |"
        )
    lines.append("")
    for k, name in enumerate(names):
        if name in metrics:
            base = f"{path.stem}_{safe_name(name)}"
            _plot_target(path.parent, base, rows, k, name, pred, metrics[name], calibration, tasks)
            lines += [
                f"## {name}",
                "",
                f"![predicted vs true, {pred.level:.0%} intervals]({base}_scatter.png)",
                "",
                f"![residuals by true value]({base}_residuals.png)",
                "",
                f"![interval calibration]({base}_calibration.png)",
                "",
            ]
    path.write_text("\n".join(lines))


def _plot_target(
    folder: Path,
    base: str,
    rows: Sequence[Example],
    k: int,
    name: str,
    pred: Predictions,
    metrics: Mapping[str, float],
    calibration: Calibration | None,
    tasks: Sequence[str] | None,
) -> None:
    """The three plots of objective ``k``, over the rows that have it."""
    have = [i for i, e in enumerate(rows) if name in e.y]
    true = np.array([rows[i].y[name] for i in have])
    title = f"{name} (Spearman {fmt(metrics.get('spearman'), 'corr')})"
    plots.scatter(
        true,
        pred.point[have, k],
        folder / f"{base}_scatter.png",
        title,
        lower=pred.lower[have, k],
        upper=pred.upper[have, k],
    )
    plots.residuals(true, pred.point[have, k], folder / f"{base}_residuals.png", name)
    empirical = []
    for lv in LEVELS:
        a = (1 - lv) / 2
        row_tasks = None if tasks is None else [tasks[i] for i in have]
        lo, hi = calibrated_quantiles(pred.draws[have], [a, 1 - a], calibration, row_tasks)[:, :, k]
        empirical.append(float(np.mean((true >= lo) & (true <= hi))))
    plots.calibration(LEVELS, empirical, folder / f"{base}_calibration.png", name)
