"""Targets as standardised floats, for the value heads (MSE, Gaussian) that regress them directly.

The digit decoder reads and writes numbers at any scale; a regression head outputs one float
per objective, so each objective is first put on a unit scale: logarithm when no training
value is negative and the positive ones span a decade or more (latencies, memory, run times
are heavy-tailed; least squares on the raw scale would be ruled by a few huge rows), then the
training mean and standard deviation. A target measured as exactly 0 in some rows gets
``log(v + c)``, c its smallest positive value (``log_offset``). Narrow-range targets
(accuracies, PSNR) stay linear, where ``exp`` of an extrapolation cannot explode. The same
rule picks the baselines' log scale in ``benchmarks/baselines.py``.

The (logged) values may then pass through their training ranks (``RankMap``) before the
mean and standard deviation (``scale``: "rank"; "auto" where the values are ``clustered``): a
target whose values sit in tight clusters with wide gaps between them (HSQLDB: 249, 262-264,
322 and 517) leaves, standardised, the differences inside a cluster at a few hundredths of the
unit, too small for least squares to rank; on ranks each step counts alike, the scale on
which Spearman's correlation measures. Torch-free; saved with the checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import reduce
from typing import Any, Literal

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


# How targets are put on a unit scale (``ModelConfig.target_scale``): "standard" (log where
# they span decades, then mean and standard deviation), "rank" (their rank scores in between),
# "auto" (ranks where the training values are ``clustered``, else standard), per objective
# and, with a task_key, per task
Scale = Literal["auto", "standard", "rank"]
SCALES = ("auto", "standard", "rank")
# at most this many (value, rank score) knots per objective: a saved scaler stays small
# whatever the training set, and 1,001 knots resolve a rank to 0.1%
RANK_KNOTS = 1001
# "auto" ranks a target whose sorted training values (on the log scale where it applies) have
# a gap wider than this fraction of their range with at least CLUSTER_SIDE of the rows (and 2
# rows) on each side. Measured at 100 rows per system (test Spearman, standard -> rank, the
# 4-member MSE head): HSQLDB 0.905 -> 0.966 and PostgreSQL 0.701 -> 0.794, whose largest gaps
# are 0.57 and 0.69 of the range (PostgreSQL's with 4 of its 100 rows above); 7z 0.952 ->
# 0.920 and x264 0.906 -> 0.887 lose on ranks (a smooth spread, whose additive structure in
# log space ranks bend); the largest gap of any other system is 0.32. A lone outlier beyond a
# gap (x264's PSNR of 100 dB) is not a cluster.
CLUSTER_GAP = 0.4
CLUSTER_SIDE = 0.02
# ... and only from this many training values: among a handful of rows a wide gap is chance
# (uniform noise: about one set of 10 values in 10 shows one), as when a shared model is
# fine-tuned on a few rows of a new task
CLUSTER_MIN_ROWS = 30


def clustered(u: np.ndarray) -> bool:
    """Whether values ``u`` (N,) fall in clusters: a gap between consecutive sorted values
    wider than ``CLUSTER_GAP`` of their range, with ``CLUSTER_SIDE`` of them, and at least two,
    on each side; never below ``CLUSTER_MIN_ROWS`` values."""
    srt = np.sort(u)
    if srt.size < CLUSTER_MIN_ROWS:
        return False
    span = srt[-1] - srt[0]
    k = max(2, int(np.ceil(CLUSTER_SIDE * srt.size)))
    inner = np.diff(srt)[k - 1 : srt.size - k]  # gap i has i + 1 values below, N - i - 1 above
    return bool(span > 0 and inner.size and inner.max() > CLUSTER_GAP * span)


def check_scale(scale: str) -> None:
    """A ValueError naming ``scale`` unless it is one of ``SCALES``."""
    if scale not in SCALES:
        raise ValueError(f"target_scale={scale!r}: choose one of {list(SCALES)}")


@dataclass(frozen=True)
class RankMap:
    """One objective's training values onto rank scores, piecewise linear, and back.

    Knots: the distinct training values, each at its mid-rank quantile p (tied values share
    one knot) as the score sqrt(12) (p - 1/2) (a uniform of unit variance), thinned evenly to
    ``RANK_KNOTS``. Between knots the map is linear; beyond the ends it continues along its
    mean slope over the whole range (a slope from the end knots alone may be nearly flat or
    steep by the chance of a few rows beyond a gap), so it is strictly increasing over the
    whole line: a value outside the training range still gets a score, and every score a
    head writes maps back to a value. (Normal scores instead of uniform ones measured worse at 100
    rows: HSQLDB 0.942 against 0.966, 7z 0.893 against 0.920, x264 0.883 against 0.887.)
    """

    values: tuple[float, ...]  # strictly increasing
    scores: tuple[float, ...]  # strictly increasing

    @classmethod
    def fit(cls, u: np.ndarray) -> RankMap | None:
        """The map of ``u`` (N,); None below two distinct values (nothing to spread)."""
        distinct, counts = np.unique(u, return_counts=True)
        if distinct.size < 2:
            return None
        below = np.cumsum(counts) - counts
        p = (below + counts / 2.0) / u.size  # (M,) mid-rank quantile, strictly inside (0, 1)
        keep = np.unique(np.linspace(0, distinct.size - 1, RANK_KNOTS).round().astype(int))
        scores = np.sqrt(12.0) * (p[keep] - 0.5)
        return cls(tuple(float(v) for v in distinct[keep]), tuple(float(z) for z in scores))

    def forward(self, u: np.ndarray) -> np.ndarray:
        """Values (any shape) onto rank scores."""
        return _extended(np.asarray(u, dtype=float), self.values, self.scores)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """Rank scores (any shape) back to values."""
        return _extended(np.asarray(z, dtype=float), self.scores, self.values)


def _extended(x: np.ndarray, xp: Sequence[float], fp: Sequence[float]) -> np.ndarray:
    """``np.interp`` through the increasing knots (xp, fp), continued past both ends along
    the mean slope between the end knots."""
    xs, fs = np.asarray(xp), np.asarray(fp)
    slope = (fs[-1] - fs[0]) / (xs[-1] - xs[0])
    out = np.interp(x, xs, fs)
    out = np.where(x < xs[0], fs[0] + (x - xs[0]) * slope, out)
    return np.where(x > xs[-1], fs[-1] + (x - xs[-1]) * slope, out)


@dataclass(frozen=True)
class ScaledTargets:
    """What a value head trains on: (N, K) unit-scale targets and the (N, K) presence mask."""

    values: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class TargetScaler:
    """Per objective: ``log(value + offset)`` or the value, then (``ranks``) its rank score,
    then (that - mean) / std."""

    names: tuple[str, ...]
    log: tuple[bool, ...]
    offset: tuple[float, ...]  # c in log(v + c); 0 for a plain log (and where log is False)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    ranks: tuple[RankMap | None, ...]  # None: that objective is not ranked

    @classmethod
    def fit(
        cls, rows: Sequence[Mapping[str, float]], names: Sequence[str], scale: Scale = "standard"
    ) -> TargetScaler:
        logs, offsets, means, stds, maps = [], [], [], [], []
        for name in names:
            v = np.array([r[name] for r in rows if name in r], dtype=float)
            if v.size == 0:
                raise ValueError(f"no training row has target {name!r}: drop it from targets")
            c = log_offset(v)
            z = v if c is None else to_log(v, c)
            ranked = scale == "rank" or (scale == "auto" and clustered(z))
            q = RankMap.fit(z) if ranked else None
            z = z if q is None else q.forward(z)
            logs.append(c is not None)
            offsets.append(c or 0.0)
            means.append(float(z.mean()))
            stds.append(float(z.std()) or 1.0)  # a constant target: unit scale, not 0
            maps.append(q)
        return cls(*(tuple(f) for f in (names, logs, offsets, means, stds, maps)))  # type: ignore[arg-type]

    def extend(
        self, rows: Sequence[Mapping[str, float]], names: Sequence[str], scale: Scale = "standard"
    ) -> TargetScaler:
        """This scaler with objectives ``names`` appended, fitted on ``rows``."""
        new = TargetScaler.fit(rows, names, scale)
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
            present = [i for i, r in enumerate(rows) if name in r]
            v = np.array([rows[i][name] for i in present], dtype=float)
            for i, value in zip(present, v, strict=True):
                self._check_loggable(k, i, value)
            u = to_log(v, self.offset[k]) if self.log[k] else v
            q = self.ranks[k]
            u = u if q is None else q.forward(u)
            out[present, k] = (u - self.mean[k]) / self.std[k]
            mask[present, k] = 1.0
        return ScaledTargets(out, mask)

    def _check_loggable(self, k: int, i: int, value: float) -> None:
        """A ValueError for row ``i`` when objective ``k`` is fitted in log space and
        ``value`` has no logarithm there."""
        name = self.names[k]
        if self.log[k] and (value <= 0 if self.offset[k] == 0 else value < 0):
            least = "> 0" if self.offset[k] == 0 else ">= 0"
            raise ValueError(
                f"row {i}: target {name!r} is {value}, but this model fits {name!r} "
                f"in log space (every training value was {least}): it must be {least}"
            )

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """Unit-scale values (..., K) back to target units (``from_log`` where logged)."""
        v = np.asarray(z, dtype=float) * np.array(self.std) + np.array(self.mean)
        for k, q in enumerate(self.ranks):
            if q is not None:
                v[..., k] = q.inverse(v[..., k])
        log = np.array(self.log)
        return np.where(log, from_log(np.where(log, v, 0.0), np.array(self.offset)), v)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {f: list(getattr(self, f)) for f in SCALER_FIELDS}
        d["ranks"] = [None if q is None else asdict(q) for q in self.ranks]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TargetScaler:
        k = len(d.get("names", ()))
        if "offset" not in d:  # saved before log(v + c) existed: every log was plain
            d = {**d, "offset": [0.0] * k}
        if "ranks" not in d:  # saved before rank scores existed: none
            d = {**d, "ranks": [None] * k}
        maps = d["ranks"]
        if not isinstance(maps, list) or len(maps) != k:
            raise ValueError(f"scaler ranks: need a list of {k} entries (null or knots)")
        d = {**d, "ranks": [None if q is None else rank_map(q) for q in maps]}
        return strict_from_dict(cls, d, tuples=SCALER_FIELDS)


def rank_map(d: Any) -> RankMap:
    """A saved ``RankMap``; knots that are not two strictly increasing lists of finite numbers
    of one length are a ValueError (the map would not be invertible)."""
    damaged = "the checkpoint is damaged"
    if not isinstance(d, Mapping) or set(d) != {"values", "scores"}:
        raise ValueError(f"scaler ranks: need {{'values': [...], 'scores': [...]}}; {damaged}")
    try:
        xs, fs = (np.asarray(d[k], dtype=float) for k in ("values", "scores"))
    except (TypeError, ValueError) as e:
        raise ValueError(f"scaler ranks: knots must be numbers ({e}); {damaged}") from e
    if (
        xs.ndim != 1
        or xs.size < 2
        or xs.shape != fs.shape
        or not (np.isfinite(xs).all() and np.isfinite(fs).all())
        or np.any(np.diff(xs) <= 0)
        or np.any(np.diff(fs) <= 0)
    ):
        raise ValueError(
            "scaler ranks: values and scores must be two strictly increasing lists of finite "
            f"numbers of the same length >= 2 (got {xs.size} values, {fs.size} scores); {damaged}"
        )
    return RankMap(tuple(float(v) for v in xs), tuple(float(z) for z in fs))


SCALER_FIELDS = ("names", "log", "offset", "mean", "std", "ranks")


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
    scale: Scale = "standard"  # each task's scale, decided on its own rows (TargetScaler.fit)

    @classmethod
    def fit(
        cls,
        rows: Sequence[Mapping[str, float]],
        names: Sequence[str],
        tasks: Sequence[str],
        key: str,
        scale: Scale = "standard",
    ) -> TaskScaling:
        """Each task's scaler (``TargetScaler.fit`` of its rows under ``scale``). The pooled
        scale an objective falls back to where a task lacks it is always standard: ranks of
        several tasks' values together would rank units (ms against dB), not configurations."""
        pooled = TargetScaler.fit(rows, names, "standard")
        by_task: dict[str, list[Mapping[str, float]]] = {}
        for task, r in zip(tasks, rows, strict=True):
            by_task.setdefault(task, []).append(r)
        own = {task: cls._own(r, names, pooled, scale) for task, r in by_task.items()}
        return cls(key, own, scale)

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
        pooled = reduce(
            TargetScaler.concat, (self._known_scale(known, j) for j in range(len(names)))
        )
        fitted = {t: self._own(own, names, pooled, self.scale) for t, own in by_task.items()}
        return TaskScaling(self.key, {**self.scalers, **fitted}, self.scale)

    @staticmethod
    def _known_scale(known: Sequence[TargetScaler], j: int) -> TargetScaler:
        """Objective ``j``'s scale for a new task without rows of it: the known tasks' mean
        log, offset, mean and std over those on the standard scale (a ranked task's mean and
        std are of rank scores, not of values), else the first known task's own scale."""
        plain = [s for s in known if s.ranks[j] is None]
        if not plain:
            return known[0].take([j])
        return TargetScaler(
            (known[0].names[j],),
            (bool(np.mean([s.log[j] for s in plain]) >= 0.5),),
            (float(np.mean([s.offset[j] for s in plain])),),
            (float(np.mean([s.mean[j] for s in plain])),),
            (float(np.mean([s.std[j] for s in plain])),),
            (None,),
        )

    @staticmethod
    def _own(
        rows: Sequence[Mapping[str, float]],
        names: Sequence[str],
        pooled: TargetScaler,
        scale: Scale,
    ) -> TargetScaler:
        """A task's scaler: fitted on its rows where they have the objective, else ``pooled``."""
        have = [n for n in names if any(n in r for r in rows)]
        fitted = TargetScaler.fit(rows, have, scale)
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
        scalers = {t: s.to_dict() for t, s in self.scalers.items()}
        return {"key": self.key, "scalers": scalers, "scale": self.scale}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskScaling:
        unknown = set(d) - {"key", "scalers", "scale"}
        if unknown:
            raise ValueError(f"unknown task scaling fields {sorted(unknown)}")
        # task_name: a checkpoint that spelled task 1 as "1.0" still knows it as "1"
        scalers = {task_name(t): TargetScaler.from_dict(s) for t, s in d["scalers"].items()}
        scale = str(d.get("scale", "standard"))  # saved before rank scores: standard
        check_scale(scale)
        return cls(str(d["key"]), scalers, scale)  # type: ignore[arg-type]
