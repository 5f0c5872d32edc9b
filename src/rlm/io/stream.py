"""Training data larger than memory: ``ExampleStream`` reads labelled examples from files as
training asks for them, each reader (data-parallel rank x data-loader worker) its own disjoint
shard, shuffled through a bounded buffer. Torch-free.

* **Formats**: JSON Lines (plain or gzip; each reader parses only its own lines) and Parquet
  (each reader its own row groups), read by ``rlm.io.readers.iter_examples``, so a row becomes
  the same Example as when the file is read whole; CSV works too (every reader scans it).
* **Shuffling**: per epoch the files are visited in a seeded order and examples pass through a
  buffer of ``shuffle_buffer`` rows, from which a seeded random one leaves as each new one
  enters (the buffered shuffle of TF ``shuffle`` / WebDataset). Rows far apart in a file are
  only mixed across epochs by the file order, so a file sorted by target should be shuffled
  once on disk first.
* **Determinism and resume**: an epoch's order depends only on the seed, the epoch and the
  shard, so a resumed run replays the epoch and skips what it had done (the cost is reading,
  not training, those rows again).
* **What the model is fitted on**: ``skim`` reads every row once, counting them and keeping a
  uniform sample of ``sample_rows`` (reservoir sampling) on which the vocabularies, target
  scales and field statistics are fitted.

Memory is the buffer plus one chunk of encoded rows, whatever the data's size.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .examples import Example
from .files import file_kind
from .readers import iter_examples
from .rows import WHOLE, Layout, Shard


@dataclass(frozen=True)
class StreamConfig:
    """How a stream is read: ``shuffle_buffer`` rows shuffled together (0: file order),
    ``sample_rows`` rows to fit vocabularies and scales on, ``seed`` for both, ``workers``
    data-loader processes reading and encoding in parallel with training (0: in the training
    process)."""

    shuffle_buffer: int = 10_000
    sample_rows: int = 10_000
    seed: int = 0
    workers: int = 0

    def __post_init__(self) -> None:
        if self.shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer={self.shuffle_buffer}: use 0 (no shuffle) or more")
        if self.sample_rows < 1:
            raise ValueError(f"sample_rows={self.sample_rows}: fit on at least one row")
        if self.workers < 0:
            raise ValueError(f"workers={self.workers}: use 0 (read in this process) or more")


class ExampleStream:
    """Labelled examples of one or more files, read lazily. Give it to ``RegressionLM.fit``
    in place of a list of examples, or iterate ``epoch(e, shard)`` yourself."""

    def __init__(
        self,
        paths: str | Path | Sequence[str | Path],
        *,
        targets: Sequence[str] | None = None,
        layout: Layout | None = None,
        y_key: str | None = "y",
        split: str | None = None,
        config: StreamConfig | None = None,
    ) -> None:
        items = [paths] if isinstance(paths, str | Path) else list(paths)
        self.paths = [Path(p) for p in items]
        if not self.paths:
            raise ValueError("an ExampleStream needs at least one file")
        for p in self.paths:
            if not p.is_file():
                raise ValueError(f"{p} does not exist or is not a file")
            file_kind(p)  # an unknown kind fails now, not mid-epoch
        self.targets = None if targets is None else tuple(targets)
        self.layout, self.y_key, self.split = layout or Layout(), y_key, split
        self.config = config or StreamConfig()
        self.rows: int | None = None  # counted by skim
        self._sample: list[Example] | None = None

    def _read(self, path: Path, shard: Shard) -> Iterator[Example]:
        return iter_examples(
            path, targets=self.targets, layout=self.layout, y_key=self.y_key,
            split=self.split, shard=shard,
        )  # fmt: skip

    def skim(self) -> list[Example]:
        """Read every row once: count them (``self.rows``) and return a uniform sample of
        ``config.sample_rows`` of them, in file order (reservoir sampling, seeded). Read once;
        later calls return the same sample."""
        if self._sample is not None:
            return self._sample
        k, rng = self.config.sample_rows, np.random.default_rng(self.config.seed)
        sample: list[tuple[int, Example]] = []
        n = 0
        for path in self.paths:
            for e in self._read(path, WHOLE):
                if n < k:
                    sample.append((n, e))
                else:
                    j = int(rng.integers(0, n + 1))
                    if j < k:
                        sample[j] = (n, e)
                n += 1
        if n == 0:
            raise ValueError(f"{', '.join(map(str, self.paths))}: no rows to train on")
        self.rows = n
        self._sample = [e for _, e in sorted(sample, key=lambda t: t[0])]
        return self._sample

    def epoch(self, epoch: int, shard: Shard = WHOLE) -> Iterator[Example]:
        """This shard's examples for ``epoch``, shuffled: the same order for the same seed,
        epoch and shard."""
        rng = np.random.default_rng([self.config.seed, epoch, shard.index, shard.count])
        order = rng.permutation(len(self.paths))
        rows = (e for i in order for e in self._read(self.paths[i], shard))
        size = self.config.shuffle_buffer
        if size <= 1:
            yield from rows
            return
        buffer: list[Example] = []
        for e in rows:
            if len(buffer) < size:
                buffer.append(e)
                continue
            j = int(rng.integers(0, size))
            yield buffer[j]
            buffer[j] = e
        rng.shuffle(buffer)  # type: ignore[arg-type]
        yield from buffer

    def fingerprint(self, *, portable: bool = False) -> str:
        """Names what a resumed run must read again: the files (path, size, modification
        time) and how they are read. ``portable``: file names and sizes only, the same for
        copies of the files on other machines (what data-parallel ranks compare)."""
        if portable:
            parts = [f"{p.name}:{os.stat(p).st_size}" for p in self.paths]
        else:
            parts = [
                f"{p.resolve()}:{os.stat(p).st_size}:{os.stat(p).st_mtime_ns}" for p in self.paths
            ]
        parts += [repr((self.targets, self.layout, self.y_key, self.split, self.config))]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()
