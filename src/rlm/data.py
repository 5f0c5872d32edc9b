"""Examples and the readers that turn files into them.

An RLM example is one input ``x`` (a string, or a JSON-like mapping that ``rlm.text`` turns into a
string) and one or more named float targets ``y``. Everything downstream (tokenizers, training,
evaluation) consumes ``list[Example]``, so every file format ends here, and every check on the
numbers happens here, once: a target that is NaN, infinite, a bool or a string is an error that
names the row, never something that is quietly dropped. A target that is *absent* is fine: it is
simply missing from ``y`` and the model masks it.

Two on-disk layouts are understood:

* **nested** (the shared benchmark format): ``{"id": ..., "x": ..., "y": {name: float}, "split": ...}``
* **flat** (typical CSV / Parquet / JSONL exports): one column per input and per target; the
  caller names the target columns and everything else (minus ``id`` / ``split``) is the input.

This module is torch-free on purpose (a test enforces it): data loading must work in light
environments, e.g. for ``rlm predict`` input validation or dataset preparation.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import random
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import IO, Any

DEMO_NAMES = ("nas201", "x264")


# ----------------------------------------------------------------------------------------------
# Example


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


# ----------------------------------------------------------------------------------------------
# Reading: shared pieces


def _open_text(path: Path, mode: str = "rt") -> IO[str]:
    # Gzip is decided by suffix, not sniffed, so that a mislabeled file fails loudly.
    if path.suffix == ".gz":
        return gzip.open(path, mode, encoding="utf-8", newline="" if "w" in mode else None)
    return open(path, mode, encoding="utf-8", newline="" if "w" in mode else None)


Record = dict[str, Any]
Builder = Callable[[Record, int], Example]


def _label(rec: Record, id_column: str, index: int) -> str:
    rid = rec.get(id_column)
    return f"row {rid!r}" if rid is not None else f"row {index}"


def _flat_example(
    rec: Record,
    index: int,
    *,
    targets: Sequence[str],
    x_columns: Sequence[str] | None,
    x_column: str | None,
    id_column: str,
    split_column: str,
    allow_unlabeled: bool,
) -> Example:
    """One row of the flat layout: named target columns, the rest (or ``x_columns``) is x."""
    label = _label(rec, id_column, index)
    if x_column is not None:
        if x_column not in rec:
            raise ValueError(f"{label} has no column {x_column!r}; columns: {list(rec)}")
        x: str | dict[str, Any] = rec[x_column]
    elif x_columns is not None:
        absent = [c for c in x_columns if c not in rec]
        if absent:
            raise ValueError(f"{label} lacks x columns {absent}; columns: {list(rec)}")
        x = {c: rec[c] for c in x_columns}
    else:
        skip = {*targets, id_column, split_column}
        x = {k: v for k, v in rec.items() if k not in skip}
    rid, rsplit = rec.get(id_column), rec.get(split_column)
    return Example.make(
        x,
        {t: rec.get(t) for t in targets},  # an absent column is a missing target, like null
        id=None if rid is None else str(rid),
        split=None if rsplit is None else str(rsplit),
        allow_unlabeled=allow_unlabeled,
        index=index,
    )


def _nested_example(
    rec: Record,
    index: int,
    *,
    x_key: str,
    y_key: str,
    targets: Sequence[str] | None,
    x_keys: Sequence[str] | None,
    allow_unlabeled: bool,
) -> Example:
    """One row of the nested layout ``{"id", "x", "y": {...}, "split"}``."""
    label = _label(rec, "id", index)
    if x_key not in rec:
        raise ValueError(
            f"{label} has no {x_key!r} key (keys: {list(rec)}): "
            "set x_key, or y_key=None for flat records"
        )
    x = rec[x_key]
    if x_keys is not None:
        if not isinstance(x, dict):
            raise ValueError(f"{label}: x_keys given but x is not an object: drop x_keys")
        absent = [k for k in x_keys if k not in x]
        if absent:
            raise ValueError(f"{label}: x lacks keys {absent}; it has {list(x)}")
        x = {k: x[k] for k in x_keys}
    y = rec.get(y_key)
    if y is not None and not isinstance(y, dict):
        y = {y_key: y}  # a scalar target is named after its key
    if y is not None and targets is not None:
        y = {t: y.get(t) for t in targets}
    rid, rsplit = rec.get("id"), rec.get("split")
    return Example.make(
        x,
        y,
        id=None if rid is None else str(rid),
        split=None if rsplit is None else str(rsplit),
        target_name=y_key,
        allow_unlabeled=allow_unlabeled,
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


def _read(
    path: Path,
    records: Callable[[], Iterable[tuple[int, Record]]],
    build: Builder,
    *,
    targets: Sequence[str] | None,
    id_column: str,
    split_column: str,
    split: str | None,
    limit: int | None,
    allow_unlabeled: bool,
) -> list[Example]:
    """The loop every reader shares.

    The split filter runs *before* an example is built, so a bad row in another split does not
    block this one; a split filter on a row without a split is an error. Errors gain the path.
    """
    out: list[Example] = []
    try:
        for index, rec in records():
            if split is not None:
                rsplit = rec.get(split_column)
                if rsplit is None:
                    raise ValueError(
                        f"split={split!r} asked for, but {_label(rec, id_column, index)} has no "
                        f"{split_column!r} field: pass split=None or add a split column"
                    )
                if str(rsplit) != split:
                    continue
            out.append(build(rec, index))
            if limit is not None and len(out) >= limit:
                break
    except ValueError as e:
        if str(e).startswith(str(path)):
            raise
        raise ValueError(f"{path}: {e}") from e
    # A requested target that no row has is almost surely a typo: say so instead of masking it.
    if targets is not None and not allow_unlabeled and out:
        seen = set(target_names(out))
        missing = [t for t in targets if t not in seen]
        if missing:
            raise ValueError(
                f"{path}: targets {missing} occur in no row; the rows have {sorted(seen)}: "
                "fix the target names"
            )
    return out


# ----------------------------------------------------------------------------------------------
# Readers


def jsonl_objects(lines: Iterable[str], where: str) -> Iterator[tuple[int, Record]]:
    """(index, object) per non-blank JSON Lines line; errors name ``where:lineno`` and the fix.

    Shared by the readers and ``rlm predict``'s streaming (files and stdin).
    """
    index = -1
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        index += 1
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}:{lineno}: invalid JSON ({e}): fix that line") from e
        if not isinstance(rec, dict):
            raise ValueError(f"{where}:{lineno}: expected a JSON object per line")
        yield index, rec


def _jsonl_records(path: Path) -> Iterator[tuple[int, Record]]:
    with _open_text(path) as f:
        yield from jsonl_objects(f, str(path))


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
    path = Path(path)
    flat = y_key is None
    _check_options(targets, x_keys, x_column, limit, flat=flat, allow_unlabeled=allow_unlabeled)
    if y_key is None:
        build: Builder = partial(
            _flat_example,
            targets=targets or (),
            x_columns=x_keys,
            x_column=x_column,
            id_column="id",
            split_column="split",
            allow_unlabeled=allow_unlabeled,
        )
    else:
        build = partial(
            _nested_example,
            x_key=x_key,
            y_key=y_key,
            targets=targets,
            x_keys=x_keys,
            allow_unlabeled=allow_unlabeled,
        )
    return _read(
        path,
        lambda: _jsonl_records(path),
        build,
        targets=targets,
        id_column="id",
        split_column="split",
        split=split,
        limit=limit,
        allow_unlabeled=allow_unlabeled,
    )


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


def csv_cells(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Stream a CSV's rows as raw cell text (index, {column: text}); checks the header and widths.

    Raw text is what ``rlm predict`` writes back (so "1.50" stays "1.50"); the readers parse it.
    A short row's missing cells read as empty, like an empty cell.
    """
    with _open_text(path) as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if len(set(header)) != len(header):
            raise ValueError(f"{path}: duplicate column names in header {header}: rename them")
        for index, raw in enumerate(reader):
            if None in raw:
                raise ValueError(f"{path}: row {index} has more cells than the header has columns")
            yield index, {k: "" if v is None else v for k, v in raw.items()}


def _csv_records(path: Path) -> Iterator[tuple[int, Record]]:
    for index, cells in csv_cells(path):
        yield index, {k: parse_cell(v) for k, v in cells.items()}


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq  # lazy: pyarrow is an optional, heavy dependency
    except ImportError as e:
        raise ValueError(
            "reading or writing Parquet needs pyarrow: pip install rlm[parquet]"
        ) from e
    return pq


def _read_flat(
    path: Path,
    records: Callable[[], Iterable[tuple[int, Record]]],
    *,
    targets: Sequence[str],
    x_columns: Sequence[str] | None,
    x_column: str | None,
    id_column: str,
    split_column: str,
    split: str | None,
    limit: int | None,
    allow_unlabeled: bool,
) -> list[Example]:
    _check_options(targets, x_columns, x_column, limit, flat=True, allow_unlabeled=allow_unlabeled)
    build = partial(
        _flat_example,
        targets=targets,
        x_columns=x_columns,
        x_column=x_column,
        id_column=id_column,
        split_column=split_column,
        allow_unlabeled=allow_unlabeled,
    )
    return _read(
        path,
        records,
        build,
        targets=targets,
        id_column=id_column,
        split_column=split_column,
        split=split,
        limit=limit,
        allow_unlabeled=allow_unlabeled,
    )


def read_csv(
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
    """Read a CSV (or ``.csv.gz``) with a header row, in the flat layout (see ``read_jsonl``).

    Cells are parsed by :func:`parse_cell`; an empty target cell is a missing target.
    """
    path = Path(path)
    return _read_flat(
        path,
        lambda: _csv_records(path),
        targets=targets,
        x_columns=x_columns,
        x_column=x_column,
        id_column=id_column,
        split_column=split_column,
        split=split,
        limit=limit,
        allow_unlabeled=allow_unlabeled,
    )


def read_parquet(
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
    """Read a Parquet file in the flat layout (see ``read_jsonl``); nulls are missing values."""
    pq = _pyarrow_parquet()
    path = Path(path)
    return _read_flat(
        path,
        lambda: enumerate(pq.read_table(path).to_pylist()),
        targets=targets,
        x_columns=x_columns,
        x_column=x_column,
        id_column=id_column,
        split_column=split_column,
        split=split,
        limit=limit,
        allow_unlabeled=allow_unlabeled,
    )


_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz")
_CSV_SUFFIXES = (".csv", ".csv.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")


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
    name = Path(path).name.lower()
    if name.endswith(_JSONL_SUFFIXES):
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
    if name.endswith(_CSV_SUFFIXES + _PARQUET_SUFFIXES):
        reader = read_csv if name.endswith(_CSV_SUFFIXES) else read_parquet
        return reader(
            path,
            targets=targets,  # type: ignore[arg-type]  # None is reported by the reader
            x_columns=x_columns,
            x_column=x_column,
            split=split,
            limit=limit,
            allow_unlabeled=allow_unlabeled,
        )
    known = _JSONL_SUFFIXES + _CSV_SUFFIXES + _PARQUET_SUFFIXES
    raise ValueError(f"{path}: unknown file type; rename it to end in one of {list(known)}")


# ----------------------------------------------------------------------------------------------
# Writers (plain lists of dicts; prediction columns are the caller's business)


def write_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """One JSON object per line; ``.gz`` paths are gzip-compressed (with a fixed mtime)."""
    path = Path(path)
    lines = []
    for i, rec in enumerate(records):
        try:
            # allow_nan=False: NaN is not JSON, and writing it would poison every later reader.
            lines.append(json.dumps(dict(rec), ensure_ascii=False, allow_nan=False))
        except ValueError as e:
            raise ValueError(f"record {i}: {e}: replace NaN/inf with null") from e
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    if path.suffix == ".gz":
        # mtime=0 and no file name in the header make the bytes reproducible.
        with open(path, "wb") as raw, gzip.GzipFile("", "wb", 9, raw, mtime=0) as gz:
            gz.write(data)
    else:
        path.write_bytes(data)


def _columns(records: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: dict[str, None] = {}
    for rec in records:
        cols.update(dict.fromkeys(rec))
    return list(cols)


def write_csv(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Columns = union of keys in first-seen order; None -> empty cell, nested values -> JSON."""
    records = list(records)
    cols = _columns(records)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for rec in records:
        row = []
        for c in cols:
            v = rec.get(c)
            if isinstance(v, dict | list | tuple):
                v = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
            elif isinstance(v, float):
                v = repr(v)  # repr round-trips exactly; str() would too, but say it on purpose
            row.append("" if v is None else v)
        w.writerow(row)
    with _open_text(Path(path), "wt") as f:
        f.write(buf.getvalue())


def write_parquet(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Write records with pyarrow (types inferred per column; missing keys become null)."""
    pq = _pyarrow_parquet()
    import pyarrow as pa

    records = list(records)
    cols = _columns(records)
    table = pa.Table.from_pylist([{c: rec.get(c) for c in cols} for rec in records])
    pq.write_table(table, Path(path))


# ----------------------------------------------------------------------------------------------
# Helpers


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


def load_demo(name: str, split: str | None = None) -> list[Example]:
    """A bundled demo data set ("nas201" or "x264"); see ``rlm/datasets/README.md``."""
    if name not in DEMO_NAMES:
        raise ValueError(f"unknown demo data set {name!r}: choose one of {list(DEMO_NAMES)}")
    res = resources.files("rlm").joinpath("datasets", f"{name}_demo.jsonl.gz")
    with resources.as_file(res) as p:
        return read_jsonl(p, split=split)
