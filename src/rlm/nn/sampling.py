"""The PyTorch model as a runtime for ``rlm.predict.draws``: ``TorchNetwork`` turns a batch of
encoded inputs into constrained tokens (``rlm.nn.decoding``) or a value head's output, on the CPU.
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
from .model import RegressionTransformer
from .source import Row, collate


class TorchNetwork:
    """A ``RegressionTransformer`` (put in eval mode) and the pad id of its input tokenizer."""

    def __init__(self, net: RegressionTransformer, pad_id: int) -> None:
        self.net, self.pad_id = net.eval(), pad_id

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
        src = collate(rows, self.pad_id)
        return decode(self.net, src, grammar, samples, config, length=length, uniforms=uniforms)

    @torch.inference_mode()
    def values(self, rows: Sequence[Row]) -> np.ndarray:
        """The value head's output (B, M, K, C) as float32 numpy."""
        return self.net.values(collate(rows, self.pad_id)).float().numpy()
