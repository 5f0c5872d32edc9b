"""A fitted ``RegressionLM`` -> a deployment directory that onnxruntime runs without torch.

The network is exported as the two graphs that incremental decoding needs, or one for a value
head, each with dynamic batch and input length:

* ``encoder.onnx``: the encoded inputs (ids, padding; for fields also positions, keys and
  number features) -> every decoder layer's cross-attention keys and values, computed once per
  input, ``cross`` (layers, 2, B, h, T, dh);
* ``decoder.onnx``: one decoding step for all N = B*S sequences: previous tokens (N,), the
  position, the self-attention cache (layers, 2, N, h, L, dh), ``cross`` and the padding ->
  logits (N, V) and the updated cache;
* ``values.onnx`` (value heads instead of the two above): the inputs -> the head's (B, M, K, C).

The decoding loop itself (grammar mask, sampling) stays in numpy (``rlm.numbers.decoding``),
shared with the PyTorch model, so both runtimes decode the same way. The step graph keeps a
fixed-length cache written at ``pos`` (a ``where``, not an in-place slice, which ONNX cannot
express) and attends to positions ``<= pos``: shapes do not change from step to step.

Beside the graphs go ``tokenizer.json`` and a ``config.json`` with everything the pipeline needs
(``rlm.predictor.read_pipeline``), the graphs' sha256 and what they expect. Needs the ``onnx``
extra (onnx, onnxscript, onnxruntime); the directory then needs only onnxruntime and numpy.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import __version__
from ..checkpoint import CHECKPOINT_FORMAT, CONFIG, TOKENIZER, atomic_write
from ..nn.model import RegressionTransformer, _heads, _merge
from ..nn.source import Source
from ..predictor import pipeline_meta
from .files import DECODER, ENCODER, RUNTIME, VALUES, Precision

if TYPE_CHECKING:
    from ..api import RegressionLM


Tensor = torch.Tensor | None


class _Encoder(nn.Module):
    """Encoded inputs (text: ids, pad; fields add pos, keys, nums) -> cross-attention keys and
    values of every decoder layer."""

    def __init__(self, net: RegressionTransformer) -> None:
        super().__init__()
        self.net = net

    def forward(self, ids: Tensor, pad: Tensor, pos: Tensor = None, keys: Tensor = None,
                nums: Tensor = None) -> torch.Tensor:  # fmt: skip
        memory = self.net.encode(Source(ids, pad, pos, keys, nums))  # type: ignore[arg-type]
        # per layer (k, v), each (B, h, T, dh) -> (layers, 2, B, h, T, dh)
        return torch.stack([torch.stack(kv) for kv in self.net.cross_kv(memory)])


class _Values(_Encoder):
    """Encoded inputs -> the value head's (B, M, K, C)."""

    def forward(self, ids: Tensor, pad: Tensor, pos: Tensor = None, keys: Tensor = None,
                nums: Tensor = None) -> torch.Tensor:  # fmt: skip
        return self.net.values(Source(ids, pad, pos, keys, nums))  # type: ignore[arg-type]


class _DecoderStep(nn.Module):
    """``RegressionTransformer.decode_step`` without in-place writes, for export."""

    def __init__(self, net: RegressionTransformer) -> None:
        super().__init__()
        self.net = net

    def forward(
        self,
        tok: torch.Tensor,  # (N,) int64 previous tokens
        pos: torch.Tensor,  # () int64 position being written
        cache: torch.Tensor,  # (layers, 2, N, h, L, dh) self-attention keys and values
        cross: torch.Tensor,  # (layers, 2, B, h, T, dh) from the encoder graph
        pad: torch.Tensor,  # (B, T) bool, True at padding
    ) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.net
        n, b = tok.shape[0], pad.shape[0]
        steps = torch.arange(net.out_len)
        here = (steps == pos)[None, None, :, None]  # (1, 1, L, 1): the row written now
        seen = (steps <= pos)[None, None, None, :]  # (1, 1, 1, L): the rows attended to
        mask = net.attn_mask(pad)  # (B, 1, 1, T)
        y = net.dec_tok(tok)[:, None, :] + net.dec_pos(pos)  # (N, 1, E)
        layers = []
        for i, block in enumerate(net.decoder):
            attn = block.self_attn
            q, k, v = attn.qkv(block.ln1(y)).chunk(3, dim=-1)  # 3 x (N, 1, E)
            keys = torch.where(here, _heads(k, attn.h), cache[i, 0])  # (N, h, L, dh)
            values = torch.where(here, _heads(v, attn.h), cache[i, 1])
            layers.append(torch.stack([keys, values]))
            att = F.scaled_dot_product_attention(_heads(q, attn.h), keys, values, attn_mask=seen)
            y = y + attn.proj(_merge(att))
            # (N, 1, E) -> (B, S, E): the samples become the query axis of cross-attention
            query = block.ln2(y).reshape(b, n // b, -1)
            y = y + block.cross(query, (cross[i, 0], cross[i, 1]), mask).reshape(n, 1, -1)
            y = y + block.mlp(block.ln3(y))
        return net.head(net.ln_dec(y[:, 0])), torch.stack(layers)  # (N, V), updated cache


def _example_inputs(net: RegressionTransformer) -> dict[str, torch.Tensor]:
    """Small dummy inputs of the right dtypes: export traces shapes, not values."""
    b, t = 2, 3
    out = {"ids": torch.zeros(b, t, dtype=torch.int64), "pad": torch.zeros(b, t, dtype=torch.bool)}
    if net.key_emb is not None and net.numbers is not None:
        features = net.numbers.fc.in_features - 4 * net.numbers.freq.shape[1] - net.cfg.d_model
        out["pos"] = torch.zeros(b, t, dtype=torch.int64)
        out["keys"] = torch.zeros(b, t, dtype=torch.int64)
        out["nums"] = torch.zeros(b, t, features)
    return out


def _export(
    module: nn.Module,
    inputs: dict[str, torch.Tensor],
    dims: dict[str, dict[int, Any] | None],
    outputs: list[str],
    path: Path,
) -> str:
    """One graph -> ``path`` (weights inside the file); returns its sha256."""
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # e.g. "torchvision is not installed"
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # the exporter's progress and deprecation chatter
            program = torch.onnx.export(
                module.eval(),
                (),
                kwargs=inputs,
                dynamo=True,
                input_names=list(inputs),
                output_names=outputs,
                dynamic_shapes={name: dims[name] for name in inputs},
                external_data=False,
            )
    finally:
        exporter_log.setLevel(level)
    assert program is not None
    graph = program.model_proto
    for node in graph.graph.node:  # the exporter's per-node stack traces: ~1 KB a node
        del node.metadata_props[:]
        node.doc_string = ""
    return atomic_write(path, graph.SerializeToString())


def export_onnx(model: RegressionLM, out: str | Path, *, precision: Precision = "fp32") -> Path:
    """Write ``model`` as a deployment directory ``out`` (created; files replaced atomically).

    ``precision="int8"`` stores every matrix and embedding as int8 with per-row scales
    (onnxruntime's dynamic quantization, ``rlm.deploy.quantize``): a ~4x smaller file, int8
    matrix products at run time. Load it with ``rlm.deploy.OnnxRegressor.load(out)``.
    """
    from .quantize import quantize_graph

    if precision not in ("fp32", "int8"):
        raise ValueError(f"precision={precision!r}: choose 'fp32' or 'int8'")
    tok, _, net = model._check_fitted()
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    inputs = _example_inputs(net)
    # a text model checks its length against the position table: export keeps that bound
    batch = torch.export.Dim("batch")
    length = torch.export.Dim("length", max=net.cfg.max_input_len)
    per_input = {0: batch, 1: length}
    dims: dict[str, dict[int, Any] | None] = {name: per_input for name in inputs}
    files: dict[str, str] = {}
    with torch.no_grad():
        if net.value_head is not None:
            files[VALUES] = _export(_Values(net), inputs, dims, ["values"], d / VALUES)
        else:
            files[ENCODER] = _export(_Encoder(net), inputs, dims, ["cross"], d / ENCODER)
            files.update(_export_step(net, d))
    if precision == "int8":
        files = {name: quantize_graph(d / name) for name in files}
    files[TOKENIZER] = atomic_write(d / TOKENIZER, tok.to_json().encode("utf-8"))
    meta = {
        "format": CHECKPOINT_FORMAT,
        "rlm_version": __version__,
        "files": files,
        "model": model.model_config.to_dict(),
        "train": model.train_config.to_dict(),
        RUNTIME: _runtime_meta(net, precision, list(inputs)),
        **pipeline_meta(model),
    }
    atomic_write(d / CONFIG, json.dumps(meta, indent=2).encode("utf-8"))
    return d


def _export_step(net: RegressionTransformer, d: Path) -> dict[str, str]:
    cfg = net.cfg
    b, s, t = 2, 3, 3
    heads, dh = cfg.dec_heads, cfg.dec_d_model // cfg.dec_heads
    inputs = {
        "tok": torch.zeros(b * s, dtype=torch.int64),
        "pos": torch.tensor(1, dtype=torch.int64),
        "cache": torch.zeros(cfg.dec_layers, 2, b * s, heads, net.out_len, dh),
        "cross": torch.zeros(cfg.dec_layers, 2, b, heads, t, dh),
        "pad": torch.zeros(b, t, dtype=torch.bool),
    }
    seqs, batch = torch.export.Dim("sequences"), torch.export.Dim("batch")
    length = torch.export.Dim("length", max=cfg.max_input_len)
    dims: dict[str, dict[int, Any] | None] = {
        "tok": {0: seqs},
        "pos": None,
        "cache": {2: seqs},
        "cross": {2: batch, 4: length},
        "pad": {0: batch, 1: length},
    }
    return {
        DECODER: _export(_DecoderStep(net), inputs, dims, ["logits", "next_cache"], d / DECODER)
    }


def _runtime_meta(net: RegressionTransformer, precision: str, inputs: list[str]) -> dict[str, Any]:
    """What the runtime needs to drive the graphs (``rlm.deploy.runtime`` reads it)."""
    cfg = net.cfg
    return {
        "kind": "onnx",
        "precision": precision,
        "inputs": inputs,
        "head": cfg.head,
        "bos": net.bos,
        "out_len": net.out_len,
        "cache": [cfg.dec_layers, 2, cfg.dec_heads, net.out_len, cfg.dec_d_model // cfg.dec_heads],
        "max_input_len": cfg.max_input_len,
        "params": net.num_params(),
    }
