"""How the commands print: numbers, metric tables and key-value tables (rich)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from rich.table import Table


def fmt(v: float | None, kind: str = "g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if kind == "int":
        return f"{int(v):,}"
    if kind == "corr":  # correlations and R² (which can be hugely negative for a bad model)
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.3g}"
    if kind == "pct":
        return f"{100 * v:.1f}%"
    return f"{v:.4g}"


METRICS: tuple[tuple[str, str, str], ...] = (
    # key, column header, format
    ("n", "n", "int"),
    ("spearman", "Spearman", "corr"),
    ("kendall", "Kendall", "corr"),
    ("mae", "MAE", "g"),
    ("mape", "MAPE %", "g"),
    ("r2", "R²", "corr"),
    ("coverage", "coverage", "pct"),
    ("width", "width", "g"),
)


def metrics_table(report: Mapping[str, Mapping[str, float]], title: str, level: float) -> Table:
    """One row per metric, one column per target: stays narrow for the usual 1-3 targets."""
    table = Table(title=title, title_justify="left", min_width=min(60, 20 + 16 * len(report)))
    table.add_column("metric")
    for name in report:
        table.add_column(name, justify="right")
    for key, header, kind in METRICS:
        label = f"{header} @{level:.0%}" if key in ("coverage", "width") else header
        table.add_row(label, *(fmt(m.get(key), kind) for m in report.values()))
    return table


def task_table(
    per_task: Mapping[str, Mapping[str, Mapping[str, float]]], title: str, level: float
) -> Table:
    """A shared model's scores: one row per task, n / Spearman / MAPE / coverage per target."""
    names = list(dict.fromkeys(n for per in per_task.values() for n in per))
    table = Table(title=title, title_justify="left")
    table.add_column("task")
    cols = (("n", "int"), ("spearman", "corr"), ("mape", "g"), ("coverage", "pct"))
    for name in names:
        for key, _ in cols:
            label = f"cov @{level:.0%}" if key == "coverage" else key
            table.add_column(f"{name} {label}" if len(names) > 1 else label, justify="right")
    for task, per in per_task.items():
        cells = [fmt(per.get(n, {}).get(key), kind) for n in names for key, kind in cols]
        table.add_row(task, *cells)
    return table


def kv_table(title: str, items: Mapping[str, Any]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for k, v in items.items():
        table.add_row(k, v if isinstance(v, str) else json.dumps(v))
    return table


def show(x: Any, width: int = 60) -> str:
    """An input as one line of at most ``width`` characters."""
    s = x if isinstance(x, str) else json.dumps(x, separators=(",", ":"), ensure_ascii=False)
    return s if len(s) <= width else s[: width - 1] + "…"


def safe_name(name: str) -> str:
    """A target name usable in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
