"""A checkpoint directory, read without torch: which files make one, its targets, its parameter
count and its training history.

``RegressionLM.save`` writes ``model.safetensors`` (weights), ``config.json`` (every config, the
target codec, the calibration, the training summary) and ``tokenizer.json``; training appends one
line per epoch to ``metrics.jsonl``. The CLI (``rlm info`` answers without loading torch) and the
server read them through this module. Torch-free.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

FILES = ("config.json", "tokenizer.json", "model.safetensors")
HISTORY_FILE = "metrics.jsonl"


def check_checkpoint(directory: Path) -> None:
    """A ValueError that says how to get a checkpoint, unless ``directory`` holds one."""
    if not directory.is_dir():
        raise ValueError(
            f"checkpoint directory {directory} does not exist: train one with "
            f"`rlm train DATA --target NAME --out {directory}` (or `rlm demo`)"
        )
    missing = [f for f in FILES if not (directory / f).is_file()]
    if missing:
        raise ValueError(
            f"{directory} is not an rlm checkpoint ({', '.join(missing)} missing): "
            "point to the --out directory of `rlm train`"
        )


def read_meta(directory: Path) -> dict[str, Any]:
    """The checkpoint's ``config.json``."""
    return json.loads((directory / "config.json").read_text())


def checkpoint_targets(directory: Path) -> list[str]:
    """The objectives the checkpoint decodes, in order."""
    return list(read_meta(directory)["targets"]["names"])


def safetensors_params(path: Path) -> int:
    """Parameter count from a safetensors header (8-byte length + JSON), without loading torch."""
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


def read_history(directory: Path) -> list[dict[str, Any]]:
    """The per-epoch records of the checkpoint's ``metrics.jsonl``; none when it is absent."""
    path = directory / HISTORY_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def best_valid_loss(history: list[dict[str, Any]]) -> float | None:
    """The lowest validation loss logged, or None when no epoch was validated."""
    losses = [r["valid_loss"] for r in history if "valid_loss" in r]
    return min(losses) if losses else None
