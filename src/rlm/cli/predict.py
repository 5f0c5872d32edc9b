"""``rlm predict``: targets with intervals for literal inputs or a file of rows.

A file is streamed chunk by chunk (``rlm.io.iter_rows`` in, ``rlm.io.RowWriter`` out), so memory
stays bounded whatever its length; a CSV output writes each input row back as it was read.
``--workers N`` predicts the chunks in N processes (``rlm.predict.pool``), written in order and
identical to one process's output; a progress bar on stderr shows rows and rows/s.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from ..checkpoint import check_checkpoint
from ..io import Layout, RowWriter, file_kind, iter_rows, take_input
from ..io.rows import Row, row_label
from ..predict.metrics import check_level
from ..predict.pool import Ask, Summary, ordered_map, summarise
from .app import app, err, out, user_errors
from .files import exit_summary, load_model, saved_layout
from .format import fmt, show
from .options import (
    CheckpointDir,
    Device,
    EarlyExit,
    NoProgress,
    PrecisionKind,
    PrecisionOption,
    Runtime,
    Samples,
    SamplingSeed,
    SavedXColumn,
    SavedXColumns,
    SavedXKey,
    Threads,
)

if TYPE_CHECKING:
    import numpy as np


Inputs = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="INPUT",
        help="Inputs to predict: each a literal string, or a JSON object text such as "
        '\'{"crf": 23, "preset": "fast"}\'.',
    ),
]
InputFile = Annotated[
    Path | None,
    typer.Option(
        "--file",
        "-f",
        help="Read inputs from a .jsonl / .csv / .parquet file instead ('-': JSON Lines on "
        "stdin). Rows are read like `rlm train` read its data.",
    ),
]
Output = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Write every input row plus <target>_pred, <target>_lo and <target>_hi "
        "columns to this .jsonl / .csv / .parquet file ('-': JSON Lines on stdout). "
        "Without it, a table is printed.",
    ),
]
IntervalLevel = Annotated[
    float, typer.Option(help="Central interval level of the _lo / _hi columns, in (0, 1).")
]
ChunkSize = Annotated[int, typer.Option(min=1, help="Rows read, predicted and written at a time.")]
Workers = Annotated[
    int,
    typer.Option(
        min=1,
        help="Processes predicting chunks in parallel, each with the model and cores/N "
        "threads (or --threads); the output is the same as one process's.",
    ),
]
AsText = Annotated[
    bool, typer.Option("--text", help="Treat every INPUT as a literal string, even '{...}'.")
]

Shown = list[tuple[Any, "np.ndarray", "np.ndarray", "np.ndarray"]]  # input, point, lower, upper


@app.command()
def predict(
    directory: CheckpointDir,
    inputs: Inputs = None,
    file: InputFile = None,
    output: Output = None,
    samples: Samples = 64,
    level: IntervalLevel = 0.8,
    seed: SamplingSeed = 0,
    chunk_size: ChunkSize = 1024,
    text: AsText = False,
    x_key: SavedXKey = None,
    x_columns: SavedXColumns = None,
    x_column: SavedXColumn = None,
    runtime: Runtime = "auto",
    threads: Threads = None,
    early_exit: EarlyExit = None,
    device: Device = "auto",
    precision: PrecisionOption = PrecisionKind.auto,
    workers: Workers = 1,
    no_progress: NoProgress = False,
) -> None:
    """Predict targets with intervals for INPUTs or a file of rows."""
    with user_errors():
        check_level(level, "--level")
        if workers > 1 and early_exit is not None:
            raise ValueError(
                "--early-exit reports its exit layers from one process: use --workers 1"
            )
        if bool(inputs) == (file is not None):
            raise ValueError("give INPUT arguments or --file PATH (exactly one of them)")
        stdin = file is not None and str(file) == "-"
        if file is not None and not stdin and not file.is_file():
            raise ValueError(f"--file {file} does not exist or is not a file")
        if output is not None and str(output) != "-":
            file_kind(output)  # fail on a bad output name before any work
            if file is not None and not stdin and output.resolve() == file.resolve():
                raise ValueError("--output is the input file: write to another path")
        check_checkpoint(directory, deployment=True)
        layout = saved_layout(directory, x_key, x_columns, x_column)
        model = load_model(directory, runtime, threads, early_exit, device, precision.value)
        names = list(model.targets or ())
        if inputs:
            xs = _literal_inputs(inputs, text)
            rows: Iterable[Row] = [({"input": x}, {"input": x}) for x in xs]
            layout, nested = Layout(x_key="input"), True
        else:
            rows = iter_rows(None if stdin else file, chunk_size=chunk_size)
            first = next(iter(rows), None)  # peek: nested or flat?
            if first is None:
                raise ValueError(f"{file} has no rows")
            rows = itertools.chain([first], rows)
            src_kind = "jsonl" if stdin or file is None else file_kind(file)
            nested = src_kind == "jsonl" and layout.is_nested(first[1], names)
        writer = None if output is None else RowWriter(None if str(output) == "-" else output)
        ask = Ask(samples=samples, level=level, seed=seed)
        chunks = _inputs(rows, layout, nested, names, chunk_size)
        if workers > 1:
            # each worker loads the model itself, with its share of the cores
            answers = ordered_map(
                partial(load_model, directory, runtime, device=device, precision=precision.value),
                chunks, lambda chunk: chunk[1], ask, workers=workers, threads=threads,
            )  # fmt: skip
        else:
            answers = ((chunk, summarise(model, chunk[1], ask)) for chunk in chunks)
        progress = _progress(not no_progress and writer is not None)
        with writer or contextlib.nullcontext(), progress or contextlib.nullcontext():
            shown = _write(answers, names, writer, progress)
        if line := exit_summary(model):
            err.print(line)
        if writer is not None:
            if writer.path is not None:
                err.print(f"wrote {writer.rows:,} rows to {output}")
            return
        _print_table(shown, names, samples, level)


Chunk = tuple[list[Row], list[Any]]  # rows as read, and their model inputs


def _inputs(
    rows: Iterable[Row], layout: Layout, nested: bool, names: Sequence[str], chunk_size: int
) -> Iterator[Chunk]:
    """The rows in chunks of ``chunk_size``, each with its model inputs."""
    skip = {*names, "id", "split", *_pred_columns(names)}
    index = 0
    for chunk in _chunks(rows, chunk_size):
        xs = [
            take_input(parsed, row_label(parsed, index + i), layout, nested=nested, skip=skip)
            for i, (_, parsed) in enumerate(chunk)
        ]
        index += len(chunk)
        yield chunk, xs


def _write(
    answers: Iterable[tuple[Chunk, Summary]],
    names: Sequence[str],
    writer: RowWriter | None,
    progress: Any,
) -> Shown:
    """Each chunk's rows with their predictions to ``writer``, or returned for the table."""
    keep_raw = writer is not None and writer.kind == "csv"
    shown: Shown = []
    task = None if progress is None else progress.add_task("predicting", rows=0, rate=0.0)
    start = time.perf_counter()
    for (chunk, xs), p in answers:
        if writer is None:
            shown += zip(xs, p.point, p.lower, p.upper, strict=True)
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
        if progress is not None:
            rate = writer.rows / max(time.perf_counter() - start, 1e-9)
            progress.update(task, rows=writer.rows, rate=rate)
    return shown


def _progress(enabled: bool) -> Any:
    """Rows written and rows/s on stderr (only where stderr is a terminal), or None."""
    if not enabled or not err.is_terminal:
        return None
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.fields[rows]:,} rows"),
        TextColumn("{task.fields[rate]:,.0f} rows/s"),
        TimeElapsedColumn(),
        console=err,
    )


def _print_table(shown: Shown, names: Sequence[str], samples: int, level: float) -> None:
    table = Table(title=f"predictions (median of {samples} samples, {level:.0%} interval)")
    table.add_column("input", overflow="fold")
    for t in names:
        table.add_column(t, justify="right")
        table.add_column(f"{level:.0%} interval", justify="right")
    for x, point, lower, upper in shown:
        cells = []
        for k in range(len(names)):
            cells += [fmt(float(point[k])), f"[{fmt(float(lower[k]))}, {fmt(float(upper[k]))}]"]
        table.add_row(show(x, 120), *cells)
    out.print(table)


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
                f"input {show(s)!r} looks like a JSON object but does not parse ({e}): "
                "fix it, or pass --text to read every INPUT as a literal string"
            ) from e
        if not isinstance(obj, dict):
            raise ValueError(f"input {show(s)!r} is not a JSON object")
        xs.append(obj)
    return xs


def _chunks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    it = iter(rows)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _clean(v: Any) -> float:
    # Decoded numbers carry at most ~10 significant digits; quantile interpolation adds float
    # noise (4.913999999999999), so round to 12 to write what the model actually said.
    return float(f"{float(v):.12g}")


def _pred_columns(names: Sequence[str]) -> list[str]:
    return [f"{t}_{s}" for t in names for s in ("pred", "lo", "hi")]
