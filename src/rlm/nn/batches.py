"""What one epoch feeds the training loop: batches of encoded rows, from memory (``InMemory``)
or read from files as they are needed (``Streamed``, for data larger than memory).

Either way examples of similar length are batched together (less padding): shuffle, cut into
chunks of 50 batches, sort each chunk by length, slice, shuffle the batches. In memory the
chunks are cut from a permutation of every row; from a stream they are consecutive pieces of
the stream's own shuffled order (``rlm.io.stream``). Each item is one global step's share for
this process: under torchrun a rank takes every size-th example of an in-memory batch, or
reads its own shard of the files and forms batches of ``batch_size / size`` rows.

Shapes: an item's rows are a list of encoded inputs; ``idx`` indexes them.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..io.examples import Example
from ..io.rows import Shard
from ..io.stream import ExampleStream
from ..numbers.scaling import ScaledTargets
from ..numbers.targets import EncodedTargets
from .distributed import World
from .source import Row

Targets = EncodedTargets | ScaledTargets
CHUNK_BATCHES = 50  # batches sorted by length together: less padding, still shuffled


@dataclass(frozen=True)
class Item:
    """One step's examples for this process: ``idx`` into ``rows`` / ``targets`` (empty when
    this rank has nothing left this epoch while others still have)."""

    rows: Sequence[Row]
    targets: Targets
    lengths: Sequence[int]
    idx: np.ndarray


class Batches(Protocol):
    """An epoch's items, in an order fixed by ``rng`` (restored on resume)."""

    steps_per_epoch: int

    def plan(self, world: World) -> None:
        """Set ``steps_per_epoch`` for these ranks (the schedule's horizon)."""
        ...

    def epoch(self, epoch: int, rng: np.random.Generator, world: World) -> Iterator[Item]: ...

    def digest(self) -> str:
        """What every data-parallel rank must share (compared before training)."""
        ...


def length_batches(
    lengths: Sequence[int],
    batch_size: int,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Shuffled batches of similar-length examples (less padding, same randomness per epoch).

    ``weights`` (one per example, summing to 1): an epoch is as many draws, with replacement,
    of example i with probability ``weights[i]`` (a pretraining mixture's task weights).
    """
    n = len(lengths)
    order = rng.permutation(n) if weights is None else rng.choice(n, size=n, p=weights)
    return _sorted_batches(order, np.asarray(lengths), batch_size, rng)


def _sorted_batches(
    order: np.ndarray, lens: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    chunk = batch_size * CHUNK_BATCHES
    batches = []
    for i in range(0, len(order), chunk):
        part = order[i : i + chunk]
        part = part[np.argsort(lens[part], kind="stable")]
        batches += [part[j : j + batch_size] for j in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


@dataclass
class InMemory:
    """Every training row encoded up front; a rank takes its share of each global batch."""

    rows: Sequence[Row]
    targets: Targets
    batch_size: int
    weights: np.ndarray | None = None  # see length_batches
    lengths: list[int] = field(init=False)

    def __post_init__(self) -> None:
        if self.weights is not None and len(self.weights) != len(self.rows):
            raise ValueError(f"{len(self.weights)} sample weights for {len(self.rows)} examples")
        self.lengths = [len(r) for r in self.rows]
        self.steps_per_epoch = math.ceil(len(self.rows) / self.batch_size)

    def plan(self, world: World) -> None:
        pass  # every rank takes its share of the same global batches

    def epoch(self, epoch: int, rng: np.random.Generator, world: World) -> Iterator[Item]:
        for idx in length_batches(self.lengths, self.batch_size, rng, self.weights):
            yield Item(self.rows, self.targets, self.lengths, world.shard(idx))

    def digest(self) -> str:
        scaled = isinstance(self.targets, ScaledTargets)
        t = self.targets
        arrays = (t.values, t.mask) if scaled else (t.ids, t.weight)  # type: ignore[union-attr]
        data = b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)
        return f"{self.lengths}{hashlib.sha256(data).hexdigest()}"


Encode = Callable[[list[Example]], tuple[Sequence[Row], Targets]]


@dataclass
class Streamed:
    """Rows read from an ``ExampleStream`` chunk by chunk, each chunk encoded by ``encode``
    (in ``workers`` data-loader processes when > 0, each reading its own shard), sorted by
    length and cut into batches of ``batch_size / ranks`` rows."""

    stream: ExampleStream
    encode: Encode
    batch_size: int
    workers: int = 0

    def __post_init__(self) -> None:
        if self.stream.rows is None:
            self.stream.skim()
        self.steps_per_epoch = math.ceil((self.stream.rows or 0) / self.batch_size)

    def plan(self, world: World) -> None:
        """Steps per epoch for the schedule: the busiest rank's, bounded above (each file's
        rows are dealt out in turn, so a rank reads at most one more row per file than an even
        share; each loader worker may end on a short batch). An epoch still ends when its
        rows do; a bound keeps the schedule from ending before the last epoch does."""
        if world.size * max(1, self.workers) == 1:
            return  # one reader: rows / batch_size, as __post_init__ set it
        rows = self.stream.rows or 0
        per_rank = math.ceil(rows / world.size) + len(self.stream.paths) * max(1, self.workers)
        local = max(1, self.batch_size // world.size)
        self.steps_per_epoch = math.ceil(per_rank / local) + self.workers

    def epoch(self, epoch: int, rng: np.random.Generator, world: World) -> Iterator[Item]:
        """This rank's batches. Their order comes from the seed, the epoch and the rank, not
        from ``rng``: ranks read different numbers of chunks, and a resumed run restores
        rank 0's generator on every rank."""
        local = max(1, self.batch_size // world.size)
        chunks = _Chunks(self, epoch, world, local * CHUNK_BATCHES)
        if self.workers > 0:
            chunks = DataLoader(chunks, batch_size=None, num_workers=self.workers)  # type: ignore[assignment]
        own = np.random.default_rng([self.stream.config.seed, epoch, world.rank, 1])
        for rows, targets in chunks:
            lengths = [len(r) for r in rows]
            order = np.arange(len(rows))
            for idx in _sorted_batches(order, np.asarray(lengths), local, own):
                yield Item(rows, targets, lengths, idx)

    def digest(self) -> str:
        return self.stream.fingerprint(portable=True)  # other nodes hold copies of the files


class _Chunks(IterableDataset):
    """A torch ``IterableDataset`` of encoded chunks: in a data-loader worker, the worker reads
    its own part of this rank's shard (``Shard(rank * workers + worker, ranks * workers)``)."""

    def __init__(self, source: Streamed, epoch: int, world: World, chunk: int) -> None:
        self.source, self.epoch, self.world, self.chunk = source, epoch, world, chunk

    def __iter__(self) -> Iterator[tuple[Sequence[Row], Targets]]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        shard = Shard(self.world.rank * workers + worker, self.world.size * workers)
        examples = self.source.stream.epoch(self.epoch, shard)
        while batch := list(itertools.islice(examples, self.chunk)):
            yield self.source.encode(batch)
