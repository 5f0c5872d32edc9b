"""``Example``: one input and its named float targets, the unit every stage consumes.

An RLM example is one input ``x`` (a string, or a JSON-like mapping that ``rlm.inputs.text``
turns into a string) and one or more named float targets ``y``. Every check on the numbers
happens here, once: a target that is NaN, infinite, a bool or a string is an error that names
the row, never something that is quietly dropped. A target that is *absent* is fine: it is
simply missing from ``y`` and the model masks it. Torch-free.
"""

from __future__ import annotations

import math
import numbers
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _target_value(v: Any, where: str, name: str) -> float | None:
    """Check one target value: None (missing) passes, finite real numbers become float."""
    if v is None:
        return None
    # bool is an int subclass; a True target is almost always a parsing accident, so refuse it.
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(
            f"{where}: target {name!r} is {v!r} ({type(v).__name__}), not a number: "
            "fix the value, or use null / an empty cell for a missing target"
        )
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(
            f"{where}: target {name!r} is {f}: drop the row, fix the value, "
            "or use null / an empty cell for a missing target"
        )
    return f


@dataclass(frozen=True)
class Example:
    """One input and its named float targets.

    Build examples with :meth:`make`, which accepts a scalar ``y`` or a mapping with ``None`` for
    missing targets. The plain constructor is strict: ``y`` must already map names to finite
    numbers (it is copied into a fresh ``dict[str, float]``), and an empty ``y`` is allowed only
    because unlabeled prediction inputs need it; :meth:`make` enforces the labeled case.
    """

    x: str | Mapping[str, Any]
    y: Mapping[str, float] = field(default_factory=dict)
    id: str | None = None
    split: str | None = None

    def __post_init__(self) -> None:
        where = f"example {self.id!r}" if self.id is not None else "example"
        if not isinstance(self.x, str | Mapping):
            raise ValueError(
                f"{where}: x is {type(self.x).__name__}; use a string or a mapping of named inputs"
            )
        if isinstance(self.x, Mapping) and not all(isinstance(k, str) for k in self.x):
            raise ValueError(f"{where}: x has non-string keys; convert its keys to str")
        if not isinstance(self.y, Mapping):
            raise ValueError(
                f"{where}: y is {type(self.y).__name__}; use Example.make for a scalar target"
            )
        y: dict[str, float] = {}
        for name, v in self.y.items():
            if not isinstance(name, str):
                raise ValueError(f"{where}: target name {name!r} is not a string")
            f = _target_value(v, where, name)
            if f is None:
                raise ValueError(
                    f"{where}: target {name!r} is None; use Example.make, which drops missing targets"
                )
            y[name] = f
        # Copy so that later changes to the caller's dict cannot change a frozen example.
        object.__setattr__(self, "y", y)
        for attr in ("id", "split"):
            v = getattr(self, attr)
            if v is not None and not isinstance(v, str):
                raise ValueError(f"{where}: {attr}={v!r} must be a string or None")

    @classmethod
    def make(
        cls,
        x: str | Mapping[str, Any],
        y: float | Mapping[str, float | None] | None,
        *,
        id: str | None = None,
        split: str | None = None,
        target_name: str = "y",
        allow_unlabeled: bool = False,
        index: int | None = None,
    ) -> Example:
        """Normalise ``y`` and build an example.

        ``y`` may be a number (stored as ``{target_name: y}``), a mapping name -> number | None
        (None = missing target, left out) or None (no targets). A row left with no targets is an
        error unless ``allow_unlabeled`` (prediction inputs). ``index`` only labels error messages
        when the row has no id.
        """
        where = (
            f"row {id!r}" if id is not None else (f"row {index}" if index is not None else "row")
        )
        if y is None:
            items: dict[str, Any] = {}
        elif isinstance(y, Mapping):
            items = dict(y)
        else:
            items = {target_name: y}
        clean = {}
        for name, v in items.items():
            f = _target_value(v, where, str(name))
            if f is not None:
                clean[name] = f
        if not clean and not allow_unlabeled:
            raise ValueError(
                f"{where} has no targets (y={y!r}): fix the target names, drop the row, "
                "or pass allow_unlabeled=True for prediction inputs"
            )
        if id is not None and not isinstance(id, str):
            id = str(id)  # ids are labels; an integer id from a CSV column is still that label
        return cls(x=x, y=clean, id=id, split=split)

    def to_record(self) -> dict[str, Any]:
        """The nested on-disk layout, as ``write_jsonl`` writes it."""
        return {"id": self.id, "x": self.x, "y": dict(self.y), "split": self.split}


def subset(examples: Sequence[Example], n: int, seed: int) -> list[Example]:
    """A seeded random sample of ``n`` examples, kept in their original order.

    ``random.Random`` is used (not numpy) because its ``sample`` is stable across versions.
    """
    if not 0 <= n <= len(examples):
        raise ValueError(f"n={n}: choose 0 <= n <= {len(examples)} (the number of examples)")
    keep = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in keep]


def target_names(examples: Iterable[Example]) -> list[str]:
    """Union of the target names, in first-seen order."""
    names: dict[str, None] = {}
    for ex in examples:
        names.update(dict.fromkeys(ex.y))
    return list(names)


def as_examples(
    X: Sequence[Any], y: Any = None, names: Sequence[str] | None = None
) -> list[Example]:
    """Accept ``Example`` lists, or inputs plus targets as (n,), (n, K) arrays or dicts."""
    if y is None:
        if not all(isinstance(e, Example) for e in X):
            raise ValueError("pass targets y, or a list of rlm.Example with targets")
        return list(X)
    if len(X) != len(y):
        raise ValueError(f"{len(X)} inputs but {len(y)} targets: they must match one to one")
    rows: list[Example] = []
    for i, (x, t) in enumerate(zip(X, y, strict=True)):
        if isinstance(t, Mapping):
            rows.append(Example.make(x, t, id=str(i)))
            continue
        values = np.atleast_1d(np.asarray(t, dtype=float))
        keys = (
            list(names)
            if names
            else (["y"] if len(values) == 1 else [f"y{j}" for j in range(len(values))])
        )
        if len(keys) != len(values):
            raise ValueError(f"row {i}: {len(values)} target values for targets {keys}")
        rows.append(Example.make(x, dict(zip(keys, values.tolist(), strict=True)), id=str(i)))
    return rows


_INTEGRAL = re.compile(r"(-?\d+)\.0*")


def task_name(value: Any) -> str:
    """The name of the task an input's ``task_key`` value names. Integral numbers, and the
    text of one (``"1.0"``, as an older checkpoint or a CSV column may spell it), are written
    as ints, so 1, 1.0 and "1.0" name one task; everything else is its ``str``."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        f = float(value)
        return str(int(f)) if f.is_integer() else str(value)
    text = str(value)
    m = _INTEGRAL.fullmatch(text)
    return m.group(1) if m else text


def groups(keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Row indices per key (e.g. each row's task), keys in first-seen order."""
    out: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        out.setdefault(k, []).append(i)
    return {k: np.array(idx) for k, idx in out.items()}


def inputs_of(X: Sequence[Any] | Any) -> list[Any]:
    """The inputs of ``X``: one input or a sequence of inputs or Examples -> a list of inputs."""
    if isinstance(X, (str, Mapping, Example)):
        X = [X]
    return [e.x if isinstance(e, Example) else e for e in X]
