"""Option types that several commands share, so each is declared (and documented) once.

Enums rather than free strings: click then rejects a bad value itself, listing the choices.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class Preset(StrEnum):
    auto = "auto"
    tiny = "tiny"
    compact = "compact"
    small = "small"
    base = "base"


class Scheme(StrEnum):
    ieee = "ieee"
    p10 = "p10"
    normalized = "normalized"


class InputsKind(StrEnum):
    auto = "auto"
    text = "text"
    fields = "fields"


class TextNumbers(StrEnum):
    digits = "digits"
    value = "value"
    both = "both"


class PrecisionKind(StrEnum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class Select(StrEnum):
    loss = "loss"
    spearman = "spearman"


CheckpointDir = Annotated[
    Path, typer.Argument(metavar="DIR", help="Checkpoint directory (rlm train --out).")
]
Samples = Annotated[
    int, typer.Option(min=1, help="Sampled decodes per input; the median is the prediction.")
]
SamplingSeed = Annotated[int, typer.Option(help="Sampling seed.")]
NoProgress = Annotated[
    bool, typer.Option("--no-progress", help="No progress bar (e.g. in CI logs).")
]

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
Runtime = Annotated[
    str,
    typer.Option(
        help="What runs the model: auto (the directory says: a checkpoint runs on PyTorch, an "
        "`rlm export` deployment on onnxruntime without torch), torch or onnx."
    ),
]
Threads = Annotated[
    int | None,
    typer.Option(min=1, help="onnxruntime threads per graph (default: every core)."),
]
EarlyExit = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        help="Early exit (a model compressed with --exits, PyTorch runtime): each input stops "
        "at the first exit whose prediction agrees with the previous exit's within this "
        "relative difference, e.g. 0.01. The mean exit layer is reported.",
    ),
]
Device = Annotated[
    str,
    typer.Option(
        help="Where the network runs: auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or "
        "mps. Under torchrun each process takes its own GPU (LOCAL_RANK).",
    ),
]
PrecisionOption = Annotated[
    PrecisionKind,
    typer.Option(
        "--precision",
        help="Matrix products in bf16 (torch autocast) or fp32; auto: bf16 on CUDA, fp32 "
        "elsewhere.",
    ),
]
