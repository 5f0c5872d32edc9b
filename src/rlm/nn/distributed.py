"""Data-parallel training on ``torchrun``: each process takes its share of every global batch,
gradients are summed across processes, and every decision is taken once for all of them.

``torchrun --nproc-per-node N -m rlm.cli train ...`` (or a script calling ``fit``) sets
``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; ``World.current()`` joins the process group the first
time it is asked (gloo on CPUs, NCCL on CUDA). Nothing else changes for the caller.

Why gradients are summed by hand rather than through ``DistributedDataParallel``: the loss of a
step is a mean over the *global* batch's tokens (or objectives), a count known only across
ranks, and it calls several entry points of the model (per-exit logits, value heads) rather
than ``forward``. Each rank computes its share's mean gradient, weighted by its share of the
loss weight; one flat all-reduce per step sums those with the loss, the weights and the step's
decisions, and dividing by the summed weight gives every rank exactly the single-process step
on the same global batch (up to float rounding in the order of the sum). gloo takes ~2 ms per
call on this 2-core machine whatever the size, so one call per step matters.

Agreement: every rank builds the same model from the same rows (the model's shapes and a digest
of the rows are compared before the first step), starts from rank 0's weights and steps with
the same summed gradients, so the weights stay identical. What is not deterministic across
processes, the clock (a time budget, checkpoint timers) and signals, is decided by rank 0 or by
any rank and shared (in the step's all-reduce; ``Sync`` at an epoch's end); validation runs on
rank 0 and its scores are broadcast, so early stopping and weight selection agree. Only rank 0
writes files.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
import torch

from .device import Placement


@dataclass(frozen=True)
class World:
    """This process's place among ``size`` data-parallel processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that logs and writes files."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    @classmethod
    def current(cls, placement: Placement | None = None) -> World:
        """From torchrun's environment; joins the process group on first use. ``placement``:
        the device training runs on (NCCL for CUDA, gloo otherwise)."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            cuda = placement is not None and placement.device.type == "cuda"
            if cuda:
                torch.cuda.set_device(placement.device)  # type: ignore[union-attr]
            dist.init_process_group("nccl" if cuda else "gloo")
        return cls(dist.get_rank(), dist.get_world_size())

    def shard(self, idx: np.ndarray) -> np.ndarray:
        """This rank's examples of a global batch: every size-th, from its rank. A batch sorted
        by length gives every rank a similar share of positions."""
        return idx[self.rank :: self.size] if self.active else idx

    def barrier(self) -> None:
        if self.active:
            _dist().barrier()


ONE = World()  # a single process


def _dist():  # torch.distributed, imported where it is used
    import torch.distributed as dist

    return dist


def sum_floats(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum across ranks (float64)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    _dist().all_reduce(t)
    return t.tolist()


def broadcast_floats(values: list[float], device: torch.device) -> list[float]:
    """Rank 0's values, on every rank."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    _dist().broadcast(t, 0)
    return t.tolist()


def broadcast_weights(model: torch.nn.Module) -> None:
    """Every rank starts from rank 0's weights (and buffers)."""
    for t in model.state_dict().values():
        _dist().broadcast(t, 0)


def check_same(
    text: str,
    what: str,
    device: torch.device,
    fix: str = "every rank must read the same rows in the same order (the same files and "
    "options on every node)",
) -> None:
    """Refuse to train when ranks hold different ``what`` (models from different data, or
    different resume positions): their steps would not add up. ``fix`` says what to do."""
    digest = hashlib.sha256(text.encode()).digest()[:6]  # 48 bits: exact in a float64
    mine = float(int.from_bytes(digest, "big"))
    dist = _dist()
    high = torch.tensor([mine], dtype=torch.float64, device=device)
    low = high.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    if high.item() != low.item():
        raise ValueError(f"the training processes hold different {what}: {fix}")


@dataclass(frozen=True)
class Shared:
    """What a data-parallel step shares besides gradients: its examples (summed over ranks),
    whether rank 0's clock says stop and its checkpoint timer says save before the next step,
    and whether any rank caught a stop signal. One process: its own figures."""

    n: int = 0
    over: bool = False
    due: bool = False
    signal: bool = False
    elapsed: float = 0.0  # rank 0's seconds into the run: what the next learning rate reads


class Sync:
    """The decisions every rank must take alike outside a step, shared in small all-reduces
    (none in one process): at an epoch's end, the clock (rank 0's) and a stop signal (any)."""

    def __init__(self, world: World, device: torch.device) -> None:
        self.world, self.device = world, device

    def over(self, flag: bool) -> bool:
        """Rank 0's answer (the clock) on every rank."""
        return self.epoch_start(flag, 0.0).over

    def epoch_start(self, over: bool, elapsed: float) -> Shared:
        """Before an epoch's first step: rank 0's clock (stop?) and its elapsed seconds."""
        if not self.world.active:
            return Shared(over=over, elapsed=elapsed)
        main = float(self.world.main)
        o, e = sum_floats([main * over, main * elapsed], self.device)
        return Shared(over=o > 0, elapsed=e)

    def checkpoint(self, due: bool, signal: bool) -> tuple[bool, bool]:
        """Rank 0's checkpoint timer, and whether any rank caught a stop signal."""
        if not self.world.active:
            return due, signal
        d, s = sum_floats([float(due and self.world.main), float(signal)], self.device)
        return d > 0 or s > 0, s > 0


def all_reduce_grads(
    model: torch.nn.Module, loss: float, weight: float, mine: Shared, main: bool
) -> tuple[float, Shared]:
    """One all-reduce per step: every parameter's gradient and the loss (this rank's means,
    weighted by its loss ``weight``), the weights, ``mine``'s figures, and which parameters
    have a gradient; then gradients and loss become the global batch's means. Returns the
    loss and the shared figures (``n == 0``: no rank had rows; the caller makes no update).

    A parameter without a gradient on some rank (no rows there) counts as zeros; one without
    a gradient anywhere keeps none, as in one process (AdamW skips it)."""
    params = [p for p in model.parameters() if p.requires_grad]
    device, sizes = params[0].device, [p.numel() for p in params]
    has = [float(p.grad is not None) for p in params]
    tail = [
        loss * weight, weight, float(mine.n), float(mine.over and main),
        float(mine.due and main), float(mine.signal), mine.elapsed if main else 0.0,
    ]  # fmt: skip
    # one copy into one flat float32 buffer (weights and gradients are float32, autocast or
    # not), scaled in one op: per-tensor ops cost more than the copy at these sizes
    flat = torch.cat(
        [
            *(p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in params),
            torch.tensor(has + tail, dtype=torch.float32, device=device),
        ]
    )
    grads = flat[: sum(sizes)]
    grads.mul_(weight)
    _dist().all_reduce(flat)
    loss_sum, total, n, over, due, signal, elapsed = flat[-len(tail) :].tolist()
    shared = Shared(round(n), over > 0, due > 0 or signal > 0, signal > 0, elapsed)
    total = total if total > 0 else 1.0  # no loss weight anywhere: the gradients are zeros
    grads.div_(total)
    flags = flat[len(grads) : len(grads) + len(params)].tolist()
    for p, flag, g in zip(params, flags, grads.split(sizes), strict=True):
        p.grad = g.view_as(p) if flag > 0 else None  # views of the reduced buffer
    return loss_sum / total, shared
