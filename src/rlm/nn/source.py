"""What the encoder reads, as padded tensors: ``Source``, and ``collate`` that builds it from
the numpy batch of ``rlm.inputs.padding`` (text ids, or fields: keys, positions, features).

Shapes: B inputs, T positions (the longest input; shorter ones padded), F number features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..inputs.padding import Row, pad_rows

__all__ = ["Row", "Source", "collate"]


@dataclass
class Source:
    ids: torch.Tensor  # (B, T) int64 token ids, pad_id at padding
    pad: torch.Tensor  # (B, T) bool, True at padding
    pos: torch.Tensor | None = None  # (B, T) int64; None: 0..T-1 (text)
    keys: torch.Tensor | None = None  # (B, T) int64 key ids (fields only)
    nums: torch.Tensor | None = None  # (B, T, F) float32 number features (fields only)
    vecs: torch.Tensor | None = None  # (B, T, E) float32 backbone hidden states (vectors only)

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
            move(self.vecs),
        )


def collate(rows: Sequence[Row], pad_id: int) -> Source:
    """Ragged encoded inputs -> one padded ``Source`` (every row of one kind); the arrays of
    ``rlm.inputs.padding.pad_rows``, shared with torch, not copied."""
    p = pad_rows(rows, pad_id)

    def tensor(a: np.ndarray | None) -> torch.Tensor | None:
        return None if a is None else torch.from_numpy(a)

    return Source(
        torch.from_numpy(p.ids),
        torch.from_numpy(p.pad),
        *map(tensor, (p.pos, p.keys, p.nums, p.vecs)),
    )
