"""File kinds and opening: one rule for every reader and writer.

The kind of a file (JSON Lines, CSV, Parquet) is decided by its name, and gzip by its ``.gz``
suffix, never sniffed from the bytes: a mislabeled file then fails loudly at the first read
instead of being parsed as something else. Torch-free.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import IO, Any, Literal

FileKind = Literal["jsonl", "csv", "parquet"]
SUFFIXES: dict[FileKind, tuple[str, ...]] = {
    "jsonl": (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz"),
    "csv": (".csv", ".csv.gz"),
    "parquet": (".parquet", ".pq"),
}


def file_kind(path: str | Path) -> FileKind:
    """The kind a file name announces; an unknown suffix is an error listing the known ones."""
    name = Path(path).name.lower()
    for kind, suffixes in SUFFIXES.items():
        if name.endswith(suffixes):
            return kind
    known = [s for group in SUFFIXES.values() for s in group]
    raise ValueError(f"{path}: unknown file type; rename it to end in one of {known}")


def open_text(path: Path, mode: str = "rt") -> IO[str]:
    """UTF-8 text, gzip-compressed when the name ends in ``.gz``.

    Written gzip files carry mtime 0 and no file name in their header, so the same records give
    the same bytes on every run.
    """
    newline = "" if "w" in mode else None
    if path.suffix != ".gz":
        return open(path, mode, encoding="utf-8", newline=newline)
    if "w" not in mode:
        return gzip.open(path, mode, encoding="utf-8")
    raw = open(path, "wb")  # noqa: SIM115  (closed by _GzipText.close)
    return _GzipText(raw, gzip.GzipFile("", "wb", 9, raw, mtime=0), newline)


class _GzipText(io.TextIOWrapper):
    """Text over a GzipFile over a raw file; closing it closes all three (GzipFile does not
    close a file object it was given)."""

    def __init__(self, raw: IO[bytes], gz: gzip.GzipFile, newline: str | None) -> None:
        super().__init__(gz, encoding="utf-8", newline=newline)
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def pyarrow_parquet() -> Any:
    """``pyarrow.parquet``, imported on first use: pyarrow is an optional, heavy dependency."""
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ValueError(
            "reading or writing Parquet needs pyarrow: pip install rlm[parquet]"
        ) from e
    return pq
