"""rlm: regression language models. Text in, numbers out, digit by digit.

The subpackages follow a row through the pipeline::

    io  ->  inputs  ->  nn  ->  numbers  ->  predict
    rows    text, ids   model   decoded      median, intervals,
                                numbers      calibration, metrics

``api.RegressionLM`` ties the stages together; ``serve`` and ``cli`` are built on it.

``import rlm`` is torch-free: the data layer, serialisation, tokenizers and metrics work without
it. The names below are imported on first use, so ``rlm.RegressionLM`` (the model) is the only
one that loads torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _moved

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .api import RegressionLM
    from .inputs.text import SerializerConfig
    from .inputs.vocab import VocabConfig
    from .io import Example, load_demo, read_examples
    from .nn.config import BackboneConfig, LoraConfig, ModelConfig, TrainConfig
    from .numbers import NumberConfig

# public name -> the module that defines it
_EXPORTS = {
    "RegressionLM": "rlm.api",
    "Example": "rlm.io",
    "read_examples": "rlm.io",
    "load_demo": "rlm.io",
    "ModelConfig": "rlm.nn.config",
    "TrainConfig": "rlm.nn.config",
    "LoraConfig": "rlm.nn.config",
    "BackboneConfig": "rlm.nn.config",
    "NumberConfig": "rlm.numbers",
    "VocabConfig": "rlm.inputs.vocab",
    "SerializerConfig": "rlm.inputs.text",
}

__all__ = [
    "BackboneConfig",
    "Example",
    "LoraConfig",
    "ModelConfig",
    "NumberConfig",
    "RegressionLM",
    "SerializerConfig",
    "TrainConfig",
    "VocabConfig",
    "__version__",
    "load_demo",
    "read_examples",
]

_moved.install()  # rlm.data, rlm.text, ... keep importing (with a DeprecationWarning) until 0.3


def __getattr__(name: str) -> Any:
    # PEP 562 lazy attributes: nothing heavy (torch above all) loads until someone asks for it
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if f"rlm.{name}" in _moved.MOVED:
        return importlib.import_module(f"rlm.{name}")
    raise AttributeError(f"module 'rlm' has no attribute {name!r}")
