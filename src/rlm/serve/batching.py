"""Micro-batching for serving: requests that arrive together share one model call.

Two parts, kept apart so each can be tested alone:

* :class:`MicroBatcher` is model-agnostic asyncio plumbing. Requests wait in a bounded queue; one
  worker per model takes the first waiting request, keeps collecting until ``max_batch`` inputs
  or ``max_wait_s`` seconds, and hands the whole batch to a blocking ``run`` function in a worker
  thread (``asyncio.to_thread``), so the event loop keeps accepting requests while the model
  runs. It waits only when company is likely (requests already queued, or the previous batch
  had several), so a lone client pays no batching delay. Requests that queue up during a model call form the next batch, so under load batches
  grow by themselves even with ``max_wait_s=0``. A full queue is refused at once
  (:class:`QueueFull`, HTTP 503 in the server) rather than letting latency grow without bound.
* :func:`sample_jobs` is the ``run`` function for a :class:`~rlm.predictor.Predictor`: one batched,
  grammar-constrained decoding pass per distinct sample count, in which every request draws its
  randomness from its *own* seeded stream. A request's numbers therefore depend on its inputs,
  ``samples`` and ``seed`` only, never on which other requests happened to share its batch
  (up to float rounding in batched matrix products; see :func:`sample_jobs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..numbers.decoding import DecodeConfig, uniforms
from ..predict.draws import Draws, batches

if TYPE_CHECKING:
    from ..predictor import Predictor


class QueueFull(RuntimeError):
    """The batcher's queue is at its bound: the caller should retry later (HTTP 503)."""


@dataclass(eq=False)
class Job:
    """One request: its inputs (strings or mappings, as a model reads them), sample count and
    seed; result (n, S, K)."""

    inputs: list[Any]
    samples: int
    seed: int
    future: asyncio.Future[np.ndarray] = field(repr=False)
    queued_at: float = 0.0


@dataclass
class BatchStats:
    """Counters since start: what /health reports and the tests check."""

    requests: int = 0
    inputs: int = 0
    batches: int = 0
    rejected: int = 0
    largest_batch: int = 0  # inputs in one model call
    busy_s: float = 0.0  # time spent inside the run function

    def to_dict(self) -> dict[str, Any]:
        mean = self.inputs / self.batches if self.batches else 0.0
        return {
            "requests": self.requests,
            "inputs": self.inputs,
            "batches": self.batches,
            "rejected": self.rejected,
            "largest_batch": self.largest_batch,
            "mean_batch_inputs": round(mean, 3),
            "busy_s": round(self.busy_s, 3),
        }


RunFn = Callable[[Sequence[Job]], Sequence[np.ndarray]]


class MicroBatcher:
    """Collect concurrent jobs into batches and run each batch in a worker thread.

    ``max_batch`` bounds the inputs of one call (a job larger than that runs alone, never split);
    ``max_wait_s`` is how long the first job of a batch waits for company (only when company is
    likely: jobs already queued, or several in the previous batch); ``max_queue`` bounds the
    jobs waiting. ``max_batch=1, max_wait_s=0`` turns batching off (one job per call).
    """

    def __init__(self, run: RunFn, *, max_batch: int, max_wait_s: float, max_queue: int) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError(
                f"max_batch={max_batch}, max_queue={max_queue} must be >= 1 and "
                f"max_wait_s={max_wait_s} >= 0"
            )
        self.run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.stats = BatchStats()
        self._queue: asyncio.Queue[Job] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._carry: Job | None = None  # a job that did not fit in the previous batch
        self._last_jobs = 0  # requests in the previous batch

    @property
    def pending(self) -> int:
        return (self._queue.qsize() if self._queue is not None else 0) + (self._carry is not None)

    def _ensure_started(self) -> asyncio.Queue[Job]:
        # Started lazily, in the loop that submits: works with or without an ASGI lifespan.
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue(self.max_queue)
            self._carry = None
            self._worker = asyncio.get_running_loop().create_task(self._loop())
        return self._queue

    async def submit(self, inputs: list[Any], samples: int, seed: int) -> np.ndarray:
        """Queue one job and wait for its draws (n, samples, K); QueueFull when at the bound."""
        queue = self._ensure_started()
        fut: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        job = Job(inputs, samples, seed, fut, time.perf_counter())
        try:
            queue.put_nowait(job)
        except asyncio.QueueFull:
            self.stats.rejected += 1
            raise QueueFull(
                f"the server is busy: {self.max_queue} requests are already waiting; retry shortly"
            ) from None
        return await fut

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._worker = None
        self._queue = None

    async def _next_batch(self, queue: asyncio.Queue[Job]) -> list[Job]:
        first = self._carry if self._carry is not None else await queue.get()
        self._carry = None
        batch, n = [first], len(first.inputs)
        # Wait for company only when it is likely: others are already queued, or the previous
        # batch had several requests. A lone sequential client then pays no wait at all.
        company = not queue.empty() or self._last_jobs > 1
        deadline = time.perf_counter() + (self.max_wait_s if company else 0.0)
        while n < self.max_batch:
            if queue.empty():
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    job = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    break
            else:
                job = queue.get_nowait()
            if n + len(job.inputs) > self.max_batch:
                self._carry = job  # first in line for the next batch
                break
            batch.append(job)
            n += len(job.inputs)
        self._last_jobs = len(batch)
        return batch

    async def _loop(self) -> None:
        queue = self._queue
        assert queue is not None
        while True:
            batch = [j for j in await self._next_batch(queue) if not j.future.done()]
            if not batch:  # every caller went away (cancelled) while waiting
                continue
            n = sum(len(j.inputs) for j in batch)
            start = time.perf_counter()
            try:
                results = await asyncio.to_thread(self.run, batch)
            except Exception as e:  # the model failed: every caller of this batch hears of it
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(e)
                continue
            finally:
                self.stats.busy_s += time.perf_counter() - start
            self.stats.batches += 1
            self.stats.requests += len(batch)
            self.stats.inputs += n
            self.stats.largest_batch = max(self.stats.largest_batch, n)
            for job, res in zip(batch, results, strict=True):
                if not job.future.done():  # a caller may have disconnected meanwhile
                    job.future.set_result(res)


# ----------------------------------------------------------------------------------------------
# The run function for a model (RegressionLM, or OnnxRegressor without torch)


def sample_jobs(model: Predictor, jobs: Sequence[Job]) -> list[np.ndarray]:
    """Draws (n_j, S_j, K) for every job: one decoding pass per distinct sample count.

    Sampling is by inverse CDF with uniforms drawn per job from its seed
    (``rlm.numbers.decoding.uniforms``), in the job's own (n_j, S_j, L) shape, so a job's draws
    do not depend on its batch-mates. (Batched matrix products may round differently for
    different batch shapes; a token can only change when a uniform falls within ~1e-7 of a
    probability boundary.) They are the draws that ``model.sample(inputs, samples, seed=seed)``
    gives for the same request, in either runtime. Temperature 1, no top-p.
    """
    if model.scaler is not None:  # a value head: one forward pass per job, nothing to share
        return [model.sample(j.inputs, j.samples, seed=j.seed) for j in jobs]
    _, codec = model._pipeline()
    network = model._runtime()
    length = codec.length
    results: list[np.ndarray | None] = [None] * len(jobs)
    by_samples: dict[int, list[int]] = {}
    for i, job in enumerate(jobs):
        by_samples.setdefault(job.samples, []).append(i)
    for s, members in by_samples.items():
        rows = [r for i in members for r in model.encode_inputs(jobs[i].inputs)]
        u = np.concatenate(
            [uniforms(jobs[i].seed, (len(jobs[i].inputs), s, length)) for i in members]
        )  # (rows, s, L)
        toks = np.empty((len(rows), s, length), dtype=np.int64)
        # memory bounded as model.sample bounds it: sequences and encoder positions per pass
        for idx in batches(rows, max(1, model.max_sequences // s)):
            part = [rows[j] for j in idx]
            toks[idx] = network.tokens(
                part, codec.grammar, s, DecodeConfig(), length, u[idx].reshape(-1, length)
            )
        draws = codec.decode(toks)
        at = 0
        for i in members:
            n = len(jobs[i].inputs)
            units = model.to_target_units(draws[at : at + n], jobs[i].inputs)
            how = Draws(n=s, k=len(codec.names), cfg=DecodeConfig(), seed=jobs[i].seed)
            results[i] = model.blended(units, jobs[i].inputs, how)  # a blend's member mixed in
            at += n
    return [r for r in results if r is not None]
