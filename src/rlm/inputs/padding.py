"""Ragged encoded inputs -> one padded batch of numpy arrays. Torch-free.

Two kinds of encoded input reach a network, and one batch type carries both:

* text (``rlm.inputs.vocab``): a list of token ids per input; positions are 0..T-1;
* fields (``rlm.inputs.fields``, ``rlm.inputs.textnums``): a ``FieldRow`` per input, adding per
  position a key id, a position *within the field* and the number features;
* vectors (``rlm.nn.backbone``): a ``VectorRow`` per input, a frozen encoder's hidden states.

The PyTorch model wraps these arrays as tensors without copying (``rlm.nn.source``); the ONNX
runtime feeds them to its graphs as they are. ``micro_batches`` bounds the positions of one pass
(training, validation and prediction all cut their batches with it).

Shapes: B inputs, T positions (the longest input; shorter ones padded), F number features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .fields import FieldRow


@dataclass
class VectorRow:
    """One input read by a frozen pretrained encoder: its hidden states (T, E), float16, and
    the features (T, F) of the numbers that start at each position (zero elsewhere), or None."""

    vecs: np.ndarray
    nums: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.vecs)

    @property
    def nbytes(self) -> int:
        return self.vecs.nbytes + (0 if self.nums is None else self.nums.nbytes)


Row = Sequence[int] | FieldRow | VectorRow


@dataclass
class Padded:
    ids: np.ndarray  # (B, T) int64 token ids, pad_id at padding
    pad: np.ndarray  # (B, T) bool, True at padding
    pos: np.ndarray | None = None  # (B, T) int64; None: 0..T-1 (text)
    keys: np.ndarray | None = None  # (B, T) int64 key ids (fields only)
    nums: np.ndarray | None = None  # (B, T, F) float32 number features (fields only)
    vecs: np.ndarray | None = None  # (B, T, E) float32 hidden states (vectors only)

    def __len__(self) -> int:
        return self.ids.shape[0]


def pad_rows(rows: Sequence[Row], pad_id: int) -> Padded:
    """Ragged encoded inputs -> one ``Padded`` batch (every row of one kind)."""
    if not rows:
        raise ValueError("a batch needs at least one input")
    lengths = np.array([len(r) for r in rows])
    t = int(lengths.max())
    pad = np.arange(t)[None, :] >= lengths[:, None]  # (B, T)
    ids = np.full((len(rows), t), pad_id, dtype=np.int64)
    if isinstance(rows[0], VectorRow):
        vectors: Sequence[VectorRow] = rows  # type: ignore[assignment]
        vecs = np.zeros((len(rows), t, vectors[0].vecs.shape[1]), dtype=np.float32)
        first = vectors[0].nums
        nums = None if first is None else np.zeros((len(rows), t, first.shape[1]), np.float32)
        for i, r in enumerate(vectors):
            vecs[i, : len(r)] = r.vecs
            if nums is not None:
                nums[i, : len(r)] = r.nums
        return Padded(ids, pad, nums=nums, vecs=vecs)
    if not isinstance(rows[0], FieldRow):
        for i, s in enumerate(rows):
            ids[i, : len(s)] = np.asarray(s, dtype=np.int64)
        return Padded(ids, pad)
    fields: Sequence[FieldRow] = rows  # type: ignore[assignment]
    f = fields[0].nums.shape[1]
    keys = np.zeros((len(rows), t), dtype=np.int64)
    pos = np.zeros((len(rows), t), dtype=np.int64)
    nums = np.zeros((len(rows), t, f), dtype=np.float32)
    for i, r in enumerate(fields):
        n = len(r)
        ids[i, :n], keys[i, :n], pos[i, :n], nums[i, :n] = r.ids, r.keys, r.pos, r.nums
    return Padded(ids, pad, pos, keys, nums)


def micro_batches(
    idx: np.ndarray, lengths: Sequence[int], max_positions: int, copies: int = 1
) -> list[np.ndarray]:
    """``idx`` cut into parts of at most ``max_positions`` encoder positions each (rows x the
    longest row x the copies the network makes of each position, ``copies_per_position``),
    whole rows, at least one per part: activation memory grows with positions, so a part bounds
    it whatever the inputs' length."""
    longest = max(int(np.max(np.asarray(lengths)[idx])), 1) * copies
    rows = max(1, max_positions // longest)
    return [idx[i : i + rows] for i in range(0, len(idx), rows)]
