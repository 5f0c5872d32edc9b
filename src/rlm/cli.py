"""The ``rlm`` command: train, predict, eval, demo, info, serve.

Design choices, and why:

* **Fast start**: torch (and matplotlib) are imported inside the commands that need them, so
  ``rlm --help``, ``rlm info`` and bad-option errors answer in a fraction of a second.
* **Clean errors**: the library raises ValueError for everything a user can get wrong (bad file,
  unknown target, invalid option). Every command converts those into a one-message error with
  exit code 2, the same code click uses for bad options, instead of a traceback.
* **Files are read like training read them**: ``rlm train`` saves how inputs were taken from rows
  (``--x-key`` / ``--x-columns`` / ``--x-column``) in ``DIR/cli.json``, and ``predict`` / ``eval``
  use it by default, so a flat CSV is turned into the same model input at every step.
* **Machine-readable output stays clean**: ``--json`` and ``--output -`` write only data to
  stdout; notes and warnings go to stderr.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
import struct
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from .config import PRESETS, strict_from_dict
from .data import Example, parse_cell, read_examples, target_names
from .metrics import check_level
from .numbers import NumberConfig
from .vocab import VocabConfig

if TYPE_CHECKING:
    import numpy as np

    from .api import Predictions, RegressionLM
    from .calibration import IntervalCalibration

# Input-layout options of `predict` and `eval`: they default to the layout saved by `train`.
SavedXKey = Annotated[
    str | None, typer.Option(help="Nested JSONL: key of the input (default: as trained).")
]
SavedXColumns = Annotated[
    list[str] | None, typer.Option(help="Flat files: input columns (default: as trained).")
]
SavedXColumn = Annotated[
    str | None, typer.Option(help="Flat files: one text input column (default: as trained).")
]

app = typer.Typer(
    name="rlm",
    help="Regression language models: read text or JSON configs, write numbers digit by digit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
# markup off: data (inputs like "[1, 2]", regex patterns) must print verbatim, never as rich tags
out = Console(highlight=False, markup=False)
err = Console(stderr=True, highlight=False, markup=False)

LAYOUT_FILE = "cli.json"  # how `rlm train` took inputs from rows; read by predict / eval
CHECKPOINT_FILES = ("config.json", "tokenizer.json", "model.safetensors")
DEMO_PATTERN = r"[a-z_0-9]+~\d|\+"  # one token per NAS-Bench-201 edge, plus the node separator
DEMO_TARGET = "cifar10_test_acc"
DEMO_TRAIN_ROWS = 1000

FileKind = Literal["jsonl", "csv", "parquet"]
_SUFFIXES: dict[FileKind, tuple[str, ...]] = {
    "jsonl": (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz"),
    "csv": (".csv", ".csv.gz"),
    "parquet": (".parquet", ".pq"),
}


class CliError(typer.BadParameter):
    """A user error: one message, no traceback, exit code 2 (like a bad option).

    A BadParameter because typer's (vendored) click reports exactly that family cleanly; the
    message is shown as is, without click's "Invalid value:" prefix.
    """

    def format_message(self) -> str:
        return self.message


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's ValueErrors (its user-error type) into clean CLI errors."""
    try:
        yield
    except ValueError as e:
        raise CliError(str(e)) from e


# Enums rather than free strings: click then rejects a bad value itself, listing the choices.
class Preset(StrEnum):
    tiny = "tiny"
    small = "small"
    base = "base"


class Scheme(StrEnum):
    ieee = "ieee"
    p10 = "p10"
    normalized = "normalized"


class Select(StrEnum):
    loss = "loss"
    spearman = "spearman"


# ----------------------------------------------------------------------------------------------
# Data layout: how rows of a file become model inputs


@dataclass(frozen=True)
class Layout:
    """Where a row's input is. Nested rows (``{"x": ..., "y": {...}}``) use ``x_key``; flat rows
    use ``x_column`` (one text column), ``x_columns`` (a mapping of those columns) or, by default,
    every column except the targets, ``id`` and ``split``."""

    x_key: str = "x"
    x_columns: tuple[str, ...] | None = None
    x_column: str | None = None

    def __post_init__(self) -> None:
        if self.x_columns is not None:
            # cli.json stores a JSON list; keep a tuple so layouts compare and hash
            object.__setattr__(self, "x_columns", tuple(self.x_columns))
        if self.x_columns is not None and self.x_column is not None:
            raise ValueError(
                "pass either --x-columns (a mapping input) or --x-column (one text input)"
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Layout:
        return strict_from_dict(cls, d)


def _columns_option(values: Sequence[str] | None) -> tuple[str, ...] | None:
    """--x-columns may be repeated and/or comma-separated: 'a,b' --x-columns c -> (a, b, c)."""
    if not values:
        return None
    cols = tuple(c.strip() for v in values for c in v.split(",") if c.strip())
    return cols or None


def _layout(
    directory: Path | None,
    x_key: str | None,
    x_columns: Sequence[str] | None,
    x_column: str | None,
) -> Layout:
    """Options given on this command line win over the layout saved by ``rlm train``."""
    saved = Layout()
    if directory is not None and (directory / LAYOUT_FILE).is_file():
        saved = Layout.from_dict(json.loads((directory / LAYOUT_FILE).read_text())["layout"])
    cols = _columns_option(x_columns)
    if cols is not None or x_column is not None:  # a new flat choice replaces the saved one
        return Layout(x_key or saved.x_key, cols, x_column)
    return Layout(x_key or saved.x_key, saved.x_columns, saved.x_column)


def file_kind(path: str | Path) -> FileKind:
    name = Path(path).name.lower()
    for kind, suffixes in _SUFFIXES.items():
        if name.endswith(suffixes):
            return kind
    known = [s for group in _SUFFIXES.values() for s in group]
    raise ValueError(f"{path}: unknown file type; use a name ending in one of {known}")


def _is_nested(rec: Mapping[str, Any], layout: Layout, targets: Sequence[str]) -> bool:
    # Nested rows hold the input under x_key and the targets inside "y"; a flat row that
    # happens to have an "x" column still shows its targets at the top level.
    return layout.x_key in rec and not any(t in rec for t in targets)


# Rows are streamed as (raw, parsed) pairs: `parsed` builds model inputs; `raw` is what a CSV
# output writes back, so cells keep their exact text ("1.50" stays "1.50").
Row = tuple[dict[str, Any], dict[str, Any]]


def _jsonl_lines(lines: Iterable[str], where: str) -> Iterator[Row]:
    from .data import jsonl_objects

    for _, rec in jsonl_objects(lines, where):
        yield rec, rec


def iter_rows(path: Path | None, chunk_size: int = 1024) -> Iterator[Row]:
    """Stream rows of a JSONL / CSV / Parquet file (``None``: JSON Lines on stdin)."""
    from .data import _open_text  # same gzip-by-suffix rule as the readers

    if path is None:
        yield from _jsonl_lines(sys.stdin, "<stdin>")
        return
    kind = file_kind(path)
    if kind == "jsonl":
        with _open_text(path) as f:
            yield from _jsonl_lines(f, str(path))
    elif kind == "csv":
        from .data import csv_cells

        for _, cells in csv_cells(path):
            yield cells, {k: parse_cell(v) for k, v in cells.items()}
    else:
        from .data import _pyarrow_parquet

        pq = _pyarrow_parquet()
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_size):
            for rec in batch.to_pylist():
                yield rec, rec


def _input_of(
    rec: Mapping[str, Any], index: int, layout: Layout, nested: bool, skip: set[str]
) -> str | dict[str, Any]:
    """A row's model input, taken exactly as the readers in ``rlm.data`` take it."""
    label = f"row {rec['id']!r}" if rec.get("id") is not None else f"row {index}"
    if nested:
        x = rec.get(layout.x_key)
        if x is None:
            raise ValueError(
                f"{label} has no {layout.x_key!r} key (keys: {list(rec)}): set --x-key"
            )
        if layout.x_columns is not None:
            if not isinstance(x, dict):
                raise ValueError(f"{label}: --x-columns given but x is not an object")
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


def read_labeled(
    path: Path, targets: Sequence[str] | None, layout: Layout, *, any_target: bool = False
) -> list[Example]:
    """Every labeled row of ``path``; ``targets=None`` keeps all targets of a nested file.

    A requested target that the file lacks is an error naming the targets it has. With
    ``any_target`` (scoring a multi-target model on a file with fewer targets) the requested
    targets that the file has are kept instead, and only none at all is an error.
    """
    if not path.is_file():
        raise ValueError(f"{path} does not exist or is not a file")
    first = next(iter_rows(path), None)
    if first is None:
        raise ValueError(f"{path} has no rows")
    rec = first[1]
    names = list(targets or ())
    nested = file_kind(path) == "jsonl" and _is_nested(rec, layout, names)
    if not nested:
        if not names:
            raise ValueError(
                f"{path} is a flat file (no {layout.x_key!r} key with a 'y' object): "
                "name its target column(s) with --target"
            )
        missing = [t for t in names if t not in rec]
        if any_target:
            names = [t for t in names if t in rec]
        if missing and (not any_target or not names):
            raise ValueError(
                f"{path} has no target column(s) {missing}; its columns: {list(rec)}: fix --target"
            )
        return read_examples(
            path,
            targets=names,
            y_key=None,
            x_columns=layout.x_columns,
            x_column=layout.x_column,
        )
    # Nested: read every target, then check the requested ones against what the rows have,
    # so that a typo is reported with the real names instead of as "row 0 has no targets".
    rows = read_examples(path, x_key=layout.x_key, x_columns=layout.x_columns)
    if not names:
        return rows
    have = set(target_names(rows))
    missing = [t for t in names if t not in have]
    if any_target:
        names = [t for t in names if t in have]
    if missing and (not any_target or not names):
        raise ValueError(
            f"{path}: no row has target(s) {missing}; the rows have {sorted(have)}: fix --target"
        )
    return [e for e in rows if any(t in e.y for t in names)]


def split_rows(rows: Sequence[Example], split: str, path: Path) -> list[Example] | None:
    """The rows of one split; None when the file has no split field at all."""
    splits = {e.split for e in rows}
    if splits == {None}:
        return None
    if None in splits:
        raise ValueError(
            f"{path}: some rows have a split and some do not: give every row a split, or none"
        )
    return [e for e in rows if e.split == split]


def _splits_of(rows: Sequence[Example]) -> list[str]:
    return sorted({e.split for e in rows if e.split is not None})


# ----------------------------------------------------------------------------------------------
# Model helpers (torch is imported here, never at module level)


def load_model(directory: Path) -> RegressionLM:
    _check_checkpoint(directory)
    from .api import RegressionLM

    return RegressionLM.load(directory)


def _check_checkpoint(directory: Path) -> None:
    if not directory.is_dir():
        raise ValueError(
            f"checkpoint directory {directory} does not exist: train one with "
            f"`rlm train DATA --target NAME --out {directory}` (or `rlm demo`)"
        )
    missing = [f for f in CHECKPOINT_FILES if not (directory / f).is_file()]
    if missing:
        raise ValueError(
            f"{directory} is not an rlm checkpoint ({', '.join(missing)} missing): "
            "point to the --out directory of `rlm train`"
        )


# ----------------------------------------------------------------------------------------------
# Formatting


def fmt(v: float | None, kind: str = "g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if kind == "int":
        return f"{int(v):,}"
    if kind == "corr":  # correlations and R² (which can be hugely negative for a bad model)
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.3g}"
    if kind == "pct":
        return f"{100 * v:.1f}%"
    return f"{v:.4g}"


METRICS: tuple[tuple[str, str, str], ...] = (
    # key, column header, format
    ("n", "n", "int"),
    ("spearman", "Spearman", "corr"),
    ("kendall", "Kendall", "corr"),
    ("mae", "MAE", "g"),
    ("mape", "MAPE %", "g"),
    ("r2", "R²", "corr"),
    ("coverage", "coverage", "pct"),
    ("width", "width", "g"),
)


def metrics_table(report: Mapping[str, Mapping[str, float]], title: str, level: float) -> Table:
    """One row per metric, one column per target: stays narrow for the usual 1-3 targets."""
    table = Table(title=title, title_justify="left", min_width=min(60, 20 + 16 * len(report)))
    table.add_column("metric")
    for name in report:
        table.add_column(name, justify="right")
    for key, header, kind in METRICS:
        label = f"{header} @{level:.0%}" if key in ("coverage", "width") else header
        table.add_row(label, *(fmt(m.get(key), kind) for m in report.values()))
    return table


def _kv_table(title: str, items: Mapping[str, Any]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for k, v in items.items():
        table.add_row(k, v if isinstance(v, str) else json.dumps(v))
    return table


def _show(x: Any, width: int = 60) -> str:
    s = x if isinstance(x, str) else json.dumps(x, separators=(",", ":"), ensure_ascii=False)
    return s if len(s) <= width else s[: width - 1] + "…"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


# ----------------------------------------------------------------------------------------------
# train


@app.command()
def train(
    data: Annotated[
        Path,
        typer.Argument(
            metavar="DATA",
            help="Training data: .jsonl / .jsonl.gz (nested {id, x, y, split} rows or flat rows), "
            ".csv or .parquet (flat: one column per input and per target).",
        ),
    ],
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Directory for the checkpoint (model.safetensors, config.json, tokenizer.json), "
            "metrics.jsonl (one line per epoch) and cli.json (how inputs were read).",
        ),
    ],
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            "-t",
            metavar="NAME",
            help="Target to learn; repeat for several objectives. Required for flat files "
            "(CSV / Parquet / flat JSONL); nested files default to every target they contain.",
        ),
    ] = None,
    preset: Annotated[
        Preset,
        typer.Option(
            help="Model size: tiny (seconds, for tests), small (~3M params, "
            "the CPU workhorse) or base (~25M params)."
        ),
    ] = Preset.small,
    epochs: Annotated[
        int, typer.Option(min=1, help="Maximum epochs; the learning-rate schedule spans them.")
    ] = 200,
    time_budget: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Stop after this many seconds of training and keep the best weights so far.",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Examples per optimiser step.")] = 64,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak learning rate (AdamW).")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed for initialisation and batch order.")] = 0,
    patience: Annotated[
        int,
        typer.Option(
            min=1, help="Early stopping: validations without improvement before stopping."
        ),
    ] = 20,
    valid: Annotated[
        Path | None,
        typer.Option(
            help="Separate validation file (every row is used); overrides --valid-split.",
        ),
    ] = None,
    valid_split: Annotated[
        str | None,
        typer.Option(
            help="When DATA has a split field: rows of this split validate (early stopping, "
            "final metrics). Default 'valid'; without such rows training runs unvalidated.",
        ),
    ] = None,
    train_split: Annotated[
        str, typer.Option(help="When DATA has a split field: rows of this split train.")
    ] = "train",
    limit: Annotated[
        int | None, typer.Option(min=1, help="Train on the first N training rows only.")
    ] = None,
    scheme: Annotated[
        Scheme,
        typer.Option(
            help="How numbers are written: ieee (sign, exponent, mantissa; any magnitude), "
            "p10 (mantissa digits + one exponent token) or normalized (digits of a fraction "
            "of the training range)."
        ),
    ] = Scheme.ieee,
    mantissa_digits: Annotated[
        int, typer.Option(min=1, help="Significant digits per predicted number.")
    ] = NumberConfig.mantissa_digits,
    exponent_digits: Annotated[
        int,
        typer.Option(min=1, help="ieee scheme: exponent digits (1 covers 1e-9 to 9.999e9)."),
    ] = NumberConfig.exponent_digits,
    clamp: Annotated[
        bool,
        typer.Option(
            "--clamp",
            help="Clamp targets outside the number range into it (counted in a warning) instead "
            "of failing; the library calls this out_of_range='clamp'.",
        ),
    ] = False,
    vocab_size: Annotated[
        int, typer.Option(help="Upper bound on the input BPE vocabulary (at least 261).")
    ] = VocabConfig.vocab_size,
    max_length: Annotated[
        int,
        typer.Option(
            help="Input tokens kept per example (head and tail of longer inputs). Raises the "
            "model's position table when it exceeds the preset's."
        ),
    ] = VocabConfig.max_length,
    pattern: Annotated[
        str | None,
        typer.Option(
            help="Structure-aware inputs: a regex whose matches are the only input pieces, e.g. "
            r"'\[a-z_0-9]+~\d|\+' makes each NAS-Bench-201 edge one token.",
        ),
    ] = None,
    select: Annotated[
        Select,
        typer.Option(
            help="What early stopping watches on validation data: loss (cheap) or spearman "
            "(rank correlation of sampled predictions; slower)."
        ),
    ] = Select.loss,
    samples: Annotated[
        int, typer.Option(min=1, help="Samples per input for the final validation metrics.")
    ] = 64,
    level: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Interval level for validation coverage.")
    ] = 0.8,
    x_key: Annotated[
        str, typer.Option(help="Nested JSONL: the key that holds each row's input.")
    ] = "x",
    x_columns: Annotated[
        list[str] | None,
        typer.Option(
            help="Flat files: the input columns (comma-separated or repeated); default: every "
            "column except targets, id and split. Nested JSONL: keep only these keys of x."
        ),
    ] = None,
    x_column: Annotated[
        str | None, typer.Option(help="Flat files: one column that holds a text input.")
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace a previous run in --out instead of refusing."),
    ] = False,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="No progress bar (e.g. in CI logs).")
    ] = False,
) -> None:
    """Train a model on DATA and save it to --out, then print a summary with validation metrics."""
    with user_errors():
        from .config import TrainConfig
        from .config import preset as make_preset

        # options first: a bad option fails in milliseconds, before any data is read
        check_level(level, "--level")
        layout = Layout(x_key, _columns_option(x_columns), x_column)
        model_cfg = PRESETS[preset.value]
        if max_length > model_cfg.max_input_len:
            model_cfg = make_preset(preset.value, max_input_len=max_length)
        numbers = NumberConfig(
            scheme=scheme.value,
            mantissa_digits=mantissa_digits,
            exponent_digits=exponent_digits,
            out_of_range="clamp" if clamp else "error",
        )
        vocab = VocabConfig(vocab_size=vocab_size, max_length=max_length, pattern=pattern)
        train_cfg = TrainConfig(
            lr=lr,
            batch_size=batch_size,
            max_epochs=epochs,
            time_budget_s=time_budget,
            select=select.value,
            patience=patience,
            seed=seed,
            progress=not no_progress,
        )
        previous = (out_dir / "metrics.jsonl").exists() or (out_dir / "config.json").exists()
        if previous and not overwrite:
            raise ValueError(
                f"{out_dir} already holds a run: pass --overwrite, or choose another --out"
            )

        rows = read_labeled(data, target, layout)
        train_rows = split_rows(rows, train_split, data)
        valid_rows: list[Example] | None = None
        if train_rows is None:  # no split field: the whole file trains
            train_rows = list(rows)
            if valid_split is not None and valid is None:
                raise ValueError(f"--valid-split {valid_split!r} given, but {data} has no splits")
        else:
            if not train_rows:
                raise ValueError(
                    f"{data} has no rows of split {train_split!r}; its splits: "
                    f"{_splits_of(rows)}: set --train-split"
                )
            if valid is None:
                valid_rows = split_rows(rows, valid_split or "valid", data)
                if not valid_rows and valid_split is not None:
                    raise ValueError(
                        f"{data} has no rows of split {valid_split!r}; its splits: "
                        f"{_splits_of(rows)}: set --valid-split"
                    )
        if valid is not None:
            valid_rows = read_labeled(valid, target, layout)
        if limit is not None:
            train_rows = train_rows[:limit]
        if not valid_rows:
            valid_rows = None
            err.print(
                "note: no validation rows, so no early stopping and the last weights are kept; "
                "pass --valid PATH or give DATA a 'valid' split"
            )
        # training appends to metrics.jsonl: start it afresh rather than mix two runs
        (out_dir / "metrics.jsonl").unlink(missing_ok=True)

        from .api import RegressionLM

        model = RegressionLM(
            model=model_cfg, numbers=numbers, vocab=vocab, train=train_cfg, targets=target or None
        )
        err.print(
            f"training a {preset.value} model on {len(train_rows):,} rows"
            + (f", validating on {len(valid_rows):,}" if valid_rows else "")
            + f" -> {out_dir}"
        )
        model.fit(train_rows, valid=valid_rows, run_dir=out_dir)
        model.save(out_dir)
        _write_layout(out_dir, layout, str(data), len(train_rows), len(valid_rows or ()))
        report: dict[str, dict[str, float]] = {}
        if valid_rows:
            err.print(f"scoring {len(valid_rows):,} validation rows ({samples} samples each)")
            report = model.evaluate(valid_rows, samples=samples, level=level, seed=seed)
        _print_train_summary(model, out_dir, len(train_rows), len(valid_rows or ()))
        if report:
            counts = {t: sum(t in e.y for e in valid_rows or ()) for t in report}
            report = {t: {"n": counts[t], **m} for t, m in report.items()}
            out.print(metrics_table(report, f"validation ({samples} samples per input)", level))


def _write_layout(directory: Path, layout: Layout, data: str, n_train: int, n_valid: int) -> None:
    meta = {
        "layout": asdict(layout),
        "data": str(data),
        "train_rows": n_train,
        "valid_rows": n_valid,
    }
    (directory / LAYOUT_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def _print_train_summary(model: RegressionLM, directory: Path, n_train: int, n_valid: int) -> None:
    result = model.result
    assert model.net is not None and result is not None  # fit() just ran
    best = result.best_epoch if result.best_epoch >= 1 else None
    out.print(
        _kv_table(
            "training run",
            {
                "checkpoint": str(directory),
                "targets": ", ".join(model.targets or ()),
                "params": fmt(model.net.num_params(), "int"),
                "train rows": fmt(n_train, "int"),
                "valid rows": fmt(n_valid, "int"),
                "epochs": str(result.epochs),
                "best epoch": fmt(best, "int"),
                "stopped by": result.stopped,
                "seconds": f"{result.seconds:.1f}",
            },
        )
    )


# ----------------------------------------------------------------------------------------------
# predict


def _literal_inputs(inputs: Sequence[str], as_text: bool) -> list[str | dict[str, Any]]:
    xs: list[str | dict[str, Any]] = []
    for s in inputs:
        if as_text or not s.lstrip().startswith("{"):
            xs.append(s)
            continue
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"input {_show(s)!r} looks like a JSON object but does not parse ({e}): "
                "fix it, or pass --text to read every INPUT as a literal string"
            ) from e
        if not isinstance(obj, dict):
            raise ValueError(f"input {_show(s)!r} is not a JSON object")
        xs.append(obj)
    return xs


def _chunks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    it = iter(rows)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


class RowWriter:
    """Streams output rows to JSONL (``-`` is stdout), CSV or Parquet, chunk by chunk."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.kind: FileKind = "jsonl" if path is None else file_kind(path)
        self._file: Any = None
        self._csv: csv.DictWriter | None = None
        self._parquet: Any = None
        self._schema: Any = None  # the first chunk's Arrow schema; later chunks must match

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        from .data import _open_text

        if not records:
            return
        if self.kind == "parquet":
            self._write_parquet(records)
            return
        if self._file is None:
            self._file = sys.stdout if self.path is None else _open_text(self.path, "wt")
        if self.kind == "jsonl":
            for rec in records:
                self._file.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
            return
        if self._csv is None:
            self._csv = csv.DictWriter(self._file, fieldnames=list(records[0]), lineterminator="\n")
            self._csv.writeheader()
        for rec in records:
            extra = set(rec) - set(self._csv.fieldnames)
            if extra:
                raise ValueError(
                    f"a row has columns {sorted(extra)} that earlier rows lack; CSV needs one "
                    "header: write JSONL output instead"
                )
            self._csv.writerow({k: _csv_cell(v) for k, v in rec.items()})

    def _write_parquet(self, records: Sequence[dict[str, Any]]) -> None:
        import pyarrow as pa

        from .data import _pyarrow_parquet

        pq = _pyarrow_parquet()
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

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._file is not None and self._file is not sys.stdout:
            self._file.close()


def _csv_cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, dict | list | tuple):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    if isinstance(v, float):
        return repr(v)
    return v


def _clean(v: Any) -> float:
    # Decoded numbers carry at most ~10 significant digits; quantile interpolation adds float
    # noise (4.913999999999999), so round to 12 to write what the model actually said.
    return float(f"{float(v):.12g}")


def _pred_columns(names: Sequence[str]) -> list[str]:
    return [f"{t}_{s}" for t in names for s in ("pred", "lo", "hi")]


@app.command()
def predict(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Checkpoint directory (rlm train --out).")
    ],
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="INPUT",
            help="Inputs to predict: each a literal string, or a JSON object text such as "
            '\'{"crf": 23, "preset": "fast"}\'.',
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="Read inputs from a .jsonl / .csv / .parquet file instead ('-': JSON Lines on "
            "stdin). Rows are read like `rlm train` read its data.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write every input row plus <target>_pred, <target>_lo and <target>_hi "
            "columns to this .jsonl / .csv / .parquet file ('-': JSON Lines on stdout). "
            "Without it, a table is printed.",
        ),
    ] = None,
    samples: Annotated[
        int, typer.Option(min=1, help="Sampled decodes per input; the median is the prediction.")
    ] = 64,
    level: Annotated[
        float, typer.Option(help="Central interval level of the _lo / _hi columns, in (0, 1).")
    ] = 0.8,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    chunk_size: Annotated[
        int, typer.Option(min=1, help="Rows read, predicted and written at a time.")
    ] = 1024,
    text: Annotated[
        bool, typer.Option("--text", help="Treat every INPUT as a literal string, even '{...}'.")
    ] = False,
    x_key: SavedXKey = None,
    x_columns: SavedXColumns = None,
    x_column: SavedXColumn = None,
) -> None:
    """Predict targets with intervals for INPUTs or a file of rows."""
    with user_errors():
        check_level(level, "--level")
        if bool(inputs) == (file is not None):
            raise ValueError("give INPUT arguments or --file PATH (exactly one of them)")
        stdin = file is not None and str(file) == "-"
        if file is not None and not stdin and not file.is_file():
            raise ValueError(f"--file {file} does not exist or is not a file")
        if output is not None and str(output) != "-":
            file_kind(output)  # fail on a bad output name before any work
            if file is not None and not stdin and output.resolve() == file.resolve():
                raise ValueError("--output is the input file: write to another path")
        _check_checkpoint(directory)
        layout = _layout(directory, x_key, x_columns, x_column)
        model = load_model(directory)
        names = list(model.targets or ())
        cols = _pred_columns(names)

        if inputs:
            xs = _literal_inputs(inputs, text)
            rows: Iterable[Row] = [({"input": x}, {"input": x}) for x in xs]
            nested_layout = Layout(x_key="input")
            nested = True
        else:
            rows = iter_rows(None if stdin else file, chunk_size)
            first = next(iter(rows), None)  # peek: nested or flat?
            if first is None:
                raise ValueError(f"{file} has no rows")
            rows = itertools.chain([first], rows)
            nested_layout = layout
            src_kind = "jsonl" if stdin or file is None else file_kind(file)
            nested = src_kind == "jsonl" and _is_nested(first[1], layout, names)

        writer = None
        if output is not None:
            writer = RowWriter(None if str(output) == "-" else output)
        shown: list[tuple[Any, np.ndarray, np.ndarray, np.ndarray]] = []  # for the table
        skip = {*names, "id", "split", *cols}
        index, keep_raw = 0, writer is not None and writer.kind == "csv"
        try:
            for chunk in _chunks(rows, chunk_size):
                xs_chunk = [
                    _input_of(parsed, index + i, nested_layout, nested, skip)
                    for i, (_, parsed) in enumerate(chunk)
                ]
                index += len(chunk)
                p = model.distribution(xs_chunk, samples=samples, level=level, seed=seed)
                if writer is None:
                    shown += zip(xs_chunk, p.point, p.lower, p.upper, strict=True)
                    continue
                records = []
                for i, (raw, parsed) in enumerate(chunk):
                    rec = dict(raw if keep_raw else parsed)
                    for k, t in enumerate(names):
                        rec[f"{t}_pred"] = _clean(p.point[i, k])
                        rec[f"{t}_lo"] = _clean(p.lower[i, k])
                        rec[f"{t}_hi"] = _clean(p.upper[i, k])
                    records.append(rec)
                writer.write(records)
        finally:
            if writer is not None:
                writer.close()
        if writer is not None:
            if writer.path is not None:
                err.print(f"wrote {index:,} rows to {output}")
            return
        table = Table(title=f"predictions (median of {samples} samples, {level:.0%} interval)")
        table.add_column("input", overflow="fold")
        for t in names:
            table.add_column(t, justify="right")
            table.add_column(f"{level:.0%} interval", justify="right")
        for x, point, lower, upper in shown:
            cells = []
            for k in range(len(names)):
                cells += [fmt(float(point[k])), f"[{fmt(float(lower[k]))}, {fmt(float(upper[k]))}]"]
            table.add_row(_show(x, 120), *cells)
        out.print(table)


# ----------------------------------------------------------------------------------------------
# eval


@app.command("eval")
def evaluate(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Checkpoint directory (rlm train --out).")
    ],
    data: Annotated[
        Path, typer.Argument(metavar="DATA", help="Labeled .jsonl / .csv / .parquet file.")
    ],
    split: Annotated[
        str | None,
        typer.Option(
            help="Rows of this split are scored. Default: 'test' when DATA has a split field, "
            "else every row; 'all' scores every row."
        ),
    ] = None,
    samples: Annotated[
        int, typer.Option(min=1, help="Sampled decodes per input; the median is the prediction.")
    ] = 64,
    level: Annotated[
        float, typer.Option(help="Central interval level for coverage and width, in (0, 1).")
    ] = 0.8,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="Score the first N rows only.")] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            help="Write a Markdown report here, with predicted-vs-true, residual and "
            "calibration plots (PNG) beside it. Needs matplotlib (pip install rlm\\[plots])."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print metrics as JSON (target -> metric -> value).")
    ] = False,
    x_key: SavedXKey = None,
    x_columns: SavedXColumns = None,
    x_column: SavedXColumn = None,
) -> None:
    """Score a checkpoint on labeled data: Spearman, Kendall, MAE, MAPE, R², coverage, width."""
    with user_errors():
        check_level(level, "--level")
        if report is not None and report.suffix.lower() != ".md":
            raise ValueError(f"--report {report}: use a Markdown file name ending in .md")
        if report is not None:
            from .plots import require_matplotlib

            require_matplotlib()
        _check_checkpoint(directory)
        layout = _layout(directory, x_key, x_columns, x_column)
        names = _checkpoint_targets(directory)
        rows = read_labeled(data, names, layout, any_target=True)
        scope = "all rows"
        if split != "all":
            picked = split_rows(rows, split or "test", data)
            if picked is None:
                if split is not None:
                    raise ValueError(f"--split {split!r} given, but {data} has no split field")
                err.print(f"note: {data} has no split field: scoring every row")
            elif not picked:
                raise ValueError(
                    f"{data} has no rows of split {split or 'test'!r}; its splits: "
                    f"{_splits_of(rows)}: set --split (or --split all)"
                )
            else:
                rows, scope = picked, f"split {split or 'test'!r}"
        if limit is not None:
            rows = rows[:limit]
        model = load_model(directory)
        pred = model.distribution(rows, samples=samples, level=level, seed=seed)
        from .api import score  # torch-backed module: imported only when evaluating

        metrics = score(rows, names, pred)
        if not metrics:
            raise ValueError(
                f"no target of the model ({names}) has 2 or more labeled rows in {data}"
            )
        if report is not None:
            _write_report(
                report,
                directory,
                data,
                scope,
                rows,
                names,
                pred,
                metrics,
                level,
                model.calibration,
            )
            err.print(f"wrote {report}")
        if as_json:
            typer.echo(json.dumps(metrics, indent=2))
            return
        title = f"{data.name}, {scope}: {len(rows):,} rows, {samples} samples per input"
        out.print(metrics_table(metrics, title, level))


def _checkpoint_targets(directory: Path) -> list[str]:
    meta = json.loads((directory / "config.json").read_text())
    return list(meta["targets"]["names"])


def _write_report(
    path: Path,
    directory: Path,
    data: Path,
    scope: str,
    rows: Sequence[Example],
    names: Sequence[str],
    pred: Predictions,
    metrics: Mapping[str, Mapping[str, float]],
    level: float,
    calibration: IntervalCalibration | None,
) -> None:
    import numpy as np

    from . import plots
    from .calibration import quantile_table

    path.parent.mkdir(parents=True, exist_ok=True)
    levels = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    lines = [
        f"# rlm evaluation: `{directory.name}`",
        "",
        f"- checkpoint: `{directory}`",
        f"- data: `{data}`, {scope}: {len(rows):,} rows",
        f"- samples per input: {pred.draws.shape[1]}, interval level: {level:.0%}",
        f"- written: {time.strftime('%Y-%m-%d %H:%M:%S')}",
        "",
        "| target | " + " | ".join(h for _, h, _ in METRICS) + " |",
        "|---|" + "---:|" * len(METRICS),
    ]
    for name, m in metrics.items():
        lines.append(
            f"| {name} | " + " | ".join(fmt(m.get(k), kind) for k, _, kind in METRICS) + " |"
        )
    lines.append("")
    stem = path.stem
    for k, name in enumerate(names):
        if name not in metrics:
            continue
        have = [i for i, e in enumerate(rows) if name in e.y]
        true = np.array([rows[i].y[name] for i in have])
        base = f"{stem}_{_safe_name(name)}"
        rho = metrics[name].get("spearman")
        title = f"{name} (Spearman {fmt(rho, 'corr')})"
        plots.scatter(
            true,
            pred.point[have, k],
            path.parent / f"{base}_scatter.png",
            title,
            lower=pred.lower[have, k],
            upper=pred.upper[have, k],
        )
        plots.residuals(true, pred.point[have, k], path.parent / f"{base}_residuals.png", name)
        empirical = []
        for lv in levels:
            a = (1 - lv) / 2
            lo, hi = quantile_table(pred.draws[have], [a, 1 - a], calibration)[:, :, k]
            empirical.append(float(np.mean((true >= lo) & (true <= hi))))
        plots.calibration(levels, empirical, path.parent / f"{base}_calibration.png", name)
        lines += [
            f"## {name}",
            "",
            f"![predicted vs true, {level:.0%} intervals]({base}_scatter.png)",
            "",
            f"![residuals by true value]({base}_residuals.png)",
            "",
            f"![interval calibration]({base}_calibration.png)",
            "",
        ]
    path.write_text("\n".join(lines))


# ----------------------------------------------------------------------------------------------
# demo


@dataclass(frozen=True)
class DemoPlan:
    """What `rlm demo` trains; --quick swaps in a tiny model for tests and smoke runs."""

    preset: str
    time_budget_s: float
    max_epochs: int
    batch_size: int
    lr: float
    samples: int


DEMO_FULL = DemoPlan(
    preset="small", time_budget_s=140.0, max_epochs=30, batch_size=32, lr=1e-3, samples=64
)
DEMO_QUICK = DemoPlan(
    preset="tiny", time_budget_s=8.0, max_epochs=15, batch_size=32, lr=3e-3, samples=16
)


@app.command()
def demo(
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Where the model, metrics and scatter.png go.")
    ] = Path("runs/demo"),
    quick: Annotated[
        bool, typer.Option("--quick", help="Tiny model, ~20 s: a smoke test of the whole path.")
    ] = False,
    time_budget: Annotated[
        float | None,
        typer.Option(min=1.0, help="Override the training time budget, in seconds."),
    ] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
) -> None:
    """Learn NAS-Bench-201 cell -> CIFAR-10 accuracy from 1,000 examples, compare with a baseline.

    Trains a small model (each cell edge is one input token) with early stopping on the demo
    valid split, scores it on the test split next to a predict-the-mean baseline, writes
    DIR/scatter.png and the checkpoint to DIR, and predicts one unseen cell with its interval.
    """
    with user_errors():
        from .plots import require_matplotlib

        require_matplotlib()  # the demo ends with a plot: say so before training, not after
        _run_demo(out_dir, DEMO_QUICK if quick else DEMO_FULL, time_budget, not no_progress)


def _run_demo(out_dir: Path, plan: DemoPlan, budget: float | None, progress: bool) -> None:
    import numpy as np

    from . import plots
    from .api import RegressionLM
    from .config import TrainConfig
    from .data import load_demo, subset
    from .metrics import regression_metrics

    start = time.perf_counter()
    train_rows = subset(load_demo("nas201", "train"), DEMO_TRAIN_ROWS, seed=0)
    valid_rows = load_demo("nas201", "valid")
    test_rows = load_demo("nas201", "test")
    out.rule("rlm demo: NAS-Bench-201 cell -> CIFAR-10 test accuracy (%)")
    out.print(
        f"{len(train_rows):,} train / {len(valid_rows):,} valid / {len(test_rows):,} test cells; "
        f"input e.g. {test_rows[0].x}"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.jsonl").unlink(missing_ok=True)  # the demo owns its directory
    model = RegressionLM(
        model=plan.preset,
        targets=[DEMO_TARGET],
        vocab=VocabConfig(pattern=DEMO_PATTERN),
        train=TrainConfig(
            lr=plan.lr,
            batch_size=plan.batch_size,
            max_epochs=plan.max_epochs,
            time_budget_s=budget if budget is not None else plan.time_budget_s,
            progress=progress,
        ),
    )
    model.fit(train_rows, valid=valid_rows, run_dir=out_dir)
    model.save(out_dir)
    _write_layout(
        out_dir, Layout(), "rlm.data.load_demo('nas201')", len(train_rows), len(valid_rows)
    )
    result = model.result
    assert result is not None and model.net is not None

    pred = model.distribution(test_rows, samples=plan.samples, level=0.8, seed=0)
    true = np.array([e.y[DEMO_TARGET] for e in test_rows])
    ours = regression_metrics(
        true, pred.point[:, 0], lower=pred.lower[:, 0], upper=pred.upper[:, 0]
    )
    # Baseline: the training mean for every cell, with the training 10-90% range as its interval.
    ytr = np.array([e.y[DEMO_TARGET] for e in train_rows])
    const = np.full_like(true, ytr.mean())
    base = regression_metrics(
        true,
        const,
        lower=np.full_like(true, np.quantile(ytr, 0.1)),
        upper=np.full_like(true, np.quantile(ytr, 0.9)),
    )
    params = model.net.num_params()
    table = Table(
        title=f"test split, {len(test_rows)} unseen cells ({plan.samples} samples per input)",
        title_justify="left",
    )
    table.add_column("metric")
    table.add_column(f"rlm {plan.preset} ({params / 1e6:.2f}M params)", justify="right")
    table.add_column("mean baseline", justify="right")
    for key, label, kind in (
        ("spearman", "Spearman", "corr"),
        ("kendall", "Kendall", "corr"),
        ("mae", "MAE (accuracy points)", "g"),
        ("r2", "R²", "corr"),
        ("coverage", "80% interval coverage", "pct"),
        ("width", "80% interval width", "g"),
    ):
        table.add_row(label, fmt(ours.get(key), kind), fmt(base.get(key), kind))
    out.print(table)
    best = result.best_epoch if result.best_epoch >= 1 else None
    out.print(
        f"trained {result.epochs} epoch{'s' if result.epochs != 1 else ''} in "
        f"{result.seconds:.0f} s (best epoch {fmt(best, 'int')}, stopped by {result.stopped})"
    )
    scatter = plots.scatter(
        true,
        pred.point[:, 0],
        out_dir / "scatter.png",
        f"NAS-Bench-201 CIFAR-10 accuracy, test (Spearman {fmt(ours.get('spearman'), 'corr')})",
        lower=pred.lower[:, 0],
        upper=pred.upper[:, 0],
    )
    # One unseen cell, predicted from its string alone, as a user would.
    cell = test_rows[0]
    one = model.distribution([cell.x], samples=plan.samples, level=0.8, seed=1)
    out.print(
        f"\nnew cell {cell.x}\n  predicted {fmt(float(one.point[0, 0]))}%, 80% interval "
        f"[{fmt(float(one.lower[0, 0]))}, {fmt(float(one.upper[0, 0]))}]; "
        f"true {fmt(cell.y[DEMO_TARGET])}%"
    )
    out.print(
        f"\nsaved the model to {out_dir}/ and the plot to {scatter} "
        f"({time.perf_counter() - start:.0f} s in all). Next:\n"
        f"  rlm predict {out_dir} '{cell.x}'\n"
        f"  rlm info {out_dir}",
        soft_wrap=True,  # keep the commands copy-pasteable: no line breaks inside them
    )


# ----------------------------------------------------------------------------------------------
# info


def safetensors_params(path: Path) -> int:
    """Parameter count from a safetensors header (8-byte length + JSON), without loading torch."""
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


@app.command()
def info(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Checkpoint directory (rlm train --out).")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print everything as one JSON object.")
    ] = False,
) -> None:
    """Show a checkpoint's configuration and training summary (fast: does not load torch)."""
    with user_errors():
        _check_checkpoint(directory)
        from .vocab import InputTokenizer

        meta = json.loads((directory / "config.json").read_text())
        tok = InputTokenizer.load(directory / "tokenizer.json")
        params = safetensors_params(directory / "model.safetensors")
        history = _read_history(directory / "metrics.jsonl")
        layout = (
            json.loads((directory / LAYOUT_FILE).read_text())
            if (directory / LAYOUT_FILE).is_file()
            else None
        )
        summary = {
            "checkpoint": str(directory),
            "rlm_version": meta.get("rlm_version"),
            "params": params,
            "targets": meta["targets"]["names"],
            "input_vocab_size": tok.vocab_size,
            "epochs_logged": len(history),
            # intervals are calibrated when train had validation rows (split-conformal)
            "calibrated_on_rows": (meta.get("calibration") or {}).get("rows"),
        }
        losses = [r["valid_loss"] for r in history if "valid_loss" in r]
        if losses:
            summary["best_valid_loss"] = min(losses)
        if as_json:
            full = {
                "summary": summary,
                "model": meta["model"],
                "vocab": tok.config.to_dict(),
                "numbers": meta["numbers"],
                "targets": meta["targets"],
                "serializer": meta["serializer"],
                "train": meta["train"],
                "training": meta.get("training"),
                "calibration": meta.get("calibration"),
                "cli": layout,
            }
            typer.echo(json.dumps(full, indent=2))
            return
        shown = dict(summary)
        shown["params"] = fmt(params, "int")
        shown["targets"] = ", ".join(summary["targets"])
        out.print(_kv_table("checkpoint", {k: str(v) for k, v in shown.items()}))
        out.print(_kv_table("model", meta["model"]))
        tgt = Table(title="targets (number codec)", title_justify="left")
        for col in ("target", "scheme", "digits", "range / bounds", "fill"):
            tgt.add_column(col)
        for name, num, fill in zip(
            meta["targets"]["names"],
            meta["targets"]["numbers"],
            meta["targets"]["fill"],
            strict=True,
        ):
            tgt.add_row(name, num["scheme"], _digits(num), _range(num), fmt(fill))
        out.print(tgt)
        out.print(_kv_table("input vocabulary", tok.config.to_dict()))
        out.print(_kv_table("serializer", meta["serializer"]))
        out.print(_kv_table("training config", meta["train"]))
        training = meta.get("training")
        if training:
            out.print(_kv_table("training run", training))
        if layout:
            out.print(_kv_table("data (rlm train)", layout))


def _digits(num: Mapping[str, Any]) -> str:
    if num["scheme"] == "ieee":
        return f"{num['mantissa_digits']} mantissa, {num['exponent_digits']} exponent (base {num['base']})"
    return f"{num['mantissa_digits']} (base {num['base']})"


def _range(num: Mapping[str, Any]) -> str:
    if num["scheme"] == "normalized":
        lo, hi = num["bounds"]
        return f"[{fmt(lo)}, {fmt(hi)}]"
    if num["scheme"] == "p10":
        return f"exponents {num['exponent_min']}..{num['exponent_max']}"
    # ieee: d.ddd x B^e with |e| <= B^E - 1, so nonzero magnitudes in [B^-emax, B^(emax+1))
    b, e = num["base"], num["base"] ** num["exponent_digits"] - 1
    return f"0 or |y| in [{b}^-{e}, {b}^{e + 1})"


def _read_history(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


# ----------------------------------------------------------------------------------------------
# serve


def _named_checkpoints(specs: Sequence[str]) -> dict[str, Path]:
    """'DIR' or 'NAME=DIR' -> {name: directory}; a plain DIR is served under its folder name."""
    named: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        directory = Path(path) if sep else Path(spec)
        if not sep:
            name = directory.resolve().name or "model"
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(
                f"model name {name!r}: use letters, digits, '_', '.' or '-' (NAME=DIR)"
            )
        if name in named:
            raise ValueError(f"two models named {name!r}: name them with NAME=DIR")
        _check_checkpoint(directory)
        named[name] = directory
    return named


def _unit_labels(specs: Sequence[str] | None) -> dict[str, str]:
    units: dict[str, str] = {}
    for spec in specs or ():
        target, sep, unit = spec.partition("=")
        if not sep or not target or not unit:
            raise ValueError(f"--unit {spec!r}: write TARGET=UNIT, e.g. --unit latency_ms=ms")
        units[target] = unit
    return units


@app.command()
def serve(
    directories: Annotated[
        list[str],
        typer.Argument(
            metavar="DIR",
            help="Checkpoint directories (rlm train --out). NAME=DIR serves one under NAME "
            "(default: the folder's name); the first is the default model.",
        ),
    ],
    host: Annotated[
        str, typer.Option(help="Address to listen on; the default keeps it on this machine.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    unit: Annotated[
        list[str] | None,
        typer.Option(
            "--unit",
            metavar="TARGET=UNIT",
            help="Unit label for a target, shown in responses and the playground; repeatable.",
        ),
    ] = None,
    samples: Annotated[
        int, typer.Option(min=1, help="Samples per input when a request does not say.")
    ] = 64,
    max_samples: Annotated[int, typer.Option(min=1, help="Most samples per input.")] = 256,
    max_inputs: Annotated[int, typer.Option(min=1, help="Most inputs in one request.")] = 64,
    max_input_chars: Annotated[
        int, typer.Option(min=1, help="Most characters in one input, once serialised.")
    ] = 20_000,
    max_body_bytes: Annotated[
        int, typer.Option(min=1, help="Largest request body, in bytes.")
    ] = 1_000_000,
    max_batch: Annotated[
        int,
        typer.Option(min=1, help="Most inputs in one model call across requests (1: no batching)."),
    ] = 256,
    batch_wait_ms: Annotated[
        float,
        typer.Option(min=0.0, help="How long a batch's first request may wait for others, in ms."),
    ] = 5.0,
    max_queue: Annotated[
        int, typer.Option(min=1, help="Requests waiting per model before answering 503.")
    ] = 256,
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch threads (default: torch's choice).")
    ] = None,
) -> None:
    """Serve models over HTTP: POST /predict (micro-batched), GET /health and /model, API docs
    at /docs, and a playground page at / that plots the predicted distribution of an input."""
    with user_errors():
        try:
            import uvicorn

            from .server import ServeConfig, create_app
        except ImportError as e:
            raise ValueError(
                f"rlm serve needs the serve extra ({e.name or e} is missing): "
                "pip install 'rlm[serve]'"
            ) from e
        config = ServeConfig(
            max_inputs=max_inputs,
            max_samples=max_samples,
            default_samples=samples,
            max_input_chars=max_input_chars,
            max_body_bytes=max_body_bytes,
            max_batch=max_batch,
            batch_wait_ms=batch_wait_ms,
            max_queue=max_queue,
        )
        named = _named_checkpoints(directories)
        labels = _unit_labels(unit)
        models = {name: load_model(d) for name, d in named.items()}
        known = {t for m in models.values() for t in m.targets or ()}
        unknown = sorted(set(labels) - known)
        if unknown:
            raise ValueError(f"--unit for {unknown}: the models' targets are {sorted(known)}")
        units = {
            name: {t: u for t, u in labels.items() if t in (m.targets or ())}
            for name, m in models.items()
        }
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        server_app = create_app(models, config, units=units, directories=named)
    shown = f"[{host}]" if ":" in host else host
    err.print(
        f"serving {', '.join(models)} on http://{shown}:{port}/ (playground at /, API docs at "
        "/docs); Ctrl+C stops",
        soft_wrap=True,
    )
    uvicorn.run(server_app, host=host, port=port, log_level="info")


def main() -> None:
    """Entry point of the ``rlm`` script."""
    app()
