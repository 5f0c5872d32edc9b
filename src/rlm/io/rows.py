"""Rows: the one streaming reader of every file kind, and the one rule that takes a row's input.

``iter_rows`` streams (raw, parsed) pairs from JSON Lines (a file or stdin), CSV or Parquet with
bounded memory: ``parsed`` builds model inputs, ``raw`` is what a CSV output writes back. The
readers in ``rlm.io.readers`` (the API) and ``rlm predict`` (the CLI) both read through it, and
both take a row's input with :func:`take_input` under a :class:`Layout`, so the same row becomes
the same model input in training, evaluation and prediction. Torch-free.
"""

from __future__ import annotations

import csv
import gzip
import sys
import zlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..strict import strict_from_dict
from .files import FileKind, file_kind, open_text
from .jsonl import jsonl_objects
from .tables import csv_cells, parquet_rows, parse_cell

Row = tuple[dict[str, Any], dict[str, Any]]  # (raw, parsed)


@dataclass(frozen=True)
class Shard:
    """The ``index``-th of ``count`` disjoint parts of a file's rows: what one reader of many
    (data-parallel ranks x data-loader workers) reads. Every row is in exactly one part."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count}: need 0 <= index < count")

    def keeps(self, i: int) -> bool:
        """Whether row ``i`` (0-based, in file order) is in this part."""
        return i % self.count == self.index


WHOLE = Shard()


def iter_rows(
    path: Path | None,
    *,
    kind: FileKind | None = None,
    chunk_size: int = 1024,
    shard: Shard = WHOLE,
) -> Iterator[Row]:
    """Stream the rows of a JSONL / CSV / Parquet file (``None``: JSON Lines on stdin).

    ``kind`` overrides the kind the name announces (``read_jsonl`` reads any name as JSONL);
    ``chunk_size`` is the Parquet record batch held in memory. ``shard``: only that part of the
    rows, parsed (JSONL: every count-th row; Parquet: every count-th row group, see
    ``tables.parquet_rows``); the rest are skipped unparsed.
    """
    keep = None if shard.count == 1 else shard.keeps
    if path is None:
        for _, rec in jsonl_objects(sys.stdin, "<stdin>", keep):
            yield rec, rec
        return
    kind = kind or file_kind(path)
    try:
        if kind == "jsonl":
            with open_text(path) as f:
                for _, rec in jsonl_objects(f, str(path), keep):
                    yield rec, rec
        elif kind == "csv":
            for i, cells in csv_cells(path):
                if keep is None or keep(i):
                    yield cells, {k: parse_cell(v) for k, v in cells.items()}
        else:
            for rec in parquet_rows(path, chunk_size, (shard.index, shard.count)):
                yield rec, rec
    except (EOFError, gzip.BadGzipFile, zlib.error, csv.Error) as e:
        # a damaged or mislabelled file: the format library's own exception, said plainly
        raise ValueError(
            f"{path} cannot be read as {kind}{' (gzip)' if path.suffix == '.gz' else ''}: "
            f"{e}; the file is damaged or its name does not match its format"
        ) from None


@dataclass(frozen=True)
class Layout:
    """Where a row's input is. Nested rows (``{"x": ..., "y": {...}}``) use ``x_key`` (and keep
    only the ``x_columns`` keys of a mapping x when given); flat rows use ``x_column`` (one text
    column), ``x_columns`` (a mapping of those columns) or, by default, every column except the
    targets, ``id`` and ``split``."""

    x_key: str = "x"
    x_columns: tuple[str, ...] | None = None
    x_column: str | None = None

    def __post_init__(self) -> None:
        if self.x_columns is not None:
            # JSON stores a list; keep a tuple so layouts compare and hash
            object.__setattr__(self, "x_columns", tuple(self.x_columns))
        if self.x_columns is not None and self.x_column is not None:
            raise ValueError(
                "pass either x_columns / --x-columns (a mapping input) or x_column / --x-column "
                "(one text input)"
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Layout:
        return strict_from_dict(cls, d)

    def is_nested(self, rec: Mapping[str, Any], targets: Sequence[str]) -> bool:
        """Whether a JSONL row is nested: it holds the input under ``x_key`` and no target at
        the top level (a flat row that happens to have an "x" column still shows its targets;
        a mapping is never a flat target's value: a target named "y" reads a nested file)."""
        return self.x_key in rec and not any(
            t in rec and not isinstance(rec[t], Mapping) for t in targets
        )


def row_label(rec: Mapping[str, Any], index: int, id_column: str = "id") -> str:
    """How errors name a row: by its id when it has one, else by its position."""
    rid = rec.get(id_column)
    return f"row {rid!r}" if rid is not None else f"row {index}"


def take_input(
    rec: Mapping[str, Any], label: str, layout: Layout, *, nested: bool, skip: Collection[str]
) -> str | dict[str, Any]:
    """A row's model input under ``layout``; ``skip`` names the columns that are never input of
    a flat row (targets, id, split, prediction columns)."""
    if nested:
        x = rec.get(layout.x_key)
        if x is None:
            raise ValueError(
                f"{label} has no {layout.x_key!r} key (keys: {list(rec)}): set x_key / --x-key, "
                "or read the file as flat rows (y_key=None)"
            )
        if layout.x_columns is not None:
            if not isinstance(x, dict):
                raise ValueError(f"{label}: x_columns / --x-columns given but x is not an object")
            absent = [k for k in layout.x_columns if k not in x]
            if absent:
                raise ValueError(f"{label}: x lacks keys {absent}; it has {list(x)}")
            x = {k: x[k] for k in layout.x_columns}
    elif layout.x_column is not None:
        if layout.x_column not in rec:
            raise ValueError(f"{label} has no column {layout.x_column!r}; columns: {list(rec)}")
        x = rec[layout.x_column]
    elif layout.x_columns is not None:
        absent = [c for c in layout.x_columns if c not in rec]
        if absent:
            raise ValueError(f"{label} lacks x columns {absent}; columns: {list(rec)}")
        x = {c: rec[c] for c in layout.x_columns}
    else:
        x = {k: v for k, v in rec.items() if k not in skip}
    if not isinstance(x, str | dict):
        raise ValueError(f"{label}: the input is {type(x).__name__}; use a string or an object")
    return x
