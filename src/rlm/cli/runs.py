"""How ``rlm train`` and ``rlm pretrain`` (and ``rlm compress``) take their rows and guard their
run directory: training and validation splits, a streamed file's other splits, and the
refusal to overwrite or the offer to resume a previous run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..io import Example
from ..io.readers import iter_examples
from ..io.stream import ExampleStream
from .app import err
from .files import split_rows, splits_of


def split_of(stream: ExampleStream, split: str) -> Iterator[Example]:
    """The rows of another split of a streamed file (validation: held in memory)."""
    for path in stream.paths:
        yield from iter_examples(
            path, targets=stream.targets, layout=stream.layout, y_key=stream.y_key, split=split
        )


def resumable(out_dir: Path) -> bool:
    """--resume: True when out_dir holds a run's saved state (or a model selection's candidates
    so far); a run killed before its first checkpoint has none and starts afresh; a finished
    run has nothing to resume."""
    from ..nn.resume import has_state

    if has_state(out_dir) or _selecting(out_dir):
        return True
    if (out_dir / "config.json").exists():
        raise ValueError(
            f"{out_dir} holds a finished run (its model is saved): nothing to resume; pass "
            "--overwrite to train again"
        )
    err.print(f"no saved training state in {out_dir}: training from the start", soft_wrap=True)
    return False


def _selecting(out_dir: Path) -> bool:
    """A model selection (``rlm.selection``) stopped before it chose: its candidates' runs."""
    from ..selection import CANDIDATES_DIR

    return (out_dir / CANDIDATES_DIR).is_dir() and not (out_dir / "config.json").exists()


def refuse_previous_run(out_dir: Path, overwrite: bool) -> None:
    from ..selection import CANDIDATES_DIR

    previous = any(
        (out_dir / name).exists() for name in ("metrics.jsonl", "config.json", CANDIDATES_DIR)
    )
    if previous and not overwrite:
        raise ValueError(
            f"{out_dir} already holds a run: pass --resume to continue it, --overwrite to "
            "replace it, or choose another --out"
        )


def train_valid(
    rows: list[Example],
    data: Path,
    valid_split: str | None,
    train_split: str,
    valid: Path | None,
) -> tuple[list[Example], list[Example] | None]:
    """Training rows and (when DATA has a split field and no --valid file) validation rows."""
    train_rows = split_rows(rows, train_split, data)
    if train_rows is None:  # no split field: the whole file trains
        if valid_split is not None and valid is None:
            raise ValueError(f"--valid-split {valid_split!r} given, but {data} has no splits")
        return list(rows), None
    if not train_rows:
        raise ValueError(
            f"{data} has no rows of split {train_split!r}; its splits: "
            f"{splits_of(rows)}: set --train-split"
        )
    if valid is not None:
        return train_rows, None
    valid_rows = split_rows(rows, valid_split or "valid", data)
    if not valid_rows and valid_split is not None:
        raise ValueError(
            f"{data} has no rows of split {valid_split!r}; its splits: "
            f"{splits_of(rows)}: set --valid-split"
        )
    return train_rows, valid_rows


def noted(valid_rows: list[Example] | None) -> list[Example] | None:
    if valid_rows:
        return valid_rows
    err.print(
        "note: no validation rows, so no early stopping and the last weights are kept; "
        "pass --valid PATH or give DATA a 'valid' split"
    )
    return None
