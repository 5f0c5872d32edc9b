"""Checkpoints of a training run, and resuming it exactly where it stopped.

An hour of training must not be lost to a SIGTERM from a scheduler, a closed laptop or an
out-of-memory kill. While ``train`` runs with a run directory it writes, every
``TrainConfig.checkpoint_every_s`` seconds (or ``checkpoint_every_steps`` steps), and when
SIGINT or SIGTERM arrives:

* the tensors of ``train_state.safetensors``: the current weights (``model.*``), the
  optimiser's moments (``opt.<i>.*``), the best weights so far (``best.*``), the weight average
  (``ema.*``) and torch's RNG state (``rng.torch``);
* its metadata, as JSON: where the run is (the epoch in progress, how many of its batches are
  done, the step and its learning rate, the seconds trained, the numpy generator's state at
  the start of that epoch, so its batch order is drawn again identically), the best score and
  the evaluations since, the cool-down, the epoch rows so far, and a fingerprint of the data
  and options.

One file written atomically (``rlm.checkpoint.atomic_write``): a kill at any instant leaves the
previous complete state or the new one. A resumed run replays nothing and skips nothing: it
restores every piece above and continues at the next batch, reaching the weights an
uninterrupted run reaches (a test kills a training process with SIGKILL and compares). Under
``time_budget_s`` the schedule follows the clock, so a resumed run is as close as the clock
allows, not bitwise.
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

from ..checkpoint import atomic_write

STATE_FILE = "train_state.safetensors"
STATE_FORMAT = 1
_META_KEY = "rlm_train_state"


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
    lr: float = 0.0  # the last step's learning rate (the cool-down starts from it)


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
    """One file, written atomically: the tensors, and the run state as JSON in its metadata, so
    a kill at any instant leaves either the previous state or this one, never a mix."""
    from safetensors.torch import save

    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, per in opt.state_dict()["state"].items():
        tensors.update({f"opt.{i}.{k}": torch.as_tensor(v) for k, v in per.items()})
    tensors.update({f"best.{k}": v for k, v in (best or {}).items()})
    tensors.update({f"ema.{k}": v for k, v in (ema or {}).items()})
    tensors["rng.torch"] = torch.get_rng_state()
    meta = json.dumps({"format": STATE_FORMAT, **asdict(state)})
    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, {_META_KEY: meta})
    atomic_write(run_dir / STATE_FILE, data)


def has_state(run_dir: Path) -> bool:
    return (run_dir / STATE_FILE).is_file()


def load_state(
    run_dir: Path,
    fingerprint: str,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
) -> tuple[RunState, dict[str, torch.Tensor] | None, dict[str, torch.Tensor] | None]:
    """Restore the model, optimiser (learning rate included) and torch RNG in place; returns the
    run state and the best and averaged weights (None when the run had none)."""
    path = run_dir / STATE_FILE
    if not has_state(run_dir):
        raise ValueError(f"{run_dir} holds no training state ({STATE_FILE}): nothing to resume")
    state, tensors = _read(path)
    if state.fingerprint != fingerprint:
        raise ValueError(
            f"the training state in {run_dir} belongs to other data or options: resume with the "
            "same data and options as the interrupted run, or train without resume"
        )
    model.load_state_dict(_prefixed(tensors, "model."))
    per: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in _prefixed(tensors, "opt.").items():
        i, name = k.split(".", 1)
        per.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": per, "param_groups": opt.state_dict()["param_groups"]})
    if state.position.lr:
        for group in opt.param_groups:
            group["lr"] = state.position.lr
    torch.set_rng_state(tensors["rng.torch"])
    return state, _prefixed(tensors, "best.") or None, _prefixed(tensors, "ema.") or None


def _read(path: Path) -> tuple[RunState, dict[str, torch.Tensor]]:
    """The state file, checked: a damaged or foreign one is a ValueError naming it."""
    from safetensors import SafetensorError, safe_open

    damaged = f"{path} is damaged or not a training state; train without resume"
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[_META_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
        if meta.pop("format") != STATE_FORMAT:
            raise ValueError(f"{path} is a training state of another rlm version; {damaged}")
        return RunState(**{**meta, "position": Position(**meta["position"])}), tensors
    except (SafetensorError, OSError, KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{damaged} ({type(e).__name__}: {e})") from None


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


class Checkpoints:
    """When the next checkpoint is due: every ``every_s`` seconds and/or ``every_steps`` steps,
    and at once when a stop signal arrived (``installed`` catches SIGINT and SIGTERM)."""

    def __init__(self, every_s: float, every_steps: int) -> None:
        self.every_s, self.every_steps = every_s, every_steps
        self.last = time.perf_counter()
        self.signal: int | None = None
        self.saving = False  # a second signal while saving waits: a half-written save is lost

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
        # a signal the process ignores (SIG_IGN, e.g. SIGINT of a background job) stays ignored
        old = {
            s: h
            for s in (signal.SIGINT, signal.SIGTERM)
            if (h := signal.getsignal(s)) is not signal.SIG_IGN and h is not None
        }

        def handler(signum: int, frame: Any) -> None:
            if self.signal is not None and not self.saving:
                raise KeyboardInterrupt
            self.signal = signum

        for s in old:
            signal.signal(s, handler)
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def metrics_file_for(run_dir: Path, history: list[dict]) -> IO[str]:
    """``metrics.jsonl`` for appending, first rewritten from the run's rows: empty for a new
    run (never two runs in one file), the saved rows for a resumed one (an epoch logged after
    its last checkpoint is run, and logged, again)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "metrics.jsonl"
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in history).encode())
    return path.open("a")
