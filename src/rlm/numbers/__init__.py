"""What the decoder writes: numbers as fixed-length token strings, their grammars, and the codec
that lays several targets out as one token sequence. Torch-free.

``tokenizers`` (``NumberConfig`` and the ieee / p10 / normalized schemes) -> ``grammar`` (the DFA
that constrained decoding follows) -> ``targets`` (several objectives, missing ones masked).
"""

from __future__ import annotations

from .grammar import Grammar
from .targets import EncodedTargets, TargetCodec
from .tokenizers import (
    IEEETokenizer,
    NormalizedTokenizer,
    NumberConfig,
    NumberTokenizer,
    P10Tokenizer,
    make_number_tokenizer,
    relative_precision,
)

__all__ = [
    "EncodedTargets",
    "Grammar",
    "IEEETokenizer",
    "NormalizedTokenizer",
    "NumberConfig",
    "NumberTokenizer",
    "P10Tokenizer",
    "TargetCodec",
    "make_number_tokenizer",
    "relative_precision",
]
