"""Strict (de)serialisation of the frozen dataclass configs every stage saves in a checkpoint.

One rule for all of them: a key the dataclass does not know is a ValueError that lists the known
ones (a typo in an option, or a checkpoint from a newer release, is never silently ignored), and
fields that are tuples in Python but lists in JSON are turned back into tuples so that a loaded
config compares equal to the one that was saved. Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def strict_from_dict(cls: type[T], d: Mapping[str, Any], *, tuples: Sequence[str] = ()) -> T:
    """Build dataclass ``cls`` from ``d``; the fields named in ``tuples`` become tuples."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {sorted(unknown)}; known: {sorted(known)}")
    d = dict(d)
    for name in tuples:
        if d.get(name) is not None:
            d[name] = tuple(d[name])
    return cls(**d)
