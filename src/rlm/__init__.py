"""rlm: regression language models. Text in, numbers out, digit by digit.

``import rlm`` is torch-free: the data layer, serialisation, tokenizers and metrics work without
it. ``rlm.RegressionLM`` (the model) imports torch on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .api import RegressionLM

__all__ = ["RegressionLM", "__version__"]


def __getattr__(name: str) -> Any:
    # PEP 562 lazy attribute: the torch-backed model loads only when someone asks for it
    if name == "RegressionLM":
        from .api import RegressionLM

        return RegressionLM
    raise AttributeError(f"module 'rlm' has no attribute {name!r}")
