"""``rlm compress``: a smaller checkpoint from a trained one, by structured pruning.

Every block loses ``--prune`` of its attention heads and MLP neurons (the least important on the
training rows, ``rlm.nn.prune``), then a short recovery fine-tune on DATA (selected on its
validation rows) restores what it can. The result is an ordinary checkpoint: predict, eval,
serve or ``rlm export`` it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..checkpoint import check_checkpoint, checkpoint_targets
from .app import app, err, user_errors
from .files import LAYOUT_FILE, load_model, read_labeled, saved_layout, write_layout
from .options import CheckpointDir
from .train import TimeBudget, TrainSplit, ValidSplit, _train_valid

Data = Annotated[Path, typer.Argument(help="Training data (as for rlm train) for the recovery.")]
Out = Annotated[Path, typer.Option("--out", "-o", help="Directory of the smaller checkpoint.")]
Prune = Annotated[
    float,
    typer.Option(
        min=0.0, max=1.0, help="Fraction of every block's attention heads and MLP neurons removed."
    ),
]


@app.command()
def compress(
    directory: CheckpointDir,
    data: Data,
    out: Out,
    prune: Prune = 0.3,
    time_budget: TimeBudget = 60.0,
    train_split: TrainSplit = "train",
    valid_split: ValidSplit = None,
) -> None:
    """Prune a checkpoint's heads and neurons, fine-tune it briefly on DATA, save it to --out."""
    with user_errors():
        check_checkpoint(directory)
        if not 0.0 < prune < 1.0:
            raise ValueError(f"--prune {prune}: a fraction strictly between 0 and 1")
        if out.resolve() == directory.resolve():
            raise ValueError("--out is the checkpoint directory: write to another one")
        layout = saved_layout(directory, None, None, None)
        rows = read_labeled(data, checkpoint_targets(directory), layout, any_target=True)
        train_rows, valid_rows = _train_valid(rows, data, valid_split, train_split, None)
        model = load_model(directory, runtime="torch")
        from ..nn.config import TrainConfig

        recovery = TrainConfig(**{**model.train_config.to_dict(), "time_budget_s": time_budget})
        small = model.prune(train_rows, amount=prune, valid=valid_rows, train=recovery)  # type: ignore[attr-defined]
        small.save(out)
        if (directory / LAYOUT_FILE).is_file():
            write_layout(out, layout, str(data), len(train_rows), len(valid_rows or ()))
        err.print(
            f"pruned {prune:.0%} of every block: {model.num_params():,} -> "
            f"{small.num_params():,} parameters, saved to {out}"
        )
