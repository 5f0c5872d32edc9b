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
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .. import __version__
from ..blend import remove_stale_member, write_member
from ..checkpoint import CHECKPOINT_FORMAT, CONFIG, TOKENIZER, atomic_write
from ..nn.model import RegressionTransformer
from ..nn.source import Source
from ..predictor import pipeline_meta
from .files import DECODER, ENCODER, PRECISIONS, RUNTIME, VALUES, Precision

if TYPE_CHECKING:
    from ..api import RegressionLM


Tensor = torch.Tensor | None


NEG = -1e9  # an additive attention bias that removes a position (exp underflows to exactly 0)


class _Encoder(nn.Module):
    """Encoded inputs (text: ids, pad; fields add pos, keys, nums) -> the additive padding mask
    (B, 1, 1, T) and, per decoder layer, the cross-attention keys, transposed (B, h, dh, T), and
    values (B, h, T, dh): everything the decoder step reads from the input, computed once."""

    def __init__(self, net: RegressionTransformer) -> None:
        super().__init__()
        self.net = net

    def forward(self, ids: Tensor, pad: Tensor, pos: Tensor = None, keys: Tensor = None,
                nums: Tensor = None) -> list[torch.Tensor]:  # fmt: skip
        memory = self.net.encode(Source(ids, pad, pos, keys, nums))  # type: ignore[arg-type]
        out = [pad[:, None, None, :].float() * NEG]  # (B, 1, 1, T)
        for k, v in self.net.cross_kv(memory):  # each (B, h, T, dh)
            out += [k.transpose(-1, -2), v]
        return out


class _Values(_Encoder):
    """Encoded inputs -> the value head's (B, M, K, C)."""

    def forward(self, ids: Tensor, pad: Tensor, pos: Tensor = None, keys: Tensor = None,
                nums: Tensor = None) -> torch.Tensor:  # fmt: skip
        return self.net.values(Source(ids, pad, pos, keys, nums))  # type: ignore[arg-type]


def _attend(
    q: torch.Tensor, k_t: torch.Tensor, v: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """softmax(q k^T / sqrt(dh) + bias) v, written out: (..., Q, dh) x (..., dh, K) -> (..., Q, dh).
    (SDPA would export with NaN guards for fully masked rows, which never occur here.)"""
    scores = torch.matmul(q, k_t) * (q.shape[-1] ** -0.5) + bias
    return torch.matmul(scores.softmax(-1), v)


class _DecoderStep(nn.Module):
    """``RegressionTransformer.decode_step`` for export: no in-place writes (the cache row at
    ``pos`` is selected with ``where``), one tensor per layer and kind (no stacking and slicing),
    reshapes with constant shapes (``-1`` for the sequence axis), so the graph has few nodes:
    at batch 1, per-node overhead, not arithmetic, is most of a step's time."""

    def __init__(self, net: RegressionTransformer) -> None:
        super().__init__()
        self.net = net

    def forward(
        self,
        tok: torch.Tensor,  # (N,) int64 previous tokens
        pos: torch.Tensor,  # () int64 position being written
        mask: torch.Tensor,  # (B, 1, 1, T) additive padding bias, from the encoder graph
        cache: list[torch.Tensor],  # per layer keys then values, each (N, h, L, dh)
        cross: list[torch.Tensor],  # per layer keys^T (B, h, dh, T) then values (B, h, T, dh)
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        net = self.net
        dh = net.cfg.dec_d_model // net.cfg.dec_heads
        steps = torch.arange(net.out_len)
        here = (steps == pos).reshape(1, 1, -1, 1)  # (1, 1, L, 1): the row written now
        future = (steps > pos).float().reshape(1, 1, 1, -1) * NEG  # (1, 1, 1, L)
        b = mask.shape[0]
        y = net.dec_tok(tok) + net.dec_pos(pos)  # (N, E)
        updated = []
        for i, block in enumerate(net.decoder_layers):
            h = block.self_attn.h
            qkv = block.self_attn.qkv(block.ln1(y)).reshape(-1, 3, h, 1, dh)  # (N, 3, h, 1, dh)
            q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # (N, h, 1, dh)
            keys = torch.where(here, k, cache[2 * i])  # (N, h, L, dh)
            values = torch.where(here, v, cache[2 * i + 1])
            updated += [keys, values]
            att = _attend(q, keys.transpose(-1, -2), values, future)  # (N, h, 1, dh)
            y = y + block.self_attn.proj(att.reshape(-1, h * dh))
            # (N, E) -> (B, h, S, dh): the samples of an input are the queries of its memory
            h = block.cross.h
            query = block.cross.q(block.ln2(y)).reshape(b, -1, h, dh).transpose(1, 2)
            att = _attend(query, cross[2 * i], cross[2 * i + 1], mask)  # (B, h, S, dh)
            y = y + block.cross.proj(att.transpose(1, 2).reshape(-1, h * dh))
            y = y + block.mlp(block.ln3(y))
        return net.head(net.ln_dec(y)), updated  # (N, V), the cache with row pos written


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
    inputs: dict[str, Any],
    dims: dict[str, Any],
    outputs: list[str],
    path: Path,
    names: list[str] | None = None,
) -> str:
    """One graph -> ``path`` (weights inside the file); returns its sha256. ``names``: the
    graph's input names when an input is a list (flattened), else the keys of ``inputs``."""
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
                input_names=names or list(inputs),
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
    matrix products at run time; ``"int4"`` stores them as 4-bit blocks (weight-only): ~6x
    smaller, a little slower than int8. Load it with ``rlm.deploy.OnnxRegressor.load(out)``.

    A blended model (``rlm.blend``: ``model="auto"`` keeps one where it scores better) is
    exported as its primary with the member's own deployment inside ``out/blend``, as a saved
    checkpoint holds it; the runtime mixes their draws as ``RegressionLM`` does.
    """
    from .quantize import quantize_graph

    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {PRECISIONS}")
    tok, _, net = model._check_fitted()
    # both halves of a blend are checked before a file is written: a deployment in ``out`` is
    # not left half replaced by a member that cannot be exported
    for part in (model, *([model.blend.member] if model.blend is not None else [])):
        if part.backbone is not None:
            raise ValueError(
                "this model reads its inputs through a pretrained backbone (transformers), which "
                "the ONNX deployment does not carry: serve it with --runtime torch"
            )
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
            outs = ["mask", *_per_layer(net, "cross")]
            files[ENCODER] = _export(_Encoder(net), inputs, dims, outs, d / ENCODER)
            files.update(_export_step(net, d))
    if precision != "fp32":
        files = {name: quantize_graph(d / name, precision) for name in files}
    files[TOKENIZER] = atomic_write(d / TOKENIZER, tok.to_json().encode("utf-8"))
    meta = {
        "format": CHECKPOINT_FORMAT,
        "rlm_version": __version__,
        "files": files,
        "model": model.model_config.to_dict(),
        "train": model.train_config.to_dict(),
        RUNTIME: _runtime_meta(net, precision, list(inputs)),
        **pipeline_meta(model),
        # the member's own deployment first, in d/blend: config.json names its digest
        "blend": write_member(model.blend, d, partial(export_onnx, precision=precision)),
    }
    atomic_write(d / CONFIG, json.dumps(meta, indent=2).encode("utf-8"))
    remove_stale_member(model.blend, d)  # a blend exported here before
    return d


def _per_layer(net: RegressionTransformer, kind: str) -> list[str]:
    """Input or output names of one tensor per decoder layer and keys/values: cache_k0, ..."""
    return [f"{kind}_{kv}{i}" for i in range(net.cfg.dec_layers) for kv in ("k", "v")]


def _export_step(net: RegressionTransformer, d: Path) -> dict[str, str]:
    cfg = net.cfg
    b, s, t = 2, 3, 3
    dh, layers = cfg.dec_d_model // cfg.dec_heads, net.decoder_layers
    inputs = {
        "tok": torch.zeros(b * s, dtype=torch.int64),
        "pos": torch.tensor(1, dtype=torch.int64),
        "mask": torch.zeros(b, 1, 1, t),
        "cache": [torch.zeros(b * s, x.self_attn.h, net.out_len, dh) for x in layers for _ in "kv"],
        "cross": [torch.zeros(b, x.cross.h, *p) for x in layers for p in ((dh, t), (t, dh))],
    }
    seqs, batch = torch.export.Dim("sequences"), torch.export.Dim("batch")
    length = torch.export.Dim("length", max=cfg.max_input_len)
    dims: dict[str, Any] = {
        "tok": {0: seqs},
        "pos": None,
        "mask": {0: batch, 3: length},
        "cache": [{0: seqs}] * (2 * len(layers)),
        "cross": [{0: batch, 3: length}, {0: batch, 2: length}] * len(layers),
    }
    names = ["tok", "pos", "mask", *_per_layer(net, "cache"), *_per_layer(net, "cross")]
    outputs = ["logits", *_per_layer(net, "next")]
    return {DECODER: _export(_DecoderStep(net), inputs, dims, outputs, d / DECODER, names)}


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
        # per decoder layer, the self-attention cache (heads, L, dh) the step reads and writes
        "caches": [
            [b.self_attn.h, net.out_len, cfg.dec_d_model // cfg.dec_heads]
            for b in net.decoder_layers
        ],
        "max_input_len": cfg.max_input_len,
        "params": net.num_params(),
    }
