"""Tables: CSV cells (text in, typed values out, and back) and Parquet row batches. Torch-free.

CSV is all text, so a cell is parsed by one rule (:func:`parse_cell`) and written back by its
inverse (:func:`csv_cell`); rows are streamed as raw cell text so that ``rlm predict`` can write
an input row back exactly as it was read ("1.50" stays "1.50").
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .files import open_text, pyarrow_parquet

_DIGITS = re.compile(r"[+-]?[0-9]+")
_INT = re.compile(r"[+-]?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def parse_cell(s: str) -> int | float | str | None:
    """CSV cell -> value: '' -> None, decimal literals -> int / float, anything else stays str.

    Only plain decimal literals count as numbers: 'nan', 'inf' and 'True' stay strings (so a
    'nan' target is reported, not silently accepted), and '007' stays a string because turning it
    into 7 would lose what was written.
    """
    if s == "":
        return None
    t = s.strip()
    if _DIGITS.fullmatch(t):
        return int(t) if _INT.fullmatch(t) else s
    if _FLOAT.fullmatch(t):
        return float(t)
    return s


def csv_cell(v: Any) -> Any:
    """Value -> CSV cell: None -> empty, nested values -> compact JSON, floats by ``repr`` (which
    round-trips exactly), anything else as the csv module writes it."""
    if v is None:
        return ""
    if isinstance(v, dict | list | tuple):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    if isinstance(v, float):
        return repr(v)
    return v


def csv_cells(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Stream a CSV's rows as raw cell text (index, {column: text}); checks the header and widths.

    A short row's missing cells read as empty, like an empty cell.
    """
    with open_text(path) as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if len(set(header)) != len(header):
            raise ValueError(f"{path}: duplicate column names in header {header}: rename them")
        for index, raw in enumerate(reader):
            if None in raw:
                raise ValueError(f"{path}: row {index} has more cells than the header has columns")
            yield index, {k: "" if v is None else v for k, v in raw.items()}


def parquet_rows(
    path: Path, batch_size: int = 1024, shard: tuple[int, int] | None = None
) -> Iterator[dict[str, Any]]:
    """A Parquet file's rows, one record batch in memory at a time; nulls read as None.
    ``shard=(i, n)``: only the i-th of n disjoint parts: every n-th row group from the i-th
    (whole groups are never read by other shards), or every n-th row when the file has fewer
    row groups than shards."""
    pq = pyarrow_parquet()
    f = pq.ParquetFile(path)
    if shard is None or shard[1] == 1:
        for batch in f.iter_batches(batch_size=batch_size):
            yield from batch.to_pylist()
        return
    i, n = shard
    if f.num_row_groups >= n:
        groups = list(range(i, f.num_row_groups, n))
        for batch in f.iter_batches(batch_size=batch_size, row_groups=groups):
            yield from batch.to_pylist()
        return
    index = 0
    for batch in f.iter_batches(batch_size=batch_size):
        for rec in batch.to_pylist():
            if index % n == i:
                yield rec
            index += 1
