"""What the encoder reads: a row's input (a string, or a JSON-like mapping) serialised to
canonical text (``text``), then split into token ids by the input tokenizer (``vocab``).
Torch-free; the field and number encoders of structured inputs belong here too.
"""

from __future__ import annotations

from .text import SerializerConfig, serialize
from .vocab import InputTokenizer, VocabConfig

__all__ = ["InputTokenizer", "SerializerConfig", "VocabConfig", "serialize"]
