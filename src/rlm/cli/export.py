"""``rlm export``: a checkpoint -> an ONNX deployment that runs without torch.

The directory it writes is read by ``rlm predict``, ``rlm eval`` and ``rlm serve`` like a
checkpoint (they run it on onnxruntime), and in Python by ``rlm.deploy.OnnxRegressor.load``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from ..checkpoint import check_checkpoint
from .app import app, err, user_errors
from .files import LAYOUT_FILE, load_model
from .options import CheckpointDir

Out = Annotated[Path, typer.Option("--out", "-o", help="Deployment directory to write.")]
Int8 = Annotated[
    bool,
    typer.Option(
        "--int8", help="Store matrices and embeddings as int8 (~4x smaller, faster matmuls)."
    ),
]
Int4 = Annotated[
    bool,
    typer.Option(
        "--int4",
        help="Store matrices and embeddings as 4-bit blocks (~6x smaller, a little slower than "
        "--int8).",
    ),
]

PrimaryOnly = Annotated[
    bool,
    typer.Option(
        "--primary-only",
        help="A blended model (model=auto may keep two): export its primary network alone, with "
        "its own calibration; one network per prediction (3-4x faster on nas201, "
        "benchmarks/edge.py).",
    ),
]


@app.command()
def export(
    directory: CheckpointDir,
    out: Out,
    int8: Int8 = False,
    int4: Int4 = False,
    primary_only: PrimaryOnly = False,
) -> None:
    """Export a checkpoint to ONNX: predict, eval and serve it with onnxruntime, no torch."""
    with user_errors():
        if int8 and int4:
            raise ValueError("--int8 and --int4 both given: choose one precision")
        precision = "int4" if int4 else "int8" if int8 else "fp32"
        check_checkpoint(directory)
        if out.resolve() == directory.resolve():
            raise ValueError("--out is the checkpoint directory: write to another one")
        try:
            from ..deploy import export_onnx
        except ImportError as e:
            raise ValueError(
                f"exporting needs the onnx extra ({e}): pip install 'rlm[onnx]'"
            ) from None
        model = load_model(directory, runtime="torch", device="cpu")  # traced on the CPU
        if primary_only and model.blend is None:
            err.print("not a blend: --primary-only leaves it as it is")
        elif primary_only:
            model.unblend()
        export_onnx(model, out, precision=precision)  # type: ignore[arg-type]
        if (directory / LAYOUT_FILE).is_file():  # how `rlm train` read rows: predict reuses it
            shutil.copyfile(directory / LAYOUT_FILE, out / LAYOUT_FILE)
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())  # a blend's too
        err.print(f"wrote {out} ({size / 1e6:.1f} MB, {precision})")
