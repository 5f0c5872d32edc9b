"""Training: AdamW, warm-up + cosine, clipping, length bucketing, early stopping on validation.

The loss is cross-entropy over the number tokens *under the grammar*: logits of tokens the
grammar forbids at that position are masked before the softmax, exactly as at decoding time, so
the model spends no capacity on impossible strings. Missing objectives have weight 0.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from ..numbers.scaling import ScaledTargets
from ..numbers.targets import EncodedTargets
from .averaging import WeightAverage
from .config import TrainConfig
from .decoding import GrammarTable
from .heads import value_loss
from .model import RegressionTransformer
from .source import Row, Source, collate

Targets = EncodedTargets | ScaledTargets  # digit-decoder tokens, or a value head's floats


@dataclass
class Batch:
    src: Source  # (B, T) encoder positions, padded
    tgt: torch.Tensor | None  # (B, L) number-token ids (digit decoder)
    weight: torch.Tensor | None  # (B, L)
    states: torch.Tensor | None  # (B, L) grammar state before each target token
    values: torch.Tensor | None = None  # (B, K) unit-scale targets (value heads)
    value_mask: torch.Tensor | None = None  # (B, K) 1 where the objective is present

    @property
    def weight_sum(self) -> float:
        """How much this batch counts in a mean loss: its present tokens or objectives."""
        w = self.value_mask if self.values is not None else self.weight
        assert w is not None
        return float(w.sum())


def length_batches(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Shuffled batches of similar-length examples (less padding, same randomness per epoch).

    Shuffle, cut into chunks of 50 batches, sort each chunk by length, slice, shuffle batches.
    """
    order = rng.permutation(len(lengths))
    lens = np.asarray(lengths)
    chunk = batch_size * 50
    batches = []
    for i in range(0, len(order), chunk):
        part = order[i : i + chunk]
        part = part[np.argsort(lens[part], kind="stable")]
        batches += [part[j : j + batch_size] for j in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def make_batch(idx: np.ndarray, src: Sequence[Row], tg: Targets, pad_id: int) -> Batch:
    inputs = collate([src[i] for i in idx], pad_id)
    if isinstance(tg, ScaledTargets):
        values, mask = torch.as_tensor(tg.values[idx]), torch.as_tensor(tg.mask[idx])
        return Batch(inputs, None, None, None, values, mask)
    return Batch(
        inputs,
        torch.as_tensor(tg.ids[idx]),
        torch.as_tensor(tg.weight[idx]),
        torch.as_tensor(tg.states[idx], dtype=torch.int64),
    )


def grammar_loss(
    model: RegressionTransformer, batch: Batch, grammar: GrammarTable, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Weighted mean cross-entropy over allowed tokens."""
    assert batch.tgt is not None and batch.weight is not None and batch.states is not None
    b = batch.tgt.shape[0]
    bos = torch.full((b, 1), model.bos, dtype=torch.int64)
    tgt_in = torch.cat([bos, batch.tgt[:, :-1]], dim=1)  # (B, L): shift right behind BOS
    logits = model(batch.src, tgt_in)  # (B, L, V)
    allowed = grammar.mask[batch.states]  # (B, L, V)
    logp = logits.float().masked_fill(~allowed, float("-inf")).log_softmax(-1)
    nll = -logp.gather(-1, batch.tgt[..., None])[..., 0]  # (B, L)
    if label_smoothing > 0:
        # smooth only over the tokens the grammar allows here
        uniform = -logp.masked_fill(~allowed, 0.0).sum(-1) / allowed.sum(-1)
        nll = (1 - label_smoothing) * nll + label_smoothing * uniform
    return (nll * batch.weight).sum() / batch.weight.sum().clamp_min(1.0)


def batch_loss(
    model: RegressionTransformer, batch: Batch, grammar: GrammarTable, label_smoothing: float = 0.0
) -> torch.Tensor:
    """The training loss of either output: value head (MSE / Gaussian NLL) or digit decoder."""
    if batch.values is not None:
        assert batch.value_mask is not None
        return value_loss(model.values(batch.src), batch.values, batch.value_mask)
    return grammar_loss(model, batch, grammar, label_smoothing)


def lr_at(step: int, total: int, cfg: TrainConfig, elapsed_s: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to ``lr * min_lr_frac``.

    With a time budget, progress is the larger of the step fraction and the time fraction, so a
    run cut short by the clock still ends its schedule at the low learning rate.

    The warm-up counts steps only, so under a time budget with a large ``max_epochs`` it lasts
    long (possibly the whole budget, acting as a slow ramp). Measured on purpose: a warm-up
    ended by the clock (5% of the budget) made the ``small`` model collapse to a constant on
    7z configurations at lr 1e-3 (test Spearman 0.0 against 0.6 at 100 rows, 0.75 at 1,000).
    """
    warm = max(1, int(cfg.warmup_frac * total))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    if cfg.time_budget_s:
        progress = max(progress, min(1.0, elapsed_s / cfg.time_budget_s))
    floor = cfg.lr * cfg.min_lr_frac
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class Cooldown:
    """A linear anneal from ``lr0`` to the floor, started when validation stopped improving.

    Why: early stopping fires while the cosine schedule (whose horizon is ``max_epochs`` or the
    time budget) is still near its peak, so the best weights so far are high-lr weights: noisy.
    A short decay to the floor settles them, as at the end of a full schedule (the
    "warmup-stable-decay" observation); the best evaluation of the whole run is still kept.
    """

    start: int  # step at which the cool-down began
    steps: int  # its length in steps
    lr0: float

    def lr(self, step: int, floor: float) -> float:
        frac = min(1.0, (step - self.start) / self.steps)
        return self.lr0 + (floor - self.lr0) * frac

    def done(self, step: int) -> bool:
        return step >= self.start + self.steps


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
    batch_size: int = 256,
) -> float:
    model.eval()
    order = np.argsort([len(s) for s in src], kind="stable")
    total, weight = 0.0, 0.0
    for i in range(0, len(order), batch_size):
        batch = make_batch(order[i : i + batch_size], src, tg, pad_id)
        w = batch.weight_sum
        total += float(batch_loss(model, batch, grammar)) * w
        weight += w
    return total / max(weight, 1.0)


@dataclass
class _Schedule:
    """The learning rate at a step (warm-up + cosine by step and clock, or the cooldown's linear
    anneal once patience ran out) and whether training is over."""

    cfg: TrainConfig
    total: int
    start: float
    cooldown: Cooldown | None = None

    def lr(self, step: int) -> float:
        if self.cooldown:
            return self.cooldown.lr(step, self.cfg.lr * self.cfg.min_lr_frac)
        return lr_at(step, self.total, self.cfg, time.perf_counter() - self.start)

    def cooled(self, step: int) -> bool:
        return bool(self.cooldown and self.cooldown.done(step))

    def over(self, step: int) -> bool:
        return step >= self.total or _out_of_time(self.start, self.cfg) or self.cooled(step)


@dataclass
class _Best:
    """The best validation score so far, its epoch and weights, and evaluations since."""

    score: float = -math.inf
    epoch: int = -1
    state: dict[str, torch.Tensor] | None = None
    bad_evals: int = 0

    def update(self, score: float, epoch: int, model: RegressionTransformer) -> None:
        if score > self.score:
            self.score, self.epoch, self.bad_evals = score, epoch, 0
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.bad_evals += 1


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
) -> TrainResult:
    """Fit ``model`` in place and restore the best weights seen on validation.

    ``score_fn`` (higher is better) is called for select="spearman"; otherwise the validation
    loss is used. Without validation data the last weights are kept.
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    lengths = [len(s) for s in src]
    steps_per_epoch = math.ceil(len(src) / cfg.batch_size)
    total = cfg.max_steps or steps_per_epoch * cfg.max_epochs
    opt = _optimizer(model, cfg)
    metrics_file = None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        metrics_file = (run_dir / "metrics.jsonl").open("a")

    best = _Best()
    ema = WeightAverage(model, cfg.ema) if cfg.ema > 0 else None
    step, epoch = 0, 0
    result = TrainResult(-1, math.nan, 0, 0, 0.0)
    start = time.perf_counter()
    sched = _Schedule(cfg, total, start)
    progress = _progress(cfg.progress, total)
    task = progress.add_task("training", total=total, loss=math.nan, ex_s=0.0) if progress else None
    try:
        for epoch in range(1, cfg.max_epochs + 1):
            model.train()
            ep_loss, ep_n, ep_start = 0.0, 0, time.perf_counter()
            for idx in length_batches(lengths, cfg.batch_size, rng):
                batch = make_batch(idx, src, targets, pad_id)
                loss = _step(model, opt, batch, grammar, cfg, sched.lr(step))
                if ema is not None:
                    ema.update(model)
                step += 1
                ep_loss += loss * len(idx)
                ep_n += len(idx)
                if progress:
                    rate = ep_n / max(time.perf_counter() - ep_start, 1e-9)
                    progress.update(task, advance=1, loss=ep_loss / ep_n, ex_s=rate)
                if sched.over(step):
                    break
            now = time.perf_counter()
            row: dict = {
                "epoch": epoch,
                "step": step,
                "train_loss": ep_loss / max(ep_n, 1),
                "lr": opt.param_groups[0]["lr"],
                "examples_per_s": ep_n / max(now - ep_start, 1e-9),
                "elapsed_s": now - start,
            }
            done = sched.over(step)
            if sched.cooldown:
                row["cooldown"] = True
            if valid is not None and (epoch % cfg.eval_every == 0 or done):
                with ema.applied(model) if ema is not None else nullcontext():
                    score = _validate(row, model, valid, grammar, pad_id, cfg, score_fn)
                    best.update(score, epoch, model)
            result.history.append(row)
            _record(row, metrics_file, None if progress else log)
            if done:
                result.stopped = _stop_reason(sched.cooled(step), step, total, cfg)
                break
            if best.bad_evals >= cfg.patience and sched.cooldown is None:
                if cfg.cooldown_frac == 0:
                    result.stopped = "early_stopping"
                    break
                length = max(steps_per_epoch, int(cfg.cooldown_frac * step))
                sched.cooldown = Cooldown(start=step, steps=length, lr0=opt.param_groups[0]["lr"])
    finally:
        if progress:
            progress.stop()
        if metrics_file:
            metrics_file.close()
    if best.state is not None:
        model.load_state_dict(best.state)
    elif ema is not None:  # no validation: the average of the last steps
        model.load_state_dict(ema.avg)
    model.eval()
    result.best_epoch, result.best_score = best.epoch, best.score
    result.epochs, result.steps, result.seconds = epoch, step, time.perf_counter() - start
    return result


def _step(
    model: RegressionTransformer,
    opt: torch.optim.Optimizer,
    batch: Batch,
    grammar: GrammarTable,
    cfg: TrainConfig,
    lr: float,
) -> float:
    """One optimiser step at learning rate ``lr``; returns the batch loss."""
    for group in opt.param_groups:
        group["lr"] = lr
    loss = batch_loss(model, batch, grammar, cfg.label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return float(loss.detach())


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
    row["valid_loss"] = eval_loss(model, valid[0], valid[1], grammar, pad_id)
    if cfg.select != "spearman":
        return -row["valid_loss"]
    if score_fn is None:
        raise ValueError("select='spearman' needs a score function (validation data)")
    row["valid_spearman"] = score = score_fn()
    return score


def _stop_reason(cooled_down: bool, step: int, total: int, cfg: TrainConfig) -> str:
    if cooled_down:
        return "early_stopping"
    if step < total:
        return "time_budget"
    return "max_steps" if cfg.max_steps else "max_epochs"


def _out_of_time(start: float, cfg: TrainConfig) -> bool:
    return cfg.time_budget_s is not None and time.perf_counter() - start > cfg.time_budget_s


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
