"""Prediction over very many rows: chunks of inputs predicted by worker processes, answered in
the order they were given, with bounded memory. Torch-free (a worker imports what its model
needs).

Why processes: one prediction process keeps only part of a machine busy (Python between the
network's calls, one chunk at a time); N workers, each loading the model once and running with
``cores / N`` threads, keep every core busy. Why the output is the same as one process: a
chunk's draws depend only on the seed and on each input's place in its chunk
(``rlm.predict.draws``), and chunks are cut and written exactly as one process cuts and writes
them. Memory stays bounded because at most ``2 x workers`` chunks are in flight: reading waits
for writing.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from ..predictor import Predictor

T = TypeVar("T")


@dataclass(frozen=True)
class Summary:
    """What a chunk's prediction gives back: medians and interval bounds, each (B, K)."""

    point: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


@dataclass(frozen=True)
class Ask:
    """How to summarise each chunk: samples per input, interval level, sampling seed."""

    samples: int = 64
    level: float = 0.8
    seed: int = 0


def summarise(model: Predictor, xs: list[Any], ask: Ask) -> Summary:
    """One chunk, in this process."""
    p = model.distribution(xs, samples=ask.samples, level=ask.level, seed=ask.seed)
    return Summary(p.point, p.lower, p.upper)


_model: Predictor | None = None  # each worker's own copy, loaded once by _start


def _start(load: Callable[[int], Predictor], threads: int) -> None:
    global _model
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    _model = load(threads)
    if getattr(_model, "runtime_name", "") == "torch":
        import torch

        torch.set_num_threads(threads)


def _work(xs: list[Any], ask: Ask) -> Summary:
    assert _model is not None, "worker started without a model"
    return summarise(_model, xs, ask)


def worker_threads(workers: int, threads: int | None = None) -> int:
    """Threads per worker: ``threads`` when given, else this machine's cores shared out."""
    if threads is not None:
        return threads
    return max(1, (os.cpu_count() or 1) // workers)


def ordered_map(
    load: Callable[[int], Predictor],
    chunks: Iterable[T],
    inputs: Callable[[T], list[Any]],
    ask: Ask,
    *,
    workers: int,
    threads: int | None = None,
) -> Iterator[tuple[T, Summary]]:
    """(chunk, its summary) for every chunk, in order, predicted by ``workers`` processes that
    each build their model with ``load(threads)`` (a picklable callable, e.g. a
    ``functools.partial`` of a loader; ``threads``: the worker's share of the cores). ``inputs(chunk)``: the model inputs of a chunk (run here, so errors in the
    data name the row before any worker sees it)."""
    if workers < 1:
        raise ValueError(f"workers={workers}: use 1 or more")
    # spawn, not fork: a forked child of a process whose thread pools already ran can hang
    context = get_context("spawn")
    per = worker_threads(workers, threads)
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start, initargs=(load, per)
    ) as pool:
        pending: deque[tuple[T, Future[Summary]]] = deque()
        for chunk in chunks:
            pending.append((chunk, pool.submit(_work, inputs(chunk), ask)))
            if len(pending) >= 2 * workers:  # bounded: wait for the oldest before reading on
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()
