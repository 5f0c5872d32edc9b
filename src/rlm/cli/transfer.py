"""``rlm pretrain`` and ``rlm finetune``: one model trained on many datasets, then adapted to a
new one from a few rows (``rlm.transfer``).

``rlm pretrain`` reads several datasets, each a task: files (named by their file name, or
``NAME=PATH``) or a JSON manifest listing ``{"name", "path", "weight", "target"}`` entries
(paths relative to the manifest; ``target``: the dataset's own name for the model's target,
when datasets name it differently). Each row's input is tagged with its task under
``--task-key``. ``rlm finetune`` trains a copy of a checkpoint on DATA, growing it for a new
task, new option keys and new targets; ``--lora-rank`` trains low-rank adapters instead of
every weight (``pip install 'rlm[lora]'``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from ..checkpoint import check_checkpoint, checkpoint_targets
from ..io import Layout
from .app import app, err, main_process, stopped_training, user_errors
from .files import (
    LAYOUT_FILE,
    add_named,
    load_model,
    named_paths,
    read_labeled,
    renamed,
    saved_layout,
    tagged,
    target_renames,
    write_layout,
)
from .options import (
    CheckpointDir,
    Device,
    NoProgress,
    PrecisionKind,
    PrecisionOption,
    Preset,
)
from .runs import refuse_previous_run, resumable, train_valid
from .train import (
    BatchSize,
    LearningRate,
    OutDir,
    Overwrite,
    PresetOption,
    Resume,
    Seed,
    TimeBudget,
    TrainSplit,
    ValidSplit,
    _model_config,
    _print_train_summary,
)

Datasets = Annotated[
    list[str],
    typer.Argument(
        metavar="DATA...",
        help="Datasets, one task each: PATH (named by its file name), NAME=PATH, or one "
        "manifest.json listing {name, path, weight, target} entries.",
    ),
]
TaskKeyOption = Annotated[
    str, typer.Option(help="The input key naming each row's task (its dataset's name).")
]
Target = Annotated[
    str, typer.Option("--target", "-t", help="The model's target; every dataset must have it.")
]
Weights = Annotated[
    list[str] | None,
    typer.Option(
        "--weight",
        metavar="NAME=W",
        help="A task's share of each epoch (repeat; then give every task one). Default: by size.",
    ),
]
Epochs = Annotated[int, typer.Option(min=1, help="Maximum epochs.")]


@app.command()
def pretrain(
    data: Datasets,
    out_dir: OutDir,
    task_key: TaskKeyOption = "task",
    target: Target = "y",
    weight: Weights = None,
    preset: PresetOption = Preset.auto,
    epochs: Epochs = 200,
    time_budget: TimeBudget = None,
    batch_size: BatchSize = 64,
    lr: LearningRate = 1e-3,
    seed: Seed = 0,
    train_split: TrainSplit = "train",
    valid_split: ValidSplit = None,
    overwrite: Overwrite = False,
    resume: Resume = False,
    no_progress: NoProgress = False,
    device: Device = "auto",
    precision: PrecisionOption = PrecisionKind.auto,
) -> None:
    """Train one model on several datasets (each a task named in the input); save to --out.
    Runs data-parallel under torchrun, as `rlm train` does."""
    main = main_process()
    with user_errors():
        from ..nn.config import TrainConfig

        train_cfg = TrainConfig(
            lr=lr, batch_size=batch_size, max_epochs=epochs, time_budget_s=time_budget,
            seed=seed, progress=not no_progress,
        )  # fmt: skip
        if resume:
            resume = resumable(out_dir)
        elif main:
            refuse_previous_run(out_dir, overwrite)
        entries = _entries(data)
        weights = _weights(weight, entries)
        train, valid = {}, {}
        for name, path, own_target, _ in entries:
            own = own_target or target
            rows = [renamed(e, {own: target}) for e in read_labeled(path, [own], Layout())]
            train[name], valid_rows = train_valid(rows, path, valid_split, train_split, None)
            if valid_rows:
                valid[name] = valid_rows
        from ..api import RegressionLM

        model = RegressionLM(
            model=_model_config(preset, 256), targets=[target], train=train_cfg,
            task_key=task_key, device=device, precision=precision.value,
        )  # fmt: skip
        n = sum(map(len, train.values()))
        err.print(f"pretraining on {len(train)} tasks, {n:,} rows -> {out_dir}")
        if main:
            out_dir.mkdir(parents=True, exist_ok=True)
            write_layout(out_dir, Layout(), ",".join(data), n, sum(map(len, valid.values())))
        with stopped_training(": to continue, run the same command with --resume"):
            model.pretrain(
                train, weights=weights, valid=valid or None, run_dir=out_dir, resume=resume
            )
        if not main:
            return
        _print_train_summary(model, out_dir, n, sum(map(len, valid.values())))


def _entries(data: list[str]) -> list[tuple[str, Path, str | None, float | None]]:
    """(name, path, the dataset's own target name or None, weight or None) per dataset."""
    spec = _manifest(data)
    if spec is not None:
        manifest, items = spec
        named: dict[str, Any] = {}
        for i, d in enumerate(items):
            entry = _manifest_entry(manifest.parent, i, d)
            add_named(named, entry[0], entry, "dataset", "distinct names in the manifest")
        return list(named.values())
    named = named_paths(data, lambda p: p.name.split(".")[0], "dataset", "NAME=PATH")
    return [(name, path, None, None) for name, path in named.items()]


def _manifest(data: list[str]) -> tuple[Path, list[Any]] | None:
    """One JSON file holding ``{"datasets": [...]}``: the manifest and its entries; anything
    else (a .json data file too) is a dataset."""
    path = Path(data[0])
    if len(data) != 1 or path.suffix != ".json" or not path.is_file():
        return None
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # JSON lines: a dataset
    if not isinstance(spec, dict) or "datasets" not in spec:
        return None
    items = spec["datasets"]
    if not isinstance(items, list) or not items:
        raise ValueError(f'{path}: expected {{"datasets": [{{"name", "path"}}, ...]}}')
    return path, items


def _manifest_entry(root: Path, i: int, d: Any) -> tuple[str, Path, str | None, float | None]:
    allowed = {"name", "path", "weight", "target"}
    if not isinstance(d, dict) or not {"name", "path"} <= set(d) or set(d) - allowed:
        raise ValueError(f"manifest entry {i}: {d!r}; expected keys name, path[, weight, target]")
    weight = d.get("weight")
    if weight is not None and (isinstance(weight, bool) or not isinstance(weight, int | float)):
        raise ValueError(f"manifest entry {i} ({d['name']!r}): weight {weight!r} is not a number")
    return str(d["name"]), root / str(d["path"]), d.get("target"), weight


def _weights(
    options: list[str] | None, entries: list[tuple[str, Path, str | None, float | None]]
) -> dict[str, float] | None:
    """--weight NAME=W options, else the manifest's weights (all or none), else None."""
    if options:
        out = {}
        for o in options:
            name, sep, w = o.partition("=")
            try:
                if not sep:
                    raise ValueError
                out[name] = float(w)
            except ValueError:
                raise ValueError(f"--weight {o!r}: use NAME=NUMBER, e.g. 7z=2") from None
        return out
    given = {name: w for name, _, _, w in entries if w is not None}
    if given and len(given) != len(entries):
        raise ValueError("the manifest gives some datasets a weight: give every one a weight")
    return given or None


TaskOption = Annotated[
    str | None,
    typer.Option(help="For a model with a task key: the task DATA's rows belong to (a new one)."),
]
NewTargets = Annotated[
    list[str] | None,
    typer.Option(
        "--target",
        "-t",
        metavar="NAME[=AS]",
        help="DATA's targets to learn (repeat), by default the model's: NAME=AS learns DATA's "
        "NAME as the model's target AS; a NAME the model does not write is a new target.",
    ),
]
LoraRank = Annotated[
    int | None,
    typer.Option(min=1, help="Train rank-R adapters of the frozen transformer (needs peft)."),
]


@app.command()
def finetune(
    directory: CheckpointDir,
    data: Annotated[Path, typer.Argument(help="The new task's rows (as for rlm train).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory of the tuned checkpoint.")],
    task: TaskOption = None,
    target: NewTargets = None,
    lora_rank: LoraRank = None,
    epochs: Epochs = 100,
    time_budget: TimeBudget = 60.0,
    lr: Annotated[
        float | None, typer.Option(help="Peak learning rate (default: the model's).")
    ] = None,
    train_split: TrainSplit = "train",
    valid_split: ValidSplit = None,
    device: Device = "auto",
    precision: PrecisionOption = PrecisionKind.auto,
) -> None:
    """Adapt a checkpoint to DATA (a new task, keys or targets) from a few rows; save to --out."""
    main = main_process()  # under torchrun the fine-tune runs data-parallel; rank 0 saves
    with user_errors():
        check_checkpoint(directory)
        if out.resolve() == directory.resolve():
            raise ValueError("--out is the checkpoint directory: write to another one")
        layout = saved_layout(directory, None, None, None)
        renames = target_renames(target or ())
        names = list(renames) or checkpoint_targets(directory)
        rows = read_labeled(data, names, layout, any_target=not renames)
        rows = [renamed(e, renames) for e in rows]
        train_rows, valid_rows = train_valid(rows, data, valid_split, train_split, None)
        model: Any = load_model(
            directory, runtime="torch", device=device, precision=precision.value
        )
        if task is not None:
            train_rows, valid_rows = tagged(model, task, train_rows, valid_rows)
        cfg = model.train_config
        tune = replace(
            cfg, max_epochs=epochs, time_budget_s=time_budget, lr=lr or cfg.lr, warmup_frac=0.0
        )
        lora = None
        if lora_rank is not None:
            from ..nn.config import LoraConfig

            lora = LoraConfig(rank=lora_rank, alpha=2.0 * lora_rank)
        tuned = model.finetune(train_rows, valid=valid_rows or None, train=tune, lora=lora)
        if not main:
            return
        tuned.save(out)
        if (directory / LAYOUT_FILE).is_file():
            write_layout(out, layout, str(data), len(train_rows), len(valid_rows or ()))
        how = f"LoRA rank {lora_rank}" if lora_rank else "every weight"
        err.print(
            f"fine-tuned ({how}) on {len(train_rows):,} rows "
            f"({len(valid_rows or ()):,} validating): saved to {out}"
        )
