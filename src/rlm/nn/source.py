"""What the encoder reads, as padded tensors: ``Source``, and ``collate`` that builds it.

Two kinds of encoded input reach the model, and one batch type carries both:

* text (``rlm.inputs.vocab``): a list of token ids per input; positions are 0..T-1;
* fields (``rlm.inputs.fields``): a ``FieldRow`` per input, adding per position a key id,
  a position *within the field* and the number features.

Shapes: B inputs, T positions (the longest input; shorter ones padded), F number features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..inputs.fields import FieldRow

Row = Sequence[int] | FieldRow


@dataclass
class Source:
    ids: torch.Tensor  # (B, T) int64 token ids, pad_id at padding
    pad: torch.Tensor  # (B, T) bool, True at padding
    pos: torch.Tensor | None = None  # (B, T) int64; None: 0..T-1 (text)
    keys: torch.Tensor | None = None  # (B, T) int64 key ids (fields only)
    nums: torch.Tensor | None = None  # (B, T, F) float32 number features (fields only)

    def __len__(self) -> int:
        return self.ids.shape[0]

    def to(self, device: torch.device | str) -> Source:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return Source(
            self.ids.to(device),
            self.pad.to(device),
            move(self.pos),
            move(self.keys),
            move(self.nums),
        )


def collate(rows: Sequence[Row], pad_id: int) -> Source:
    """Ragged encoded inputs -> one padded ``Source`` (every row of one kind)."""
    if not rows:
        raise ValueError("collate needs at least one input")
    lengths = torch.as_tensor([len(r) for r in rows])
    t = int(lengths.max())
    pad = torch.arange(t)[None, :] >= lengths[:, None]  # (B, T)
    if not isinstance(rows[0], FieldRow):
        ids = torch.full((len(rows), t), pad_id, dtype=torch.int64)
        for i, s in enumerate(rows):
            ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.int64)
        return Source(ids, pad)
    fields: Sequence[FieldRow] = rows  # type: ignore[assignment]
    f = fields[0].nums.shape[1]
    ids = np.full((len(rows), t), pad_id, dtype=np.int64)
    keys = np.zeros((len(rows), t), dtype=np.int64)
    pos = np.zeros((len(rows), t), dtype=np.int64)
    nums = np.zeros((len(rows), t, f), dtype=np.float32)
    for i, r in enumerate(fields):
        n = len(r)
        ids[i, :n], keys[i, :n], pos[i, :n], nums[i, :n] = r.ids, r.keys, r.pos, r.nums
    return Source(
        torch.from_numpy(ids),
        pad,
        torch.from_numpy(pos),
        torch.from_numpy(keys),
        torch.from_numpy(nums),
    )
