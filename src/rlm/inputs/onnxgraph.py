"""Neural networks as inputs: an ONNX graph (or a ``torch.nn.Module``, exported) -> compact text.

To predict the accuracy or latency of a user's own network, the regression-LM-for-code work
reads the network's ONNX graph as text. This is that serialiser: one line per operator in the
graph's topological order (the order ONNX requires), naming the operator, the shapes of its
weights, its non-default attributes and the shape it produces, with every name dropped (names
are arbitrary and would only teach the model noise). The same network always gives the same
text, and two networks that differ only in names give the same text.

    input 1x3x32x32
    Conv w16x3x3x3 b16 kernel_shape=3,3 pads=1,1,1,1 -> 1x16x32x32
    Relu -> 1x16x32x32
    ...
    output 1x10

A weight is an input that is an initializer (``w`` then its shape; a second one ``b``...; a
small integer constant, such as axes, shows its values: ``w=2,3``); activations show only the
output shape, from ONNX shape inference. Attributes equal to the operator's default are left
out; those that are tensors or subgraphs are summarised by kind. Needs ``onnx`` (the ``onnx`` extra) at call time only;
``module_text`` also needs torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEIGHT_NAMES = "wbcdefgh"  # the k-th weight input of an operator is written with this letter


@dataclass(frozen=True)
class GraphTextConfig:
    """``max_ops``: keep the first and last ops of a longer graph (with a count of those cut);
    ``shapes``: write output shapes; ``weights``: write weight shapes."""

    max_ops: int | None = None
    shapes: bool = True
    weights: bool = True

    def __post_init__(self) -> None:
        if self.max_ops is not None and self.max_ops < 2:
            raise ValueError(f"max_ops={self.max_ops}: keep at least 2 ops (or None for all)")


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError("reading ONNX graphs needs onnx: pip install 'rlm[onnx]'") from None
    return onnx


def _dims(value_type: Any) -> str | None:
    """'1x16x32x32' for a tensor type, '?' for unknown dimensions; None if not a tensor."""
    if not value_type.HasField("tensor_type"):
        return None
    shape = value_type.tensor_type.shape
    if not shape.dim:
        return "scalar"
    return "x".join(str(d.dim_value) if d.HasField("dim_value") else "?" for d in shape.dim)


def _attribute(attr: Any) -> str:
    onnx = _onnx()
    kind = onnx.AttributeProto
    if attr.type == kind.INT:
        return str(attr.i)
    if attr.type == kind.FLOAT:
        return f"{attr.f:g}"
    if attr.type == kind.STRING:
        return attr.s.decode("utf-8", "replace")
    if attr.type == kind.INTS:
        return ",".join(str(i) for i in attr.ints)
    if attr.type == kind.FLOATS:
        return ",".join(f"{f:g}" for f in attr.floats)
    if attr.type == kind.TENSOR:
        return "tensor" + "x".join(str(d) for d in attr.t.dims)
    return kind.AttributeType.Name(attr.type).lower()  # graphs, strings lists, ...


def graph_text(model: Any, config: GraphTextConfig | None = None) -> str:
    """An ONNX ``ModelProto``, or the path of a ``.onnx`` file, -> the compact text above."""
    onnx = _onnx()
    cfg = config or GraphTextConfig()
    if isinstance(model, str | Path):
        model = onnx.load(str(model))
    if not isinstance(model, onnx.ModelProto):
        raise ValueError(f"expected an onnx.ModelProto or a .onnx path, got {type(model).__name__}")
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    weights = {t.name: _initializer(t) for t in graph.initializer}
    shapes = {v.name: _dims(v.type) for v in (*graph.value_info, *graph.input, *graph.output)}
    lines = [f"input {shapes.get(v.name) or '?'}" for v in graph.input if v.name not in weights]
    ops = [_op_line(node, weights, shapes, cfg) for node in graph.node]
    if cfg.max_ops is not None and len(ops) > cfg.max_ops:
        head, tail = cfg.max_ops // 2, cfg.max_ops - cfg.max_ops // 2
        ops = [*ops[:head], f"... {len(ops) - head - tail} ops ...", *ops[-tail:]]
    lines += ops
    lines += [f"output {shapes.get(v.name) or '?'}" for v in graph.output]
    return "\n".join(lines)


def _initializer(tensor: Any) -> str:
    """A float weight -> its shape ('16x3x3x3'); a small integer constant (axes, a target
    shape) -> its values ('=2,3'), which say more than its shape."""
    onnx = _onnx()
    shape = "x".join(str(d) for d in tensor.dims) or "scalar"
    kind = onnx.TensorProto
    if tensor.data_type in (kind.INT64, kind.INT32) and len(tensor.dims) <= 1:
        values = onnx.numpy_helper.to_array(tensor).reshape(-1)
        if values.size <= 8:
            return "=" + ",".join(str(int(v)) for v in values)
    return shape


def _non_default(node: Any) -> list[Any]:
    """The node's attributes whose value differs from the operator schema's default: an
    exporter writes every default out, and those only lengthen the text."""
    onnx = _onnx()
    try:
        schema = onnx.defs.get_schema(node.op_type, domain=node.domain or "")
    except onnx.defs.SchemaError:  # a custom operator: keep everything
        return list(node.attribute)
    kept = []
    for attr in node.attribute:
        spec = schema.attributes.get(attr.name)
        default = None if spec is None or not spec.default_value.name else spec.default_value
        if default is not None and _attribute(default) == _attribute(attr):
            continue
        kept.append(attr)
    return kept


def _op_line(
    node: Any, weights: dict[str, str], shapes: dict[str, Any], cfg: GraphTextConfig
) -> str:
    parts = [node.op_type if not node.domain else f"{node.domain}.{node.op_type}"]
    if cfg.weights:
        held = [weights[i] for i in node.input if i in weights]
        parts += [f"{WEIGHT_NAMES[min(k, len(WEIGHT_NAMES) - 1)]}{s}" for k, s in enumerate(held)]
    parts += [f"{a.name}={_attribute(a)}" for a in sorted(_non_default(node), key=lambda a: a.name)]
    if cfg.shapes:
        outs = [shapes.get(o) or "?" for o in node.output if o]
        parts.append("-> " + " ".join(outs))
    return " ".join(parts)


def module_text(
    module: Any, example_inputs: Sequence[Any], config: GraphTextConfig | None = None
) -> str:
    """A ``torch.nn.Module`` -> its graph text, through torch's ONNX exporter (needs torch and
    the ``onnx`` extra). ``example_inputs``: the positional inputs of one forward call; their
    shapes are the shapes the text shows."""
    import contextlib
    import io
    import logging
    import warnings

    import torch

    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module.eval(), tuple(example_inputs), dynamo=True)
    finally:
        log.setLevel(level)
    assert program is not None
    return graph_text(program.model_proto, config)
