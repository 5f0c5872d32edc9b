"""``rlm eval``: score a checkpoint on labeled rows, optionally with a Markdown report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..checkpoint import check_checkpoint, checkpoint_targets
from ..io import Example
from ..predict.metrics import check_level
from ..predict.summary import score, score_by_task
from .app import app, err, out, user_errors
from .files import (
    exit_summary,
    load_model,
    read_labeled,
    renamed,
    saved_layout,
    split_rows,
    splits_of,
    tagged,
    target_renames,
)
from .format import metrics_table, task_table
from .options import (
    CheckpointDir,
    Device,
    EarlyExit,
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

LabeledData = Annotated[
    Path, typer.Argument(metavar="DATA", help="Labeled .jsonl / .csv / .parquet file.")
]
Split = Annotated[
    str | None,
    typer.Option(
        help="Rows of this split are scored. Default: 'test' when DATA has a split field, "
        "else every row; 'all' scores every row."
    ),
]
CoverageLevel = Annotated[
    float, typer.Option(help="Central interval level for coverage and width, in (0, 1).")
]
Limit = Annotated[int | None, typer.Option(min=1, help="Score the first N rows only.")]
Report = Annotated[
    Path | None,
    typer.Option(
        help="Write a Markdown report here, with predicted-vs-true, residual and "
        "calibration plots (PNG) beside it. Needs matplotlib (pip install rlm\\[plots])."
    ),
]
AsJson = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print metrics as JSON (target -> metric -> value; for a model with a task key, "
        '{"all": ..., "per_task": {task: {target: {metric: value}}}}).',
    ),
]


ScoredTargets = Annotated[
    list[str] | None,
    typer.Option(
        "--target",
        "-t",
        metavar="NAME[=AS]",
        help="DATA's targets to score (repeat), by default the model's: NAME=AS scores DATA's "
        "NAME as the model's target AS (a model fine-tuned with rlm finetune -t NAME=AS).",
    ),
]
ScoredTask = Annotated[
    str | None,
    typer.Option(help="For a model with a task key: the task DATA's rows belong to."),
]


@app.command("eval")
def evaluate(
    directory: CheckpointDir,
    data: LabeledData,
    split: Split = None,
    samples: Samples = 64,
    level: CoverageLevel = 0.8,
    seed: SamplingSeed = 0,
    limit: Limit = None,
    report: Report = None,
    as_json: AsJson = False,
    x_key: SavedXKey = None,
    x_columns: SavedXColumns = None,
    x_column: SavedXColumn = None,
    runtime: Runtime = "auto",
    threads: Threads = None,
    early_exit: EarlyExit = None,
    device: Device = "auto",
    precision: PrecisionOption = PrecisionKind.auto,
    target: ScoredTargets = None,
    task: ScoredTask = None,
) -> None:
    """Score a checkpoint on labeled data: Spearman, Kendall, MAE, MAPE, R², coverage, width."""
    with user_errors():
        check_level(level, "--level")
        if report is not None and report.suffix.lower() != ".md":
            raise ValueError(f"--report {report}: use a Markdown file name ending in .md")
        if report is not None:
            from ..predict.plots import require_matplotlib

            require_matplotlib()
        check_checkpoint(directory, deployment=True)
        layout = saved_layout(directory, x_key, x_columns, x_column)
        names = checkpoint_targets(directory)
        renames = target_renames(target or ())
        unknown = [a or n for n, a in renames.items() if (a or n) not in names]
        if unknown:
            raise ValueError(f"--target: the model writes {names}, not {unknown}: use NAME=AS")
        rows = read_labeled(data, list(renames) or names, layout, any_target=True)
        rows = [renamed(e, renames) for e in rows]
        rows, scope = _scored_rows(rows, data, split)
        if limit is not None:
            rows = rows[:limit]
        model = load_model(directory, runtime, threads, early_exit, device, precision.value)
        if task is not None:
            (rows,) = tagged(model, task, rows)
        pred = model.distribution(rows, samples=samples, level=level, seed=seed)
        if line := exit_summary(model):
            err.print(line)
        metrics = score(rows, names, pred)
        if not metrics:
            raise ValueError(
                f"no target of the model ({names}) has 2 or more labeled rows in {data}"
            )
        tasks = model.tasks_of(rows)
        if report is not None:
            from .report import write_report

            write_report(
                report, directory, data, scope, rows, names, pred, metrics, model.calibration, tasks
            )
            err.print(f"wrote {report}")
        per_task = None if tasks is None else score_by_task(rows, names, pred, tasks)
        if as_json:
            body = metrics if per_task is None else {"all": metrics, "per_task": per_task}
            typer.echo(json.dumps(body, indent=2))
            return
        title = f"{data.name}, {scope}: {len(rows):,} rows, {samples} samples per input"
        out.print(metrics_table(metrics, title, level))
        if per_task is not None:
            out.print(task_table(per_task, f"per task ({model.task_key})", level))


def _scored_rows(rows: list[Example], data: Path, split: str | None) -> tuple[list[Example], str]:
    """The rows of ``--split`` (default 'test' when the file has splits) and how to name them."""
    if split == "all":
        return rows, "all rows"
    picked = split_rows(rows, split or "test", data)
    if picked is None:
        if split is not None:
            raise ValueError(f"--split {split!r} given, but {data} has no split field")
        err.print(f"note: {data} has no split field: scoring every row")
        return rows, "all rows"
    if not picked:
        raise ValueError(
            f"{data} has no rows of split {split or 'test'!r}; its splits: "
            f"{splits_of(rows)}: set --split (or --split all)"
        )
    return picked, f"split {split or 'test'!r}"
