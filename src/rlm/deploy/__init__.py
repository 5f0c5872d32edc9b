"""Deployment: a fitted model exported to ONNX (``export``, ``quantize``: int8 weights) and run
by onnxruntime and numpy without torch (``runtime``); ``files`` is the directory's format.

``from rlm.deploy import OnnxRegressor`` imports no torch; ``export_onnx`` (which needs torch
and the ``onnx`` extra) is imported on first use.
"""

from __future__ import annotations

from typing import Any

from .runtime import OnnxRegressor

__all__ = ["OnnxRegressor", "export_onnx"]


def __getattr__(name: str) -> Any:
    if name == "export_onnx":
        from .export import export_onnx

        return export_onnx
    raise AttributeError(f"module 'rlm.deploy' has no attribute {name!r}")
