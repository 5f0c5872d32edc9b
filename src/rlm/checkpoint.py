"""A checkpoint directory, read without torch: which files make one, its targets, its parameter
count and its training history.

``RegressionLM.save`` writes ``model.safetensors`` (weights), ``config.json`` (every config, the
target codec, the calibration, the training summary) and ``tokenizer.json``; training appends one
line per epoch to ``metrics.jsonl``. The CLI (``rlm info`` answers without loading torch) and the
server read them through this module. Torch-free.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
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


# Several files that belong together are renamed into place one by one; a crash between two
# renames would leave a new file beside an old one (a checkpoint whose weights do not match its
# config.json). So the renames are journalled: a journal file in the directory, unique to the
# save, lists them before the first and is removed after the last, and whoever next reads or
# writes the directory finishes any journal it finds (``finish_commit``): roll forward, as a
# database does. A journal names only checkpoint files and their temporary names (anything
# else is refused: a downloaded checkpoint cannot make a reader rename files elsewhere).
JOURNAL_GLOB = ".rlm-commit.*.json"


def atomic_write_all(files: Sequence[tuple[Path, bytes]]) -> list[str]:
    """``atomic_write`` for files that belong together (a checkpoint's weights, tokenizer and
    config): every temporary file is written and fsync'd first, then all are renamed in order
    under a journal, so a crash at any point leaves the old files, or all the new ones once
    ``finish_commit`` has run (a reader during a live save can still meet a mix, and is told the
    checkpoint does not match: read again). Returns the digests."""
    directories = sorted({path.parent for path, _ in files})
    for directory in directories:
        finish_commit(directory)  # an earlier writer's crash: complete it before this write
    staged = _stage(files)
    # one rename is atomic by itself: a journal only where several files must agree
    groups = {d: [(t, p) for t, p in staged if p.parent == d] for d in directories}
    try:
        journals = [_journal(d, group) for d, group in groups.items() if len(group) > 1]
    except BaseException:
        _discard(staged)
        raise
    for tmp, path in staged:
        _rename(tmp, path)
    for directory in directories:
        _fsync_dir(directory)
    for journal in journals:
        journal.unlink(missing_ok=True)  # a reader may have finished the commit already
    return [hashlib.sha256(data).hexdigest() for _, data in files]


def finish_commit(directory: Path) -> None:
    """Complete the renames of journalled writes that a crash interrupted (a no-op without a
    journal), oldest first: every staged file still there replaces its target. A journal that
    names anything but a checkpoint file and its temporary name is a ValueError."""
    journals = sorted(directory.glob(JOURNAL_GLOB), key=lambda j: j.stat().st_mtime_ns)
    for journal in journals:
        try:
            pairs = json.loads(journal.read_text(encoding="utf-8"))
        except FileNotFoundError:  # finished meanwhile by its writer or another reader
            continue
        except (json.JSONDecodeError, UnicodeDecodeError):  # never torn (renamed in): not ours
            pairs = None
        for tmp, name in _checked(journal, pairs):
            _rename(directory / tmp, directory / name)
        _fsync_dir(directory)
        journal.unlink(missing_ok=True)


def _checked(journal: Path, pairs: Any) -> list[tuple[str, str]]:
    """A journal's [temporary name, target] pairs, each a checkpoint file in the directory."""
    ok = isinstance(pairs, list) and all(
        isinstance(p, list)
        and len(p) == 2
        and p[1] in FILES + GRAPHS
        and isinstance(p[0], str)
        and re.fullmatch(rf"\.{re.escape(p[1])}\.\d+\.[0-9a-f]{{8}}\.tmp", p[0]) is not None
        for p in pairs
    )
    if not ok:
        raise ValueError(
            f"{journal} is not a journal this rlm wrote (it names files other than a "
            "checkpoint's): the checkpoint is damaged; delete that file if you trust the rest"
        )
    return [(t, n) for t, n in pairs]


def _stage(files: Sequence[tuple[Path, bytes]]) -> list[tuple[Path, Path]]:
    """Every file written and fsync'd under a temporary name beside its target (on any error,
    the temporary files are removed and the targets untouched)."""
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
    except BaseException:
        _discard(staged)
        raise
    return staged


def _discard(staged: Sequence[tuple[Path, Path]]) -> None:
    """Remove staged temporary files (a write that failed before its renames)."""
    for tmp, _ in staged:
        tmp.unlink(missing_ok=True)


def _journal(directory: Path, staged: Sequence[tuple[Path, Path]]) -> Path:
    """Write (atomically, durably) the list of renames about to happen in ``directory``."""
    journal = directory / f".rlm-commit.{os.getpid()}.{secrets.token_hex(4)}.json"
    tmp = journal.with_name(journal.name + ".tmp")
    with open(tmp, "x", encoding="utf-8") as f:
        json.dump([[t.name, p.name] for t, p in staged], f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, journal)
    _fsync_dir(directory)
    return journal


def finish_reading(directory: Path) -> None:
    """``finish_commit`` for a reader: where the directory is read-only the files are read as
    they are (a complete old checkpoint still loads; a mixed one fails its digest check)."""
    with contextlib.suppress(OSError):
        finish_commit(directory)


def _rename(tmp: Path, path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):  # renamed by whoever finished the journal
        os.replace(tmp, path)


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
    if directory.is_dir():
        finish_reading(directory)  # a first save interrupted before config.json was in place
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
    finish_reading(d)  # a save that a crash interrupted between its renames
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
