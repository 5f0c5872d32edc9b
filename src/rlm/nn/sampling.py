"""The PyTorch model as a runtime for ``rlm.predict.draws``: ``TorchNetwork`` turns a batch of
encoded inputs into constrained tokens (``rlm.nn.decoding``) or a value head's output, on its
device (``rlm.nn.device``): inputs go there, tokens and values come back as numpy.
Seeds, batching and mapping back to target units are ``rlm.predict.draws``, shared with the ONNX
runtime, so both give the same draws for the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..numbers.decoding import DecodeConfig
from ..numbers.grammar import Grammar
from .decoding import decode
from .device import CPU, Placement
from .model import RegressionTransformer
from .source import Row, Source, collate


class TorchNetwork:
    """A ``RegressionTransformer`` (put in eval mode, on the placement's device) and the pad id
    of its input tokenizer."""

    def __init__(self, net: RegressionTransformer, pad_id: int, placement: Placement = CPU) -> None:
        self.net, self.pad_id, self.placement = net.eval(), pad_id, placement

    def source(self, rows: Sequence[Row]) -> Source:
        """Encoded rows as padded tensors on the network's device."""
        src = collate(rows, self.pad_id)
        return src if self.placement.device.type == "cpu" else src.to(self.placement.device)

    def tokens(
        self,
        rows: Sequence[Row],
        grammar: Grammar,
        samples: int,
        config: DecodeConfig,
        length: int,
        uniforms: np.ndarray | None,
    ) -> np.ndarray:
        """Token ids (B, samples, length); uniforms (B*samples, length) unless greedy."""
        src = self.source(rows)
        with self.placement.autocast():
            return decode(self.net, src, grammar, samples, config, length=length, uniforms=uniforms)

    @torch.inference_mode()
    def values(self, rows: Sequence[Row]) -> np.ndarray:
        """The value head's output (B, M, K, C) as float32 numpy."""
        with self.placement.autocast():
            out = self.net.values(self.source(rows))
        return out.float().cpu().numpy()
