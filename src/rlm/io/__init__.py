"""Rows in and out: ``Example`` (one input and its targets), the readers that turn JSON Lines,
CSV and Parquet files into examples, the streaming row reader and writer that the CLI shares
with them, and the bundled demo data. Torch-free.

``files`` (kinds, gzip) -> ``jsonl`` / ``tables`` (formats) -> ``rows`` (streaming, the input
layout) -> ``readers`` (examples) and ``writers``; ``examples`` is what they all produce.
"""

from __future__ import annotations

from .demo import DEMO_NAMES, load_demo
from .examples import Example, subset, target_names
from .files import file_kind, open_text
from .jsonl import jsonl_objects
from .readers import read_csv, read_examples, read_jsonl, read_parquet
from .rows import Layout, iter_rows, take_input
from .tables import csv_cells, parse_cell
from .writers import RowWriter, write_csv, write_jsonl, write_parquet

__all__ = [
    "DEMO_NAMES",
    "Example",
    "Layout",
    "RowWriter",
    "csv_cells",
    "file_kind",
    "iter_rows",
    "jsonl_objects",
    "load_demo",
    "open_text",
    "parse_cell",
    "read_csv",
    "read_examples",
    "read_jsonl",
    "read_parquet",
    "subset",
    "take_input",
    "target_names",
    "write_csv",
    "write_jsonl",
    "write_parquet",
]
