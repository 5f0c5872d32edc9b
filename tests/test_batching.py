"""The micro-batcher (asyncio plumbing, with a fake model) and per-request-seeded sampling."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from rlm.io import load_demo
from rlm.serve.batching import Job, MicroBatcher, QueueFull, sample_jobs


class FakeModel:
    """Records the batches it sees; each input's result is its text length, S times."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.batches: list[list[int]] = []  # input count per job, per call
        self.delay = delay
        self.fail = fail
        self.threads: set[str] = set()
        self.seen: list[str] = []

    def __call__(self, jobs: Sequence[Job]) -> list[np.ndarray]:
        self.threads.add(threading.current_thread().name)
        self.batches.append([len(j.inputs) for j in jobs])
        self.seen += [t for j in jobs for t in j.inputs]
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("model exploded")
        return [np.array([[[len(t)]] * j.samples for t in j.inputs], dtype=float) for j in jobs]


def run(coro):
    return asyncio.run(coro)


def test_concurrent_jobs_share_calls_up_to_max_batch() -> None:
    fake = FakeModel()

    async def go():
        b = MicroBatcher(fake, max_batch=4, max_wait_s=0.2, max_queue=100)
        out = await asyncio.gather(*(b.submit(["x" * i], 2, 0) for i in range(1, 11)))
        await b.close()
        return b, out

    b, out = run(go())
    assert [r.shape for r in out] == [(1, 2, 1)] * 10
    assert [float(r[0, 0, 0]) for r in out] == list(range(1, 11))  # each caller gets its own
    assert [sum(c) for c in fake.batches] == [4, 4, 2]
    assert b.stats.batches == 3 and b.stats.requests == 10 and b.stats.largest_batch == 4
    assert threading.main_thread().name not in fake.threads  # ran off the event loop


def test_no_batching_and_oversized_jobs() -> None:
    fake = FakeModel()

    async def go():
        off = MicroBatcher(fake, max_batch=1, max_wait_s=0.0, max_queue=100)
        await asyncio.gather(*(off.submit(["a"], 1, 0) for _ in range(5)))
        await off.close()
        on = MicroBatcher(fake, max_batch=4, max_wait_s=0.05, max_queue=100)
        big = await on.submit(["a"] * 6, 1, 0)  # larger than max_batch: runs alone, unsplit
        await on.close()
        return big

    assert run(go()).shape == (6, 1, 1)
    assert fake.batches == [[1]] * 5 + [[6]]


def test_a_job_that_does_not_fit_leads_the_next_batch() -> None:
    fake = FakeModel()

    async def go():
        b = MicroBatcher(fake, max_batch=4, max_wait_s=0.1, max_queue=100)
        await asyncio.gather(b.submit(["a"] * 3, 1, 0), b.submit(["b"] * 3, 1, 0))
        await b.close()

    run(go())
    assert fake.batches == [[3], [3]]


def test_full_queue_is_refused_at_once() -> None:
    fake = FakeModel(delay=0.3)

    async def go():
        b = MicroBatcher(fake, max_batch=1, max_wait_s=0.0, max_queue=1)
        first = asyncio.ensure_future(b.submit(["a"], 1, 0))
        await asyncio.sleep(0.05)  # the worker holds the first job
        second = asyncio.ensure_future(b.submit(["b"], 1, 0))  # waits in the queue
        await asyncio.sleep(0)
        t = time.perf_counter()
        with pytest.raises(QueueFull, match="busy"):
            await b.submit(["c"], 1, 0)
        refused_in = time.perf_counter() - t
        await asyncio.gather(first, second)
        await b.close()
        return b, refused_in

    b, refused_in = run(go())
    assert refused_in < 0.1 and b.stats.rejected == 1 and b.stats.requests == 2


def test_model_errors_reach_every_caller_and_the_worker_survives() -> None:
    fake = FakeModel(fail=True)

    async def go():
        b = MicroBatcher(fake, max_batch=8, max_wait_s=0.05, max_queue=10)
        res = await asyncio.gather(
            b.submit(["a"], 1, 0), b.submit(["b"], 1, 0), return_exceptions=True
        )
        fake.fail = False
        ok = await b.submit(["abc"], 1, 0)
        await b.close()
        return res, ok

    res, ok = run(go())
    assert all(isinstance(r, RuntimeError) for r in res)
    assert float(ok[0, 0, 0]) == 3.0


def test_cancelled_callers_are_skipped() -> None:
    fake = FakeModel(delay=0.2)

    async def go():
        b = MicroBatcher(fake, max_batch=1, max_wait_s=0.0, max_queue=10)
        first = asyncio.ensure_future(b.submit(["a"], 1, 0))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(b.submit(["gone"], 1, 0))
        await asyncio.sleep(0)
        gone.cancel()  # the client went away while queued
        last = await b.submit(["z"], 1, 0)
        await first
        await b.close()
        return last

    assert float(run(go())[0, 0, 0]) == 1.0
    assert fake.seen == ["a", "z"]


def test_invalid_settings() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(FakeModel(), max_batch=0, max_wait_s=0, max_queue=1)


# -- sampling with per-request seeds, on the tiny trained model --------------------------------


def _jobs(specs: list[tuple[list[str], int, int]]) -> list[Job]:
    loop = asyncio.new_event_loop()
    try:
        return [Job(t, s, seed, loop.create_future()) for t, s, seed in specs]
    finally:
        loop.close()


def test_draws_depend_on_the_request_only_not_on_its_batch(tiny_model) -> None:
    texts = tiny_model.texts([e.x for e in load_demo("nas201", "test")[:12]])
    mine = (texts[:3], 16, 7)
    alone = sample_jobs(tiny_model, _jobs([mine]))[0]
    crowd = [(texts[3:8], 16, 1), ([*texts[8:9], "x" * 40], 16, 2), mine, (texts[9:], 4, 3)]
    together = sample_jobs(tiny_model, _jobs(crowd))
    assert alone.shape == (3, 16, 2)
    np.testing.assert_array_equal(together[2], alone)
    assert [r.shape for r in together] == [(5, 16, 2), (2, 16, 2), (3, 16, 2), (3, 4, 2)]
    other_seed = sample_jobs(tiny_model, _jobs([(texts[:3], 16, 8)]))[0]
    assert not np.array_equal(other_seed, alone)
    assert np.isfinite(alone).all()


def test_server_draws_equal_the_library_sampler(tiny_model) -> None:
    """One request of the server and RegressionLM.sample with the same seed: the same draws."""
    x = tiny_model.texts([e.x for e in load_demo("nas201", "test")[:2]])
    ours = sample_jobs(tiny_model, _jobs([(x, 500, 0)]))[0]
    np.testing.assert_array_equal(ours, tiny_model.sample(x, 500, seed=0))


def test_a_lone_sequential_client_does_not_wait() -> None:
    fake = FakeModel()

    async def go():
        b = MicroBatcher(fake, max_batch=8, max_wait_s=0.5, max_queue=10)
        t = time.perf_counter()
        for _ in range(3):
            await b.submit(["a"], 1, 0)
        lone = time.perf_counter() - t
        await asyncio.gather(*(b.submit(["b"], 1, 0) for _ in range(3)))  # a burst: batched
        await b.close()
        return lone

    lone = run(go())
    assert lone < 0.3  # three requests, none waited 0.5 s
    assert fake.batches[:3] == [[1]] * 3 and fake.batches[3] == [1, 1, 1]
