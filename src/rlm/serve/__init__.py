"""``rlm serve``: the FastAPI application (``app``), its limits, request body and responses
(``schema``), the micro-batcher that shares one decoding pass between requests (``batching``)
and the offline playground page (``static/``). Needs the ``serve`` extra (fastapi); nothing in
``rlm`` imports this package except ``rlm serve``, and its names load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .schema import PredictRequest, ServeConfig

_EXPORTS = {"create_app": ".app", "PredictRequest": ".schema", "ServeConfig": ".schema"}
__all__ = ["PredictRequest", "ServeConfig", "create_app"]


def __getattr__(name: str) -> Any:
    # lazy, so that ``rlm.serve.batching`` (torch- and fastapi-free) imports on its own
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'rlm.serve' has no attribute {name!r}")
