"""int8 or int4 weights for an exported graph, through onnxruntime's maintained quantizers.

* ``int8``: dynamic quantization. Every MatMul weight and embedding table is stored as int8
  with a scale per output channel; activations are quantized on the fly at run time, so no
  calibration data is needed and accuracy is kept (``benchmarks/edge.py`` measures it).
  ``torch.ao``'s ``quantize_dynamic`` is deprecated; this is the path onnxruntime supports.
* ``int4``: weight-only block quantization (``MatMulNBits`` for matrices, ``GatherBlockQuantized``
  for embedding tables): 4-bit weights with one fp32 scale per ``INT4_BLOCK`` weights of a
  column, dequantized inside the kernel; activations stay fp32. About 1.6x smaller than int8
  and a little slower at batch 1: a choice for size, not speed (``benchmarks/edge.py`` measures
  size, latency and accuracy of both).

The weight-only quantizer reads ``MatMul`` nodes only, and torch exports a ``Linear`` on 2-D
inputs (the slot MLP) as ``Gemm``; ``gemm_as_matmul`` rewrites those first.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..checkpoint import atomic_write

if TYPE_CHECKING:
    from .files import Precision

INT4_BLOCK = 32  # weights per scale (onnxruntime defaults to 128: coarser, less accurate)


def quantize_graph(path: Path, precision: Precision = "int8") -> str:
    """Replace the fp32 graph at ``path`` by its ``precision`` ("int8", "int4") version;
    returns the new file's sha256."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizers' advice to pre-process: ours are exported clean
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / path.name
            if precision == "int4":
                _int4(path, out)
            else:
                _int8(path, out)
            return atomic_write(path, out.read_bytes())
    finally:
        root.setLevel(level)


def _int8(path: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(path),
        str(out),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Gather"],
    )


def _weight_only_quantizer() -> Any:
    """onnxruntime's ``MatMulNBitsQuantizer``, imported without its side effect: the module
    calls ``logging.basicConfig(level=INFO)``, which would print every node it visits and leave
    a handler on the caller's root logger. Its own logger is kept to errors."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    from onnxruntime.quantization import matmul_nbits_quantizer as module

    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger(module.__name__).setLevel(logging.ERROR)
    return module.MatMulNBitsQuantizer


def _int4(path: Path, out: Path) -> None:
    import onnx

    MatMulNBitsQuantizer = _weight_only_quantizer()
    model = onnx.load(str(path))
    gemm_as_matmul(model)
    quantizer = MatMulNBitsQuantizer(
        model,
        bits=4,
        block_size=INT4_BLOCK,
        is_symmetric=True,
        op_types_to_quantize=("MatMul", "Gather"),
    )
    quantizer.process()
    onnx.save(quantizer.model.model, str(out))


def gemm_as_matmul(model: Any) -> None:
    """In place: each ``Gemm(A, W, C)`` of a constant ``W`` (no transposed A, alpha = beta = 1)
    becomes ``MatMul(A, W') + C``, W' stored (in, out) as MatMul reads it; the same arithmetic."""
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = (
            attrs.get("transA", 0) == 0 and attrs.get("alpha", 1.0) == attrs.get("beta", 1.0) == 1.0
        )
        if node.op_type != "Gemm" or node.input[1] not in weights or not plain:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weights[node.input[1]])
        w = w.T if attrs.get("transB", 0) else w  # (out, in) as torch stores it -> (in, out)
        name = f"{node.input[1]}_in_out"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w), name))
        if len(node.input) > 2 and node.input[2]:  # the bias
            product = f"{node.output[0]}_product"
            nodes.append(helper.make_node("MatMul", [node.input[0], name], [product]))
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]]))
        else:
            nodes.append(helper.make_node("MatMul", [node.input[0], name], [node.output[0]]))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]  # the (out, in) copies are dropped
    del graph.initializer[:]
    graph.initializer.extend(kept)
