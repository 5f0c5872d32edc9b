"""Tasks: several related problems (systems, devices, workloads) that share one model, told apart
by the value of one input key (``RegressionLM(task_key="system")``).

A shared model is judged per task, never on the pooled rows: pooled Spearman over systems whose
targets differ by orders of magnitude mostly rewards knowing each system's scale, and says
nothing about ranking the configurations of any one system, which is what a user asks of it.
So this module gives the per-task views the API needs:

* ``task_ids``: each input's task, with an actionable error when an input has none;
* ``mean_task_spearman``: the mean of the tasks' Spearman (``summary.score_by_task``), which
  selects a shared model's weights;
* ``TaskCalibration``: Mondrian split-conformal calibration (Vovk et al., 2003): one
  ``IntervalCalibration`` per task fitted on that task's held-out rows, so each task's intervals
  cover at their level (a pooled calibration would over-widen easy tasks and under-cover hard
  ones). A task with too few held-out rows, or one never seen at calibration, uses the pooled
  calibration of all rows.

Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..io.examples import groups, task_name
from .calibration import MIN_ROWS, IntervalCalibration, fit_calibration, quantile_table


def task_of(x: Any, key: str) -> str:
    """The task of one input: the string form of its ``key`` value (integral numbers as ints)."""
    if not isinstance(x, Mapping):
        raise ValueError(
            f"task_key={key!r} needs mapping inputs (a config, a table row), got "
            f"{type(x).__name__}: pass dicts, or drop task_key"
        )
    if key not in x:
        raise ValueError(
            f"input has no {key!r} field, which names its task (task_key={key!r}); keys: "
            f"{sorted(x)[:8]}: add the field to every row"
        )
    v = x[key]
    if v is None:
        raise ValueError(
            f"input has {key!r}: null, but it names the row's task: give every row one"
        )
    return task_name(v)


def task_ids(xs: Sequence[Any], key: str) -> list[str]:
    """Each input's task (see ``task_of``)."""
    return [task_of(x, key) for x in xs]


def mean_task_spearman(report: Mapping[str, Mapping[str, Mapping[str, float]]]) -> float:
    """Mean over tasks and objectives of Spearman; -inf while none is defined (a model whose
    predictions are still constant has no ranking yet)."""
    values = [m["spearman"] for per in report.values() for m in per.values() if "spearman" in m]
    return float(np.mean(values)) if values else -math.inf


@dataclass(frozen=True)
class TaskCalibration:
    """Per-task interval calibrations, and the pooled one for every other task."""

    key: str  # the input key that names the task
    pooled: IntervalCalibration
    tasks: Mapping[str, IntervalCalibration]

    @property
    def objectives(self) -> int:
        return self.pooled.objectives

    def for_task(self, task: str) -> IntervalCalibration:
        return self.tasks.get(task, self.pooled)

    def quantiles(
        self, draws: np.ndarray, taus: Sequence[float], tasks: Sequence[str]
    ) -> np.ndarray:
        """Calibrated quantiles (Q, B, K) of draws (B, S, K), each row by its task's margins."""
        if len(tasks) != draws.shape[0]:
            raise ValueError(f"{len(tasks)} task names for {draws.shape[0]} rows of draws")
        out = np.empty((len(taus), draws.shape[0], draws.shape[2]))
        for task, idx in groups(tasks).items():
            out[:, idx] = self.for_task(task).quantiles(draws[idx], taus)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "pooled": self.pooled.to_dict(),
            "tasks": {t: c.to_dict() for t, c in self.tasks.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskCalibration:
        unknown = set(d) - {"key", "pooled", "tasks"}
        if unknown:
            raise ValueError(f"unknown task calibration fields {sorted(unknown)}")
        return cls(
            key=str(d["key"]),
            pooled=IntervalCalibration.from_dict(d["pooled"]),
            tasks={task_name(t): IntervalCalibration.from_dict(c) for t, c in d["tasks"].items()},
        )


def fit_task_calibration(
    draws: np.ndarray,
    y: np.ndarray,
    tasks: Sequence[str],
    key: str,
    log: Sequence[bool] | None = None,
) -> TaskCalibration:
    """The pooled calibration, and one per task that has ``MIN_ROWS`` held-out targets of every
    objective (fewer would make its margins noise); ``log`` as ``fit_calibration``'s."""
    per: dict[str, IntervalCalibration] = {}
    for task, idx in groups(tasks).items():
        if np.all(np.isfinite(y[idx]).sum(axis=0) >= MIN_ROWS):
            per[task] = fit_calibration(draws[idx], y[idx], log=log)
    return TaskCalibration(key=key, pooled=fit_calibration(draws, y, log=log), tasks=per)


Calibration = IntervalCalibration | TaskCalibration


def calibrated_quantiles(
    draws: np.ndarray,
    taus: Sequence[float],
    calibration: Calibration | None,
    tasks: Sequence[str] | None = None,
) -> np.ndarray:
    """(Q, B, K) quantiles of the draws under either calibration (raw without one); a task
    calibration needs the rows' ``tasks``."""
    if isinstance(calibration, TaskCalibration):
        if tasks is None:
            raise ValueError("a per-task calibration needs each row's task: pass tasks=")
        return calibration.quantiles(draws, taus, tasks)
    return quantile_table(draws, taus, calibration)


def calibration_from_dict(d: Mapping[str, Any]) -> Calibration:
    """Either calibration from its saved form (a task calibration names its ``key``)."""
    return TaskCalibration.from_dict(d) if "key" in d else IntervalCalibration.from_dict(d)
