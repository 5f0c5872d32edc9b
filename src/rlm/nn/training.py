"""Training: AdamW, warm-up + cosine, clipping, length bucketing, early stopping on validation.

The loss of a batch (grammar-masked cross-entropy, or a value head's) is ``rlm.nn.loss``.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from ..inputs.padding import micro_batches
from .averaging import WeightAverage
from .config import TrainConfig
from .decoding import GrammarTable
from .loss import Batch, Targets, batch_loss, make_batch
from .model import RegressionTransformer
from .resume import (
    Checkpoints,
    Interrupted,
    Position,
    RunState,
    load_state,
    metrics_file_for,
    save_state,
)
from .runtime import release_memory

# lr_at is re-exported: rlm.training.lr_at (rlm 0.1) still resolves here (see rlm._moved)
from .schedule import Best, Cooldown, Schedule, lr_at, stop_reason  # noqa: F401
from .source import Row


def length_batches(
    lengths: Sequence[int],
    batch_size: int,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Shuffled batches of similar-length examples (less padding, same randomness per epoch).

    Shuffle, cut into chunks of 50 batches, sort each chunk by length, slice, shuffle batches.
    ``weights`` (one per example, summing to 1): an epoch is as many draws, with replacement,
    of example i with probability ``weights[i]`` (a pretraining mixture's task weights).
    """
    n = len(lengths)
    order = rng.permutation(n) if weights is None else rng.choice(n, size=n, p=weights)
    lens = np.asarray(lengths)
    chunk = batch_size * 50
    batches = []
    for i in range(0, len(order), chunk):
        part = order[i : i + chunk]
        part = part[np.argsort(lens[part], kind="stable")]
        batches += [part[j : j + batch_size] for j in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


@dataclass
class TrainResult:
    best_epoch: int
    best_score: float
    epochs: int
    steps: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    stopped: str = "max_epochs"

    def summary(self) -> dict[str, Any]:
        """What a checkpoint records about its training run."""
        return {
            "best_epoch": self.best_epoch,
            "best_score": self.best_score,
            "epochs": self.epochs,
            "steps": self.steps,
            "seconds": self.seconds,
            "stopped": self.stopped,
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }


@torch.no_grad()
def eval_loss(
    model: RegressionTransformer,
    src: Sequence[Row],
    tg: Targets,
    grammar: GrammarTable,
    pad_id: int,
    batch_size: int = TrainConfig.batch_size,
    max_positions: int = TrainConfig.max_positions,
) -> float:
    """Mean loss of the last layer (what selection keeps; early exits are trained, not
    selected on) over the rows, in length-sorted batches of at most ``max_positions``."""
    model.eval()
    lengths = [len(s) for s in src]
    order = np.argsort(lengths, kind="stable")
    total, weight = 0.0, 0.0
    members = model.cfg.members
    for i in range(0, len(order), batch_size):
        for part in micro_batches(order[i : i + batch_size], lengths, max_positions, members):
            batch = make_batch(part, src, tg, pad_id)
            w = batch.weight_sum
            total += float(batch_loss(model, batch, grammar, every_exit=False)) * w
            weight += w
    return total / max(weight, 1.0)


@dataclass
class _Run:
    """What a training run changes as it goes: all that a checkpoint saves and a resume
    restores (``rlm.nn.resume``)."""

    model: RegressionTransformer
    opt: torch.optim.Optimizer
    sched: Schedule
    ema: WeightAverage | None
    best: Best = field(default_factory=Best)
    pos: Position = field(default_factory=Position)
    result: TrainResult = field(default_factory=lambda: TrainResult(-1, math.nan, 0, 0, 0.0))

    def save(self, run_dir: Path, fingerprint: str) -> None:
        self.pos.elapsed_s = time.perf_counter() - self.sched.start
        cool = self.sched.cooldown
        state = RunState(
            position=self.pos,
            best_score=self.best.score,
            best_epoch=self.best.epoch,
            bad_evals=self.best.bad_evals,
            cooldown=None if cool is None else asdict(cool),
            history=self.result.history,
            ema_steps=0 if self.ema is None else self.ema.steps,
            fingerprint=fingerprint,
        )
        avg = None if self.ema is None else self.ema.avg
        save_state(run_dir, state, self.model, self.opt, self.best.state, avg)

    def restore(self, run_dir: Path, fingerprint: str) -> None:
        state, best, avg = load_state(run_dir, fingerprint, self.model, self.opt)
        self.pos, self.result.history = state.position, state.history
        self.best = Best(state.best_score, state.best_epoch, best, state.bad_evals)
        if self.ema is not None:
            self.ema.avg, self.ema.steps = avg or self.ema.avg, state.ema_steps
        self.sched.cooldown = None if state.cooldown is None else Cooldown(**state.cooldown)
        self.sched.start = time.perf_counter() - state.position.elapsed_s

    def final_weights(self) -> dict[str, torch.Tensor]:
        """The weights a run hands out, mid-run or at its end: the best validated ones, else
        (no validation) the weight average, else the current weights."""
        if self.best.state is not None:
            return self.best.state
        return self.ema.avg if self.ema is not None else self.model.state_dict()


def train(
    model: RegressionTransformer,
    src: Sequence[Row],
    targets: Targets,
    grammar: GrammarTable,
    cfg: TrainConfig,
    pad_id: int,
    valid: tuple[Sequence[Row], Targets] | None = None,
    score_fn: Callable[[], float] | None = None,
    run_dir: Path | None = None,
    log: Callable[[str], None] | None = None,
    *,
    resume: bool = False,
    fingerprint: str = "",
    on_checkpoint: Callable[[dict[str, torch.Tensor]], None] | None = None,
    sample_weights: np.ndarray | None = None,
) -> TrainResult:
    """Fit ``model`` in place and restore the best weights seen on validation.

    ``score_fn`` (higher is better) is called for select="spearman"; otherwise the validation
    loss is used. Without validation data the last weights are kept. With a ``run_dir`` the
    run writes ``metrics.jsonl`` and resumable checkpoints there (``rlm.nn.resume``; each also
    hands the best weights so far to ``on_checkpoint``), stops cleanly on SIGINT/SIGTERM by
    raising ``Interrupted``, and ``resume=True`` continues the run saved there; ``fingerprint``
    names the data and options, so a resume on other ones is refused. ``sample_weights``:
    how likely each training example is drawn (see ``length_batches``); None: each once.
    """
    if sample_weights is not None and len(sample_weights) != len(src):
        raise ValueError(f"{len(sample_weights)} sample weights for {len(src)} examples")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    lengths = [len(s) for s in src]
    steps_per_epoch = math.ceil(len(src) / cfg.batch_size)
    total = cfg.max_steps or steps_per_epoch * cfg.max_epochs
    ema = WeightAverage(model, cfg.ema) if cfg.ema > 0 else None
    run = _Run(model, _optimizer(model, cfg), Schedule(cfg, total, time.perf_counter()), ema)
    if resume:
        if run_dir is None:
            raise ValueError("resume=True needs the run_dir of the interrupted run")
        run.restore(run_dir, fingerprint)
    keeper = (
        None if run_dir is None else Checkpoints(cfg.checkpoint_every_s, cfg.checkpoint_every_steps)
    )
    metrics_file = None if run_dir is None else metrics_file_for(run_dir, run.result.history)
    progress = _progress(cfg.progress, total)
    task = None
    if progress:
        task = progress.add_task(
            "training", total=total, completed=run.pos.step, loss=math.nan, ex_s=0.0
        )
    sched, result, epoch = run.sched, run.result, run.pos.epoch
    try:
        with keeper.installed() if keeper else nullcontext():
            for epoch in range(run.pos.epoch, cfg.max_epochs + 1):
                if epoch != run.pos.epoch or not run.pos.rng:  # a new epoch, not a resumed one
                    pos = run.pos
                    run.pos = Position(epoch, 0, pos.step, rng=rng.bit_generator.state, lr=pos.lr)
                    if keeper and keeper.signal is not None:  # it came during validation
                        _checkpoint(run, keeper, run_dir, fingerprint, on_checkpoint)
                rng.bit_generator.state = run.pos.rng  # the epoch's batch order, drawn again
                model.train()
                ep_start, ep_n0 = time.perf_counter(), run.pos.ep_n
                batches = length_batches(lengths, cfg.batch_size, rng, sample_weights)
                for idx in batches[run.pos.batch :]:
                    if sched.over(run.pos.step):
                        break
                    parts = micro_batches(idx, lengths, cfg.max_positions, model.cfg.members)
                    batch = [make_batch(part, src, targets, pad_id) for part in parts]
                    run.pos.lr = sched.lr(run.pos.step)
                    loss = _step(model, run.opt, batch, grammar, cfg, run.pos.lr)
                    if ema is not None:
                        ema.update(model)
                    run.pos.step, run.pos.batch = run.pos.step + 1, run.pos.batch + 1
                    run.pos.ep_loss += loss * len(idx)
                    run.pos.ep_n += len(idx)
                    if progress:
                        rate = (run.pos.ep_n - ep_n0) / max(time.perf_counter() - ep_start, 1e-9)
                        progress.update(
                            task, advance=1, loss=run.pos.ep_loss / run.pos.ep_n, ex_s=rate
                        )
                    if keeper and keeper.due(run.pos.step):
                        _checkpoint(run, keeper, run_dir, fingerprint, on_checkpoint)
                step = run.pos.step
                done = sched.over(step)
                if done and run.pos.ep_n == 0:  # the clock ran out before this epoch began
                    result.stopped = stop_reason(sched.cooled(step), step, total, cfg)
                    break
                now = time.perf_counter()
                row: dict = {
                    "epoch": epoch,
                    "step": step,
                    "train_loss": run.pos.ep_loss / max(run.pos.ep_n, 1),
                    "lr": run.pos.lr,
                    "examples_per_s": (run.pos.ep_n - ep_n0) / max(now - ep_start, 1e-9),
                    "elapsed_s": now - sched.start,
                }
                if sched.cooldown:
                    row["cooldown"] = True
                if valid is not None and (epoch % cfg.eval_every == 0 or done):
                    with ema.applied(model) if ema is not None else nullcontext():
                        score = _validate(row, model, valid, grammar, pad_id, cfg, score_fn)
                        run.best.update(score, epoch, model)
                result.history.append(row)
                _record(row, metrics_file, None if progress else log)
                if done:
                    result.stopped = stop_reason(sched.cooled(step), step, total, cfg)
                    break
                if run.best.bad_evals >= cfg.patience and sched.cooldown is None:
                    if cfg.cooldown_frac == 0:
                        result.stopped = "early_stopping"
                        break
                    length = max(steps_per_epoch, int(cfg.cooldown_frac * step))
                    sched.cooldown = Cooldown(start=step, steps=length, lr0=run.pos.lr)
    finally:
        if progress:
            progress.stop()
        if metrics_file:
            metrics_file.close()
    model.load_state_dict(run.final_weights())
    model.eval()
    result.best_epoch, result.best_score = run.best.epoch, run.best.score
    result.epochs, result.steps = epoch, run.pos.step
    result.seconds = time.perf_counter() - sched.start
    # what only training needed (optimizer state, gradients, freed activations) goes back to
    # the OS now, so calibration and scoring add to the weights, not to training's peak
    model.zero_grad(set_to_none=True)
    del run
    release_memory()
    return result


def _checkpoint(
    run: _Run,
    keeper: Checkpoints,
    run_dir: Path,
    fingerprint: str,
    on_checkpoint: Callable[[dict[str, torch.Tensor]], None] | None,
) -> None:
    """Save the run (and hand out its best weights); after a stop signal, stop here."""
    keeper.saving = True
    try:
        if on_checkpoint is not None:
            on_checkpoint(run.final_weights())
        run.save(run_dir, fingerprint)
    finally:
        keeper.saving = False
    keeper.saved()
    if keeper.signal is not None:
        name = signal.Signals(keeper.signal).name
        raise Interrupted(
            f"training stopped by {name} at step {run.pos.step}; its state and best weights so "
            f"far are saved in {run_dir}",
            keeper.signal,
        )


def _step(
    model: RegressionTransformer,
    opt: torch.optim.Optimizer,
    batch: Sequence[Batch],
    grammar: GrammarTable,
    cfg: TrainConfig,
    lr: float,
) -> float:
    """One optimiser step at learning rate ``lr`` on a batch given as micro-batches (their
    gradients add up to the whole batch's); returns the batch loss."""
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    over, total = sum(part.weight_sum for part in batch), 0.0
    for part in batch:  # one part's activations at a time
        loss = batch_loss(model, part, grammar, cfg.label_smoothing, over)
        loss.backward()
        total += float(loss.detach())
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return total


def _record(row: dict, metrics_file: IO[str] | None, log: Callable[[str], None] | None) -> None:
    """One epoch's row to metrics.jsonl (flushed: a crash keeps every finished epoch) and log."""
    if metrics_file:
        metrics_file.write(json.dumps(row) + "\n")
        metrics_file.flush()
    if log:
        log(json.dumps(row))


def _optimizer(model: RegressionTransformer, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on embeddings, norms, biases or the ensemble
    members' input scales, which decay would pull towards 0 and so towards each other)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        matrix = p.dim() >= 2 and "emb" not in name and name != "member_scale"
        (decay if matrix else no_decay).append(p)
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )


def _validate(
    row: dict,
    model: RegressionTransformer,
    valid: tuple[Sequence[Row], Targets],
    grammar: GrammarTable,
    pad_id: int,
    cfg: TrainConfig,
    score_fn: Callable[[], float] | None,
) -> float:
    """Validation loss (and Spearman) into ``row``; returns the score to select on (higher wins)."""
    # as training batches: larger ones only add a memory peak of their own (benchmarks/memory.py)
    row["valid_loss"] = eval_loss(
        model, valid[0], valid[1], grammar, pad_id, cfg.batch_size, cfg.max_positions
    )
    if cfg.select != "spearman":
        return -row["valid_loss"]
    if score_fn is None:
        raise ValueError("select='spearman' needs a score function (validation data)")
    row["valid_spearman"] = score = score_fn()
    return score


def _progress(enabled: bool, total: int):
    """A rich progress bar with loss and throughput, or None when disabled / not a terminal."""
    if not enabled:
        return None
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[ex_s]:.0f} ex/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )
    progress.start()
    return progress
