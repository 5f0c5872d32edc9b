"""The deployment directory: its file names and the check that reads it. Torch-free.

A deployment directory (written by ``rlm.deploy.export.export_onnx``, ``rlm export``) holds
``config.json`` (the pipeline, as a checkpoint's, plus a ``runtime`` entry), ``tokenizer.json``
and the ONNX graphs; ``config.json`` records the sha256 of each, so a damaged or mixed file is
named when it is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

from ..checkpoint import CONFIG, GRAPHS, TOKENIZER, read_meta

ENCODER, DECODER, VALUES = GRAPHS
RUNTIME = "runtime"  # the config.json entry that marks a deployment and describes its graphs
Precision = Literal["fp32", "int8", "int4"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


def read_deployment(d: Path) -> dict[str, Any]:
    """``config.json`` of a deployment directory, checked (format, digests, graphs present); a
    ValueError that says what to do otherwise."""
    if not (d / CONFIG).is_file():
        raise ValueError(
            f"{d} is not an rlm deployment ({CONFIG} missing): write one with "
            f"`rlm export CHECKPOINT --out {d}`"
        )
    meta = read_meta(d)
    runtime = meta.get(RUNTIME)
    if not isinstance(runtime, dict) or runtime.get("kind") != "onnx":
        raise ValueError(
            f"{d} holds a PyTorch checkpoint, not an ONNX deployment: load it with "
            f"RegressionLM.load, or export it with `rlm export {d} --out DIR`"
        )
    needed = [VALUES] if runtime.get("head") != "digits" else [ENCODER, DECODER]
    listed = meta.get("files", {})
    missing = sorted(g for g in (*needed, TOKENIZER) if g not in listed or not (d / g).is_file())
    if missing:
        raise ValueError(f"{d}: {missing} missing; export the model again")
    return meta
