"""Targets as standardised floats, for the value heads (MSE, Gaussian) that regress them directly.

The digit decoder reads and writes numbers at any scale; a regression head outputs one float
per objective, so each objective is first put on a unit scale: logarithm when no training
value is negative and the positive ones span a decade or more (latencies, memory, run times
are heavy-tailed; least squares on the raw scale would be ruled by a few huge rows), then the
training mean and standard deviation. A target measured as exactly 0 in some rows gets
``log(v + c)``, c its smallest positive value (``log_offset``). Narrow-range targets
(accuracies, PSNR) stay linear, where ``exp`` of an extrapolation cannot explode. The same
rule picks the baselines' log scale in ``benchmarks/baselines.py``. Torch-free; saved with
the checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..io.examples import groups, task_name
from ..strict import strict_from_dict


def wants_log(values: np.ndarray) -> bool:
    """All positive and spanning at least a decade: fit in log space."""
    return bool(values.size and np.all(values > 0) and values.max() >= 10.0 * values.min())


def log_offset(values: np.ndarray) -> float | None:
    """How the unit scale takes the log of a target, ``log(v + c)``: c = 0 when ``wants_log``;
    c = the smallest positive value when the others are exactly 0 and the positive ones span
    a decade (a zero then reads as half the smallest measurement); None for no log.

    Why the offset: storm's latencies span six decades, but 6 of its 1,000 training rows
    measured 0, which ruled out the log; standardised on the raw scale, half the rows sat
    within 0.015 of the maximum's zero point and the MSE head could not rank them.
    """
    if wants_log(values):
        return 0.0
    positive = values[values > 0]
    if np.any(values < 0) or positive.size == 0:
        return None
    c = float(positive.min())
    return c if positive.max() >= 10.0 * c else None


def to_log(v: Any, c: Any) -> Any:
    """``log(v + c)``: a target onto the log scale of ``log_offset`` (scalars or arrays)."""
    return np.log(v + c)


def from_log(z: Any, c: Any) -> Any:
    """The inverse of ``to_log``. Below ``log(c)``, the image of 0, ``log(v + c)`` has no
    preimage: such a value maps to 0, the least the target ever was (monotone, so quantiles
    and intervals keep their order)."""
    return np.maximum(np.exp(z) - c, 0.0)


@dataclass(frozen=True)
class ScaledTargets:
    """What a value head trains on: (N, K) unit-scale targets and the (N, K) presence mask."""

    values: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class TargetScaler:
    """Per objective: ``log(value + offset)`` or the value, then (that - mean) / std."""

    names: tuple[str, ...]
    log: tuple[bool, ...]
    offset: tuple[float, ...]  # c in log(v + c); 0 for a plain log (and where log is False)
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, rows: Sequence[Mapping[str, float]], names: Sequence[str]) -> TargetScaler:
        logs, offsets, means, stds = [], [], [], []
        for name in names:
            v = np.array([r[name] for r in rows if name in r], dtype=float)
            if v.size == 0:
                raise ValueError(f"no training row has target {name!r}: drop it from targets")
            c = log_offset(v)
            z = v if c is None else to_log(v, c)
            logs.append(c is not None)
            offsets.append(c or 0.0)
            means.append(float(z.mean()))
            stds.append(float(z.std()) or 1.0)  # a constant target: unit scale, not 0
        return cls(tuple(names), tuple(logs), tuple(offsets), tuple(means), tuple(stds))

    def extend(self, rows: Sequence[Mapping[str, float]], names: Sequence[str]) -> TargetScaler:
        """This scaler with objectives ``names`` appended, fitted on ``rows``."""
        new = TargetScaler.fit(rows, names)
        return self.concat(new)

    def take(self, index: Iterable[int]) -> TargetScaler:
        """The objectives at ``index``, in that order."""
        idx = list(index)
        return TargetScaler(
            *(tuple(getattr(self, f)[i] for i in idx) for f in SCALER_FIELDS)  # type: ignore[arg-type]
        )

    def concat(self, other: TargetScaler) -> TargetScaler:
        """This scaler's objectives, then ``other``'s."""
        return TargetScaler(*(getattr(self, f) + getattr(other, f) for f in SCALER_FIELDS))

    def transform(self, rows: Sequence[Mapping[str, float]]) -> ScaledTargets:
        """Targets (N, K) on the unit scale, and a (N, K) mask of the objectives present."""
        out = np.zeros((len(rows), len(self.names)), dtype=np.float32)
        mask = np.zeros_like(out)
        for k, name in enumerate(self.names):
            for i, r in enumerate(rows):
                if name not in r:
                    continue
                if self.log[k] and (r[name] <= 0 if self.offset[k] == 0 else r[name] < 0):
                    least = "> 0" if self.offset[k] == 0 else ">= 0"
                    raise ValueError(
                        f"row {i}: target {name!r} is {r[name]}, but this model fits {name!r} "
                        f"in log space (every training value was {least}): it must be {least}"
                    )
                v = to_log(r[name], self.offset[k]) if self.log[k] else r[name]
                out[i, k] = (v - self.mean[k]) / self.std[k]
                mask[i, k] = 1.0
        return ScaledTargets(out, mask)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """Unit-scale values (..., K) back to target units (``from_log`` where logged)."""
        v = np.asarray(z, dtype=float) * np.array(self.std) + np.array(self.mean)
        log = np.array(self.log)
        return np.where(log, from_log(np.where(log, v, 0.0), np.array(self.offset)), v)

    def to_dict(self) -> dict[str, Any]:
        return {f: list(getattr(self, f)) for f in SCALER_FIELDS}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TargetScaler:
        if "offset" not in d:  # saved before log(v + c) existed: every log was plain
            d = {**d, "offset": [0.0] * len(d.get("names", ()))}
        return strict_from_dict(cls, d, tuples=SCALER_FIELDS)


SCALER_FIELDS = ("names", "log", "offset", "mean", "std")


@dataclass(frozen=True)
class TaskScaling:
    """Per task, its own ``TargetScaler``: a model shared by tasks learns every task's targets
    on one unit scale.

    Why: tasks measure different quantities (7z's time in ms, x264's PSNR in dB). Decoding
    them raw makes the model spend its capacity and its selection on each task's scale, which
    the task name alone gives away, instead of the within-task ranking a user asks for. Put on
    one scale per task (``log_offset``'s log when non-negative and spanning a decade, then
    standardised), the shared model's rows all say "how far above this task's typical value":
    at 100 rows per system, a model shared by 10 systems rose from 0.834 to 0.877 mean test
    Spearman (300 s, 2 cores).
    An objective a task never has uses the pooled statistics of all tasks. Prediction maps the
    unit-scale draws back through the row's task, so an unseen task is an error.
    """

    key: str
    scalers: Mapping[str, TargetScaler]

    @classmethod
    def fit(
        cls,
        rows: Sequence[Mapping[str, float]],
        names: Sequence[str],
        tasks: Sequence[str],
        key: str,
    ) -> TaskScaling:
        pooled = TargetScaler.fit(rows, names)
        by_task: dict[str, list[Mapping[str, float]]] = {}
        for task, r in zip(tasks, rows, strict=True):
            by_task.setdefault(task, []).append(r)
        return cls(key, {task: cls._own(own, names, pooled) for task, own in by_task.items()})

    def extend(self, rows: Sequence[Mapping[str, float]], tasks: Sequence[str]) -> TaskScaling:
        """These scales, and a scale fitted on ``rows`` for each task not known yet (a new
        system a shared model is fine-tuned on); the known tasks' scales are kept. An objective
        a new task's rows lack takes the known tasks' mean scale, as ``fit`` pools it."""
        names = next(iter(self.scalers.values())).names
        by_task: dict[str, list[Mapping[str, float]]] = {}
        for task, r in zip(tasks, rows, strict=True):
            if task not in self.scalers:
                by_task.setdefault(task, []).append(r)
        if not by_task:
            return self
        known = list(self.scalers.values())
        columns = range(len(names))
        pooled = TargetScaler(
            names,
            tuple(bool(np.mean([s.log[j] for s in known]) >= 0.5) for j in columns),
            tuple(float(np.mean([s.offset[j] for s in known])) for j in columns),
            tuple(float(np.mean([s.mean[j] for s in known])) for j in columns),
            tuple(float(np.mean([s.std[j] for s in known])) for j in columns),
        )
        fitted = {t: self._own(own, names, pooled) for t, own in by_task.items()}
        return TaskScaling(self.key, {**self.scalers, **fitted})

    @staticmethod
    def _own(
        rows: Sequence[Mapping[str, float]], names: Sequence[str], pooled: TargetScaler
    ) -> TargetScaler:
        """A task's scaler: fitted on its rows where they have the objective, else ``pooled``."""
        have = [n for n in names if any(n in r for r in rows)]
        fitted = TargetScaler.fit(rows, have)
        k = {n: i for i, n in enumerate(have)}
        pick = [(fitted, k[n]) if n in k else (pooled, j) for j, n in enumerate(names)]
        return TargetScaler(
            *(tuple(getattr(s, f)[i] for s, i in pick) for f in SCALER_FIELDS)  # type: ignore[arg-type]
        )

    def check_known(self, tasks: Iterable[str]) -> None:
        """A ValueError naming the first task not in the training data (its scale is unknown)."""
        for task in tasks:
            if task not in self.scalers:
                raise ValueError(
                    f"task {task!r} (field {self.key!r}) was not in the training data, so its "
                    f"target scale is unknown; trained tasks: {sorted(self.scalers)[:10]}"
                )

    def _scaler(self, task: str) -> TargetScaler:
        self.check_known([task])
        return self.scalers[task]

    def transform(
        self, rows: Sequence[Mapping[str, float]], tasks: Sequence[str]
    ) -> list[dict[str, float]]:
        """Each row's targets on its task's unit scale (absent objectives stay absent)."""
        out = []
        for i, (task, r) in enumerate(zip(tasks, rows, strict=True)):
            s = self._scaler(task)
            try:
                z = s.transform([r])
            except ValueError as e:  # name the real row and its task, not "row 0"
                raise ValueError(f"row {i} (task {task!r}): {e}") from e
            out.append({n: float(z.values[0, k]) for k, n in enumerate(s.names) if n in r})
        return out

    def inverse(self, z: np.ndarray, tasks: Sequence[str]) -> np.ndarray:
        """Unit-scale values (B, ..., K') back to each row's target units (K' <= K objectives)."""
        if len(tasks) != z.shape[0]:
            raise ValueError(f"{len(tasks)} task names for {z.shape[0]} rows")
        out = np.empty(z.shape, dtype=float)
        k = z.shape[-1]
        for task, idx in groups(tasks).items():
            s = self._scaler(task)
            out[idx] = s.take(range(k)).inverse(z[idx])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "scalers": {t: s.to_dict() for t, s in self.scalers.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskScaling:
        unknown = set(d) - {"key", "scalers"}
        if unknown:
            raise ValueError(f"unknown task scaling fields {sorted(unknown)}")
        # task_name: a checkpoint that spelled task 1 as "1.0" still knows it as "1"
        scalers = {task_name(t): TargetScaler.from_dict(s) for t, s in d["scalers"].items()}
        return cls(str(d["key"]), scalers)
