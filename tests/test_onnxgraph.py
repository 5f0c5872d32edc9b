"""Networks as inputs: ONNX graphs (built here, or exported from small torch modules) -> text."""

from __future__ import annotations

import pytest

pytest.importorskip("onnx", reason="the onnx extra is not installed")
pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
import numpy as np
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from rlm.inputs.onnxgraph import GraphTextConfig, graph_text, module_text

CNN_TEXT = """input 1x3x32x32
Conv w16x3x3x3 b16 dilations=1,1 kernel_shape=3,3 pads=1,1,1,1 strides=1,1 -> 1x16x32x32
Relu -> 1x16x32x32
ReduceMean w=-1,-2 -> 1x16x1x1
Reshape w=1,16 allowzero=1 -> 1x16
Gemm w10x16 b10 transB=1 -> 1x10
output 1x10"""


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


class Named(nn.Module):
    """The same network as ``cnn()`` with other module names: the text must not change."""

    def __init__(self) -> None:
        super().__init__()
        self.stem_convolution = nn.Conv2d(3, 16, 3, padding=1)
        self.classifier_head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem_convolution(x))
        return self.classifier_head(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


def test_a_module_becomes_golden_text_whatever_its_names() -> None:
    image = [torch.zeros(1, 3, 32, 32)]
    assert module_text(cnn(), image) == CNN_TEXT
    assert module_text(Named(), image) == CNN_TEXT


def test_a_built_graph_with_defaults_custom_ops_and_truncation() -> None:
    w = numpy_helper.from_array(np.zeros((4, 8), dtype=np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("LeakyRelu", ["h"], ["a"], alpha=0.01),  # the schema's default
        helper.make_node("LeakyRelu", ["a"], ["b"], alpha=0.2),
        helper.make_node("Softmax", ["b"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert graph_text(model).splitlines() == [
        "input ?x4",
        "MatMul w4x8 -> ?x8",
        "LeakyRelu -> ?x8",
        "LeakyRelu alpha=0.2 -> ?x8",
        "Softmax -> ?x8",
        "output ?x8",
    ]
    short = graph_text(model, GraphTextConfig(max_ops=2, shapes=False, weights=False))
    assert short.splitlines() == ["input ?x4", "MatMul", "... 2 ops ...", "Softmax", "output ?x8"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [(42, "ModelProto"), (GraphTextConfig, "ModelProto")],
)
def test_bad_inputs_are_named(bad, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        graph_text(bad)
    with pytest.raises(ValueError, match="max_ops"):
        GraphTextConfig(max_ops=1)


def test_graph_texts_train_a_model() -> None:
    """The texts are inputs like any other: predict a network's parameter count from its graph."""
    from rlm import RegressionLM
    from rlm.nn.config import TrainConfig

    rng = np.random.default_rng(0)
    rows = []
    for _ in range(24):
        widths = [int(w) for w in rng.choice([8, 16, 32, 64], size=int(rng.integers(1, 4)))]
        layers, d = [], 4
        for w in widths:
            layers += [nn.Linear(d, w), nn.ReLU()]
            d = w
        net = nn.Sequential(*layers, nn.Linear(d, 1))
        params = sum(p.numel() for p in net.parameters())
        rows.append((module_text(net, [torch.zeros(2, 4)]), float(params)))
    xs, ys = [r[0] for r in rows], [r[1] for r in rows]
    m = RegressionLM(model="tiny", train=TrainConfig(max_steps=10, progress=False)).fit(xs, ys)
    assert np.isfinite(m.predict(xs[:4], samples=4)).all()
