"""Readers: files of rows -> ``list[Example]``, every format through one loop.

Two on-disk layouts are understood:

* **nested** (the shared benchmark format): ``{"id": ..., "x": ..., "y": {name: float}, "split": ...}``
* **flat** (typical CSV / Parquet / JSONL exports): one column per input and per target; the
  caller names the target columns and everything else (minus ``id`` / ``split``) is the input.

Rows come from ``rows.iter_rows`` and inputs from ``rows.take_input``, the same two functions
``rlm predict`` streams with, so a file is read the same way by the API and the CLI. Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from .examples import Example, target_names
from .files import FileKind, file_kind
from .rows import WHOLE, Layout, Shard, iter_rows, row_label, take_input

Builder = Callable[[Mapping[str, Any], int], Example]


def _flat_example(
    rec: Mapping[str, Any], index: int, *, targets: Sequence[str], layout: Layout, ask: _Reading
) -> Example:
    """One row of the flat layout: named target columns, the rest (or ``x_columns``) is x."""
    label = row_label(rec, index, ask.id_column)
    skip = {*targets, ask.id_column, ask.split_column}
    x = take_input(rec, label, layout, nested=False, skip=skip)
    rid, rsplit = rec.get(ask.id_column), rec.get(ask.split_column)
    return Example.make(
        x,
        {t: rec.get(t) for t in targets},  # an absent column is a missing target, like null
        id=None if rid is None else str(rid),
        split=None if rsplit is None else str(rsplit),
        allow_unlabeled=ask.allow_unlabeled,
        index=index,
    )


def _nested_example(
    rec: Mapping[str, Any], index: int, *, layout: Layout, y_key: str, ask: _Reading
) -> Example:
    """One row of the nested layout ``{"id", "x", "y": {...}, "split"}``."""
    x = take_input(rec, row_label(rec, index), layout, nested=True, skip=())
    y = rec.get(y_key)
    if y is not None and not isinstance(y, dict):
        y = {y_key: y}  # a scalar target is named after its key
    if y is not None and ask.targets is not None:
        y = {t: y.get(t) for t in ask.targets}
    rid, rsplit = rec.get("id"), rec.get("split")
    return Example.make(
        x,
        y,
        id=None if rid is None else str(rid),
        split=None if rsplit is None else str(rsplit),
        target_name=y_key,
        allow_unlabeled=ask.allow_unlabeled,
        index=index,
    )


def _check_options(
    targets: Sequence[str] | None,
    x_columns: Sequence[str] | None,
    x_column: str | None,
    limit: int | None,
    *,
    flat: bool,
    allow_unlabeled: bool,
) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit={limit!r}: use a positive integer, or None for all rows")
    if isinstance(targets, str):
        raise ValueError(f"targets={targets!r} is a string; pass a list: targets=[{targets!r}]")
    if x_columns is not None and x_column is not None:
        raise ValueError("pass either x_columns (a mapping input) or x_column (one text input)")
    if not flat:
        if x_column is not None:
            raise ValueError("x_column is for the flat layout (y_key=None); nested files use x_key")
        return
    if targets is None or (not targets and not allow_unlabeled):
        raise ValueError(
            "flat files need targets=[...] naming the target columns "
            "(or allow_unlabeled=True with targets=[] for prediction inputs)"
        )
    overlap = sorted(set(x_columns or ()) & set(targets))
    if overlap:
        raise ValueError(f"columns {overlap} are both inputs and targets: remove them from one")


@dataclass(frozen=True)
class _Reading:
    """What every reader is asked for: which targets, which rows, how rows are labeled."""

    targets: Sequence[str] | None
    split: str | None
    limit: int | None
    allow_unlabeled: bool
    id_column: str = "id"
    split_column: str = "split"


def _examples(
    path: Path, kind: FileKind, build: Builder, ask: _Reading, shard: Shard = WHOLE
) -> Iterator[Example]:
    """The loop every reader shares, one example at a time (``shard``: that part of the rows).

    The split filter runs *before* an example is built, so a bad row in another split does not
    block this one; a split filter on a row without a split is an error. Errors gain the path.
    """
    n = 0
    try:
        for index, (_, rec) in enumerate(iter_rows(path, kind=kind, shard=shard)):
            if ask.split is not None:
                rsplit = rec.get(ask.split_column)
                if rsplit is None:
                    raise ValueError(
                        f"split={ask.split!r} asked for, but "
                        f"{row_label(rec, index, ask.id_column)} has no {ask.split_column!r} "
                        "field: pass split=None or add a split column"
                    )
                if str(rsplit) != ask.split:
                    continue
            yield build(rec, index)
            n += 1
            if ask.limit is not None and n >= ask.limit:
                break
    except ValueError as e:
        if str(e).startswith(str(path)):
            raise
        raise ValueError(f"{path}: {e}") from e


def _read(path: Path, kind: FileKind, build: Builder, ask: _Reading) -> list[Example]:
    """Every example of the file, checked: a requested target no row has is an error."""
    out = list(_examples(path, kind, build, ask))
    # A requested target that no row has is almost surely a typo: say so instead of masking it.
    if ask.targets is not None and not ask.allow_unlabeled and out:
        seen = set(target_names(out))
        missing = [t for t in ask.targets if t not in seen]
        if missing:
            raise ValueError(
                f"{path}: targets {missing} occur in no row; the rows have {sorted(seen)}: "
                "fix the target names"
            )
    return out


def read_jsonl(
    path: str | Path,
    *,
    x_key: str = "x",
    y_key: str | None = "y",
    targets: Sequence[str] | None = None,
    x_keys: Sequence[str] | None = None,
    x_column: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    allow_unlabeled: bool = False,
) -> list[Example]:
    """Read plain or ``.gz`` JSON Lines.

    Nested layout (``y_key`` set): x is ``rec[x_key]`` (``x_keys`` keeps only those keys of a
    mapping x), y is ``rec[y_key]`` (a mapping, or one number named ``y_key``); ``targets=None``
    keeps every target present. Flat layout (``y_key=None``): ``targets`` names the target keys,
    x is the mapping of ``x_keys`` or of all remaining keys except ``id`` / ``split``, or the one
    value ``rec[x_column]`` for text inputs. ``split`` keeps only rows with that split;
    ``limit`` stops after that many kept rows. A row without targets is an error unless
    ``allow_unlabeled`` (prediction inputs).
    """
    build, ask = _reading(
        targets, Layout(x_key, x_keys, x_column), y_key, split, limit, allow_unlabeled
    )
    return _read(Path(path), "jsonl", build, ask)


def _reading(
    targets: Sequence[str] | None,
    layout: Layout,
    y_key: str | None,
    split: str | None,
    limit: int | None,
    allow_unlabeled: bool,
    id_column: str = "id",
    split_column: str = "split",
) -> tuple[Builder, _Reading]:
    """The options checked, and how each row becomes an Example (``y_key=None``: flat rows)."""
    flat = y_key is None
    _check_options(
        targets, layout.x_columns, layout.x_column, limit, flat=flat,
        allow_unlabeled=allow_unlabeled,
    )  # fmt: skip
    ask = _Reading(targets, split, limit, allow_unlabeled, id_column, split_column)
    if y_key is None:
        return partial(_flat_example, targets=targets or (), layout=layout, ask=ask), ask
    return partial(_nested_example, layout=layout, y_key=y_key, ask=ask), ask


def _flat_reader(kind: FileKind, doc: str) -> Callable[..., list[Example]]:
    """``read_csv`` and ``read_parquet``: one reader of the flat layout, two file kinds."""

    def read(
        path: str | Path,
        *,
        targets: Sequence[str],
        x_columns: Sequence[str] | None = None,
        x_column: str | None = None,
        id_column: str = "id",
        split_column: str = "split",
        split: str | None = None,
        limit: int | None = None,
        allow_unlabeled: bool = False,
    ) -> list[Example]:
        layout = Layout(x_columns=x_columns, x_column=x_column)
        build, ask = _reading(
            targets, layout, None, split, limit, allow_unlabeled, id_column, split_column
        )
        return _read(Path(path), kind, build, ask)

    read.__name__ = read.__qualname__ = f"read_{kind}"
    read.__doc__ = doc
    return read


read_csv = _flat_reader(
    "csv",
    """Read a CSV (or ``.csv.gz``) with a header row, in the flat layout (see ``read_jsonl``).

    Cells are parsed by :func:`rlm.io.tables.parse_cell`; an empty target cell is a missing
    target. ``id_column`` / ``split_column`` name the id and split columns.
    """,
)
read_parquet = _flat_reader(
    "parquet",
    """Read a Parquet file in the flat layout (see ``read_jsonl``); nulls are missing values.

    ``id_column`` / ``split_column`` name the id and split columns.
    """,
)


def read_examples(
    path: str | Path,
    *,
    targets: Sequence[str] | None = None,
    x_key: str = "x",
    y_key: str | None = "y",
    x_columns: Sequence[str] | None = None,
    x_column: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    allow_unlabeled: bool = False,
) -> list[Example]:
    """Read any supported file, choosing the reader by suffix.

    JSON Lines (``.jsonl``, ``.json``, ``.ndjson``, optionally ``.gz``) may be nested or flat
    (``y_key=None``); CSV and Parquet are always flat and need ``targets``. ``x_columns`` is
    passed to the JSONL reader as ``x_keys``. ``x_key`` / ``y_key`` apply to JSONL only.
    """
    kind = file_kind(path)
    if kind == "jsonl":
        return read_jsonl(
            path,
            x_key=x_key,
            y_key=y_key,
            targets=targets,
            x_keys=x_columns,
            x_column=x_column,
            split=split,
            limit=limit,
            allow_unlabeled=allow_unlabeled,
        )
    reader = read_csv if kind == "csv" else read_parquet
    return reader(
        path,
        targets=targets,  # None is reported by the reader
        x_columns=x_columns,
        x_column=x_column,
        split=split,
        limit=limit,
        allow_unlabeled=allow_unlabeled,
    )


def iter_examples(
    path: str | Path,
    *,
    targets: Sequence[str] | None = None,
    layout: Layout | None = None,
    y_key: str | None = "y",
    split: str | None = None,
    shard: Shard = WHOLE,
) -> Iterator[Example]:
    """The examples of any supported file one at a time, as ``read_examples`` reads them
    (``layout``: where inputs are; CSV and Parquet are flat), never all in memory; ``shard``:
    only that part of the rows (``rlm.io.stream`` gives each reader its own)."""
    kind = file_kind(path)
    flat_y = None if kind != "jsonl" else y_key
    build, ask = _reading(targets, layout or Layout(), flat_y, split, None, False)
    return _examples(Path(path), kind, build, ask, shard)
