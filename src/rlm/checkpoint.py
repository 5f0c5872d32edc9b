"""A checkpoint directory, read without torch: which files make one, its targets, its parameter
count and its training history.

``RegressionLM.save`` writes ``model.safetensors`` (weights), ``config.json`` (every config, the
target codec, the calibration, the training summary) and ``tokenizer.json``; training appends one
line per epoch to ``metrics.jsonl``. The CLI (``rlm info`` answers without loading torch) and the
server read them through this module. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__

FILES = ("config.json", "tokenizer.json", "model.safetensors")
CONFIG, TOKENIZER, WEIGHTS = FILES
# an ONNX deployment (``rlm.deploy``) has these graphs in place of the weights
GRAPHS = ("encoder.onnx", "decoder.onnx", "values.onnx")
# 2: config.json records the sha256 of the weights and tokenizer (format 1 did not; still read)
CHECKPOINT_FORMAT = 2
HISTORY_FILE = "metrics.jsonl"


def atomic_write(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a
    part: a temporary file in the same directory, fsync'd, then renamed over ``path`` (a crash
    leaves at most a stray ``.tmp`` file, never a truncated checkpoint file). Returns the
    sha256 of ``data`` (``digest`` of the file, without reading it back)."""
    return atomic_write_all([(path, data)])[0]


def atomic_write_all(files: Sequence[tuple[Path, bytes]]) -> list[str]:
    """``atomic_write`` for files that belong together (a checkpoint's weights, tokenizer and
    config): every temporary file is written and fsync'd first, then all are renamed in order,
    so a crash during the slow part changes none of them and the window in which a reader could
    see a new file beside an old one is a few renames, not a whole write. Returns the digests."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in files:
            # not mkstemp: its files are private (0600); a checkpoint gets the umask's usual mode
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
            staged.append((tmp, path))
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for directory in {path.parent for path, _ in files}:
        _fsync_dir(directory)
    return [hashlib.sha256(data).hexdigest() for _, data in files]


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable: fsync the directory entry (a no-op where the OS cannot)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def digest(path: Path) -> str:
    """sha256 of a file: ``config.json`` records those of the weights and the tokenizer, so a
    damaged file, or one copied from another checkpoint, is named at load time."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_deployment(directory: Path) -> bool:
    """Whether ``directory`` holds an ONNX deployment (``rlm export``) rather than weights."""
    return (directory / CONFIG).is_file() and any((directory / g).is_file() for g in GRAPHS)


def check_checkpoint(directory: Path, deployment: bool = False) -> None:
    """A ValueError that says how to get a checkpoint, unless ``directory`` holds one (or, with
    ``deployment``, an ONNX deployment)."""
    if is_deployment(directory):
        if deployment:
            return
        raise ValueError(
            f"{directory} holds an ONNX deployment (rlm export), not PyTorch weights: load it "
            "with rlm.deploy.OnnxRegressor.load, or point to the checkpoint it was exported from"
        )
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


def read_meta(d: Path) -> dict[str, Any]:
    """``config.json`` of a checkpoint or deployment, checked: JSON, a format this rlm reads,
    and files that match it."""
    try:
        meta = json.loads((d / CONFIG).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"{d / CONFIG} is not valid JSON ({e}): the checkpoint is damaged"
        ) from None
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt < 1:
        raise ValueError(f"{d / CONFIG} has no checkpoint format: it is not an rlm config.json")
    if fmt > CHECKPOINT_FORMAT:
        raise ValueError(
            f"{d} was written by a newer rlm ({meta.get('rlm_version')}, checkpoint format {fmt}"
            f"); rlm {__version__} reads formats up to {CHECKPOINT_FORMAT}: upgrade rlm"
        )
    files = meta.get("files") or {}  # format 1 recorded none
    if not isinstance(files, dict):
        raise ValueError(f"{d / CONFIG}: 'files' is not a mapping; the checkpoint is damaged")
    for name, want in files.items():
        if name not in FILES + GRAPHS:
            raise ValueError(f"{d / CONFIG} lists an unknown file {name!r}: it is damaged")
        if not (d / name).is_file():
            raise ValueError(f"{d / name} is missing ({CONFIG} lists it): restore it or re-save")
        if digest(d / name) != want:
            raise ValueError(
                f"{d / name} does not match {CONFIG} (sha256 differs): the file is damaged or "
                "comes from another checkpoint; restore it or retrain"
            )
    return meta


def checkpoint_targets(directory: Path) -> list[str]:
    """The objectives the checkpoint decodes, in order."""
    return list(read_meta(directory)["targets"]["names"])


def safetensors_params(path: Path) -> int:
    """Parameter count from a safetensors header (8-byte length + JSON), without loading torch."""
    try:
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(min(n, 100_000_000)))
        return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    except (struct.error, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(
            f"{path} has no readable safetensors header ({e}): it is damaged"
        ) from None


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
