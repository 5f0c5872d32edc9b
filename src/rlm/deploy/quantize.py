"""int8 weights for an exported graph, through onnxruntime's maintained quantizer.

Dynamic quantization: every MatMul weight and embedding table is stored as int8 with a scale
per output channel; activations are quantized on the fly at run time, so no calibration data is
needed and accuracy is kept (``benchmarks/edge.py`` measures it). ``torch.ao``'s
``quantize_dynamic`` is deprecated; this is the path onnxruntime supports.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from ..checkpoint import atomic_write


def quantize_graph(path: Path) -> str:
    """Replace the fp32 graph at ``path`` by its int8 version; returns the new file's sha256."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's advice to pre-process: ours are exported clean
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / path.name
            quantize_dynamic(
                str(path),
                str(out),
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul", "Gather"],
            )
            return atomic_write(path, out.read_bytes())
    finally:
        root.setLevel(level)
