"""``rlm compress``: a smaller or faster checkpoint from a trained one.

``--prune``: every block loses that fraction of its attention heads and MLP neurons (the least
important on the training rows, ``rlm.nn.prune``), then a short recovery fine-tune on DATA
(selected on its validation rows) restores what it can. ``--exits``: the head learns to read
those encoder layers too (a fine-tune on every exit's loss, ``rlm.nn.exits``), so predictions
with ``--early-exit`` stop easy inputs early. Both: pruned first. The result is an ordinary
checkpoint: predict, eval, serve or ``rlm export`` it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from ..checkpoint import check_checkpoint, checkpoint_targets
from .app import app, err, main_process, user_errors
from .files import LAYOUT_FILE, load_model, read_labeled, saved_layout, write_layout
from .options import CheckpointDir, Device, PrecisionKind, PrecisionOption
from .runs import train_valid
from .train import TimeBudget, TrainSplit, ValidSplit

Data = Annotated[Path, typer.Argument(help="Training data (as for rlm train) for the recovery.")]
Out = Annotated[Path, typer.Option("--out", "-o", help="Directory of the smaller checkpoint.")]
Prune = Annotated[
    float | None,
    typer.Option(
        min=0.0, max=1.0, help="Fraction of every block's attention heads and MLP neurons removed."
    ),
]
Exits = Annotated[
    str | None,
    typer.Option(
        help="Encoder layers the head also reads, comma-separated, two or more below the last "
        "(e.g. 1,2,3), for prediction with --early-exit. --time-budget applies to each step."
    ),
]


@app.command()
def compress(
    directory: CheckpointDir,
    data: Data,
    out: Out,
    prune: Prune = None,
    exits: Exits = None,
    time_budget: TimeBudget = 60.0,
    train_split: TrainSplit = "train",
    valid_split: ValidSplit = None,
    device: Device = "auto",
    precision: PrecisionOption = PrecisionKind.auto,
) -> None:
    """Prune a checkpoint and/or add early exits, fine-tuning briefly on DATA; save to --out."""
    main = main_process()  # under torchrun the fine-tunes run data-parallel; rank 0 saves
    with user_errors():
        check_checkpoint(directory)
        if prune is None and exits is None:
            raise ValueError("nothing to do: give --prune FRACTION and/or --exits LAYERS")
        if prune is not None and not 0.0 < prune < 1.0:
            raise ValueError(f"--prune {prune}: a fraction strictly between 0 and 1")
        layers = _layers(exits)
        if out.resolve() == directory.resolve():
            raise ValueError("--out is the checkpoint directory: write to another one")
        layout = saved_layout(directory, None, None, None)
        rows = read_labeled(data, checkpoint_targets(directory), layout, any_target=True)
        train_rows, valid_rows = train_valid(rows, data, valid_split, train_split, None)
        model = load_model(directory, runtime="torch", device=device, precision=precision.value)
        if layers is not None:  # before any fine-tune: a bad layer list costs nothing
            from ..nn.exits import check_exits

            check_exits(replace(model.model_config, exits=layers))
        from ..nn.config import TrainConfig

        recovery = TrainConfig(**{**model.train_config.to_dict(), "time_budget_s": time_budget})
        small = model
        if prune is not None:
            small = small.prune(train_rows, amount=prune, valid=valid_rows, train=recovery)  # type: ignore[attr-defined]
        if layers is not None:
            small = small.add_exits(train_rows, exits=layers, valid=valid_rows, train=recovery)  # type: ignore[attr-defined]
        if not main:
            return
        small.save(out)
        if (directory / LAYOUT_FILE).is_file():
            write_layout(out, layout, str(data), len(train_rows), len(valid_rows or ()))
        done = [f"pruned {prune:.0%} of every block"] if prune is not None else []
        done += [f"exits after layers {','.join(map(str, layers))}"] if layers else []
        err.print(
            f"{'; '.join(done)}: {model.num_params():,} -> {small.num_params():,} parameters, "
            f"saved to {out}"
        )


def _layers(exits: str | None) -> tuple[int, ...] | None:
    """'1,2,3' -> (1, 2, 3); the model checks the layers exist."""
    if exits is None:
        return None
    try:
        return tuple(int(e) for e in exits.split(","))
    except ValueError:
        raise ValueError(f"--exits {exits}: encoder layers as integers, e.g. 1,2,3") from None
