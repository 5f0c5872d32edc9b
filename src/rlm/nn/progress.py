"""What a training run shows as it goes: a rich progress bar with loss and throughput, and one
JSON row per epoch in ``metrics.jsonl`` (and the log). Only rank 0 of a data-parallel run
shows anything (``rlm.nn.distributed``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import IO


def record(row: dict, metrics_file: IO[str] | None, log: Callable[[str], None] | None) -> None:
    """One epoch's row to metrics.jsonl (flushed: a crash keeps every finished epoch) and log."""
    if metrics_file:
        metrics_file.write(json.dumps(row) + "\n")
        metrics_file.flush()
    if log:
        log(json.dumps(row))


def progress_bar(enabled: bool, total: int):
    """A rich progress bar with loss and throughput, or None when disabled / not a terminal."""
    if not enabled:
        return None
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[ex_s]:.0f} ex/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )
    progress.start()
    return progress
