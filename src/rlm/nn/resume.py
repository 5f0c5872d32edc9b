"""Checkpoints of a training run, and resuming it exactly where it stopped.

An hour of training must not be lost to a SIGTERM from a scheduler, a closed laptop or an
out-of-memory kill. While ``train`` runs with a run directory it writes, every
``TrainConfig.checkpoint_every_s`` seconds (or ``checkpoint_every_steps`` steps), and when
SIGINT or SIGTERM arrives:

* ``train_state.safetensors``: the current weights (``model.*``), the optimiser's moments
  (``opt.<i>.*``), the best weights so far (``best.*``), the weight average (``ema.*``) and
  torch's RNG state (``rng.torch``);
* ``train_state.json``: where the run is (the epoch in progress, how many of its batches are
  done, the step, the seconds trained, the numpy generator's state at the start of that epoch,
  so its batch order is drawn again identically), the best score and the evaluations since,
  the cool-down, the epoch rows so far, and a fingerprint of the data and options.

Both are written atomically (``rlm.checkpoint.atomic_write``), the JSON last and naming the
sha256 of the tensors it belongs with, so a kill at any instant leaves the previous complete
state. A resumed run replays nothing and skips nothing: it restores every piece above and
continues at the next batch, reaching the weights an uninterrupted run reaches (a test kills a
training process with SIGKILL and compares).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import torch

from ..checkpoint import atomic_write, digest

STATE_TENSORS, STATE_JSON = "train_state.safetensors", "train_state.json"
STATE_FORMAT = 1


class Interrupted(Exception):
    """Training stopped by SIGINT/SIGTERM after saving its state; the message says how to go on."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum  # the CLI exits with 128 + signum, as the shell would


@dataclass
class Position:
    """Where a run is: ``batch`` batches of ``epoch`` are done (all of them: validation next)."""

    epoch: int = 1
    batch: int = 0
    step: int = 0
    elapsed_s: float = 0.0
    rng: dict[str, Any] = field(default_factory=dict)  # numpy generator state at epoch start
    ep_loss: float = 0.0  # the epoch's running loss sum and examples, for its history row
    ep_n: int = 0


@dataclass
class RunState:
    """Everything of a run that is not a tensor."""

    position: Position
    best_score: float
    best_epoch: int
    bad_evals: int
    cooldown: dict[str, Any] | None
    history: list[dict[str, Any]]
    ema_steps: int
    fingerprint: str


def save_state(
    run_dir: Path,
    state: RunState,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    best: dict[str, torch.Tensor] | None,
    ema: dict[str, torch.Tensor] | None,
) -> None:
    from safetensors.torch import save

    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, per in opt.state_dict()["state"].items():
        tensors.update({f"opt.{i}.{k}": torch.as_tensor(v) for k, v in per.items()})
    tensors.update({f"best.{k}": v for k, v in (best or {}).items()})
    tensors.update({f"ema.{k}": v for k, v in (ema or {}).items()})
    tensors["rng.torch"] = torch.get_rng_state()
    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})
    atomic_write(run_dir / STATE_TENSORS, data)
    meta = {"format": STATE_FORMAT, "tensors": digest(run_dir / STATE_TENSORS), **asdict(state)}
    atomic_write(run_dir / STATE_JSON, json.dumps(meta).encode("utf-8"))


def has_state(run_dir: Path) -> bool:
    return (run_dir / STATE_JSON).is_file()


def load_state(
    run_dir: Path,
    fingerprint: str,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
) -> tuple[RunState, dict[str, torch.Tensor] | None, dict[str, torch.Tensor] | None]:
    """Restore the model, optimiser and torch RNG in place; returns the run state and the best
    and averaged weights (None when the run had none)."""
    from safetensors.torch import load_file

    if not has_state(run_dir):
        raise ValueError(
            f"{run_dir} holds no training state ({STATE_JSON} missing): nothing to resume; "
            "train without resume"
        )
    meta = json.loads((run_dir / STATE_JSON).read_text())
    if meta.pop("format") != STATE_FORMAT or meta.pop("tensors") != digest(run_dir / STATE_TENSORS):
        raise ValueError(
            f"{run_dir / STATE_TENSORS} does not match {STATE_JSON}: the state is damaged; "
            "train without resume"
        )
    state = RunState(**{**meta, "position": Position(**meta["position"])})
    if state.fingerprint != fingerprint:
        raise ValueError(
            f"the training state in {run_dir} belongs to other data or options: resume with the "
            "same data and options as the interrupted run, or train without resume"
        )
    tensors = load_file(str(run_dir / STATE_TENSORS))
    model.load_state_dict(_prefixed(tensors, "model."))
    opt_state = opt.state_dict()
    per: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in _prefixed(tensors, "opt.").items():
        i, name = k.split(".", 1)
        per.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": per, "param_groups": opt_state["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    return state, _prefixed(tensors, "best.") or None, _prefixed(tensors, "ema.") or None


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


class Checkpoints:
    """When the next checkpoint is due: every ``every_s`` seconds and/or ``every_steps`` steps,
    and at once when a stop signal arrived (``installed`` catches SIGINT and SIGTERM)."""

    def __init__(self, every_s: float, every_steps: int) -> None:
        self.every_s, self.every_steps = every_s, every_steps
        self.last = time.perf_counter()
        self.signal: int | None = None

    def due(self, step: int) -> bool:
        if self.signal is not None:
            return True
        if self.every_steps and step % self.every_steps == 0:
            return True
        return bool(self.every_s) and time.perf_counter() - self.last >= self.every_s

    def saved(self) -> None:
        self.last = time.perf_counter()

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Signal handlers for the block (main thread only: Python allows nothing else). The
        first signal asks for a checkpoint and a stop; a second one stops at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        signals = (signal.SIGINT, signal.SIGTERM)
        old = {s: signal.getsignal(s) for s in signals}

        def handler(signum: int, frame: Any) -> None:
            if self.signal is not None:
                raise KeyboardInterrupt
            self.signal = signum

        for s in signals:
            signal.signal(s, handler)
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def metrics_file_for(run_dir: Path, history: list[dict]) -> IO[str]:
    """``metrics.jsonl`` for appending; a resumed run first rewrites it from its saved rows
    (an epoch logged after the last checkpoint will be run, and logged, again)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "metrics.jsonl"
    if history:
        atomic_write(path, "".join(json.dumps(r) + "\n" for r in history).encode())
    return path.open("a")
