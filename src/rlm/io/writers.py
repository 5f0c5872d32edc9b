"""Writing rows: one streaming writer for JSON Lines (a file or stdout), CSV and Parquet.

``RowWriter`` takes records chunk by chunk, so ``rlm predict`` writes millions of rows with
bounded memory; ``write_jsonl`` / ``write_csv`` / ``write_parquet`` are the same writer given
every record at once (which lets CSV and Parquet take the union of the records' keys as their
columns). Torch-free.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .files import FileKind, file_kind, open_text, pyarrow_parquet
from .jsonl import jsonl_line
from .tables import csv_cell


class RowWriter:
    """Streams records to ``path`` (``None``: JSON Lines on stdout), in the kind its name says.

    ``kind`` overrides the kind the name announces. ``columns`` fixes the CSV header / Parquet columns (missing keys are empty / null); without
    it the first chunk's keys are the header, and a later record with other keys is an error.
    ``strict`` refuses NaN, inf and values JSON cannot hold in JSONL (the library writers);
    without it they are written as Python prints them. Use it as a context manager.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        kind: FileKind | None = None,
        columns: Sequence[str] | None = None,
        strict: bool = False,
    ) -> None:
        self.path = path
        self.kind: FileKind = kind or ("jsonl" if path is None else file_kind(path))
        self.columns = list(columns) if columns is not None else None
        self.strict = strict
        self.rows = 0
        self._file: Any = None
        self._csv: csv.DictWriter | None = None
        self._parquet: Any = None
        self._schema: Any = None  # the first chunk's Arrow schema; later chunks must match

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.close(complete=exc_type is None)

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        if not records:
            return
        if self.kind == "parquet":
            self._write_parquet(records)
        elif self.kind == "jsonl":
            self._write_jsonl(records)
        else:
            self._write_csv(records)
        self.rows += len(records)

    def _text(self) -> Any:
        if self._file is None:
            self._file = sys.stdout if self.path is None else open_text(self.path, "wt")
        return self._file

    def _write_jsonl(self, records: Sequence[Mapping[str, Any]]) -> None:
        f = self._text()
        for i, rec in enumerate(records):
            try:
                f.write(jsonl_line(rec, strict=self.strict))
            except ValueError as e:
                raise ValueError(f"record {self.rows + i}: {e}: replace NaN/inf with null") from e

    def _write_csv(self, records: Sequence[Mapping[str, Any]]) -> None:
        if self._csv is None:
            header = self.columns if self.columns is not None else list(records[0])
            self._csv = csv.DictWriter(self._text(), fieldnames=header, lineterminator="\n")
            self._csv.writeheader()
        for rec in records:
            extra = set(rec) - set(self._csv.fieldnames)
            if extra:
                raise ValueError(
                    f"a row has columns {sorted(extra)} that earlier rows lack; CSV needs one "
                    "header: write JSONL output instead"
                )
            self._csv.writerow({k: csv_cell(v) for k, v in rec.items()})

    def _write_parquet(self, records: Sequence[Mapping[str, Any]]) -> None:
        import pyarrow as pa

        pq = pyarrow_parquet()
        if self.columns is not None:
            records = [{c: rec.get(c) for c in self.columns} for rec in records]
        table = pa.Table.from_pylist(list(records))
        if self._parquet is None:
            self._schema = table.schema
            self._parquet = pq.ParquetWriter(self.path, table.schema)
        else:
            try:
                table = table.cast(self._schema)
            except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as e:
                raise ValueError(
                    f"column types change between rows ({e}): write JSONL instead"
                ) from e
        self._parquet.write_table(table)

    def close(self, *, complete: bool = True) -> None:
        """Finish the file. A ``complete`` writer that got no records still leaves a valid, empty
        file; one closed by an error before its first record leaves no file at all."""
        if complete and self.rows == 0 and self.path is not None and self._file is None:
            if self.kind == "parquet" and self._parquet is None:
                import pyarrow as pa

                pq = pyarrow_parquet()
                table = pa.table({c: pa.array([], pa.null()) for c in self.columns or ()})
                pq.write_table(table, self.path)
            elif self.kind == "csv":
                self._csv = csv.DictWriter(
                    self._text(), fieldnames=self.columns or [], lineterminator="\n"
                )
                self._csv.writeheader()
            else:
                self._text()
        if self._parquet is not None:
            self._parquet.close()
        if self._file is not None and self._file is not sys.stdout:
            self._file.close()


def _columns(records: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: dict[str, None] = {}
    for rec in records:
        cols.update(dict.fromkeys(rec))
    return list(cols)


def write_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """One JSON object per line; ``.gz`` paths are gzip-compressed (with a fixed mtime). NaN and
    inf are an error naming the record: replace them with null."""
    with RowWriter(Path(path), kind="jsonl", strict=True) as w:
        w.write(list(records))


def write_csv(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Columns = union of keys in first-seen order; None -> empty cell, nested values -> JSON."""
    records = list(records)
    with RowWriter(Path(path), kind="csv", columns=_columns(records)) as w:
        w.write(records)


def write_parquet(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Write records with pyarrow (types inferred per column; missing keys become null)."""
    records = list(records)
    with RowWriter(Path(path), kind="parquet", columns=_columns(records)) as w:
        w.write(records)
