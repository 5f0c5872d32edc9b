"""Torch-free inference: an exported deployment directory run by onnxruntime and numpy.

``OnnxRegressor.load(dir)`` rebuilds the pipeline (``rlm.predictor.read_pipeline``: field
encoder or tokenizer, target codec or scaler, calibration) and runs the graphs of
``rlm.deploy.export``; encoding, sampling, calibration and scoring are ``rlm.predictor``, the
code ``RegressionLM`` runs, so the same inputs and seed give the same draws as the PyTorch
model (up to float rounding: a token can only differ when a uniform falls within ~1e-6 of a
probability boundary).

Importing this module imports neither torch nor the training code: a deployment needs
``pip install rlm onnxruntime``.

Shapes: B inputs, T positions, S samples, N = B*S sequences, L output tokens, V number tokens.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..blend import read_member
from ..inputs.padding import Padded, Row, pad_rows
from ..nn.config import ModelConfig, TrainConfig
from ..numbers.decoding import DecodeConfig, decode_tokens
from ..numbers.grammar import Grammar
from ..predictor import Predictor, read_pipeline
from .files import DECODER, ENCODER, RUNTIME, VALUES, read_deployment


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ImportError(
            "running an ONNX deployment needs onnxruntime: pip install onnxruntime "
            "(or pip install 'rlm[onnx]')"
        ) from None
    return onnxruntime


def session(path: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for one graph; ``threads`` intra-op threads (None: all)."""
    ort = _ort()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxNetwork:
    """The exported graphs as a ``rlm.predict.draws.Network``."""

    def __init__(self, d: Path, runtime: dict[str, Any], pad_id: int, threads: int | None):
        self.pad_id, self.inputs = pad_id, tuple(runtime["inputs"])
        self.bos = int(runtime["bos"])
        # per decoder layer, keys then values: (heads, L, dh) each
        self.caches = [tuple(c) for c in runtime.get("caches", []) for _ in "kv"]
        layers = range(len(self.caches) // 2)
        self.cache_names = [f"cache_{kv}{i}" for i in layers for kv in "kv"]
        self.cross_names = [f"cross_{kv}{i}" for i in layers for kv in "kv"]
        self.max_len = int(runtime["max_input_len"])
        if runtime["head"] == "digits":
            self.encoder = session(d / ENCODER, threads)
            self.decoder = session(d / DECODER, threads)
        else:
            self.head = session(d / VALUES, threads)

    def _feeds(self, rows: Sequence[Row]) -> tuple[dict[str, np.ndarray], Padded]:
        p = pad_rows(rows, self.pad_id)
        if p.pos is None and p.ids.shape[1] > self.max_len:  # the graph would index past it
            raise ValueError(
                f"input of {p.ids.shape[1]} tokens exceeds max_input_len={self.max_len}"
            )
        arrays = {"ids": p.ids, "pad": p.pad, "pos": p.pos, "keys": p.keys, "nums": p.nums}
        return {name: arrays[name] for name in self.inputs}, p  # type: ignore[misc]

    def tokens(
        self,
        rows: Sequence[Row],
        grammar: Grammar,
        samples: int,
        config: DecodeConfig,
        length: int,
        uniforms: np.ndarray | None,
    ) -> np.ndarray:
        """Token ids (B, samples, length); uniforms (B*samples, length) unless greedy."""
        feeds, p = self._feeds(rows)
        mask, *cross = self.encoder.run(None, feeds)  # once per input: (B, 1, 1, T), per layer k, v
        n = len(p) * samples
        state = {"mask": mask, **dict(zip(self.cross_names, cross, strict=True))}
        for name, shape in zip(self.cache_names, self.caches, strict=True):
            state[name] = np.zeros((n, *shape), dtype=np.float32)  # (N, h, L, dh)

        def step(tok: np.ndarray, pos: int) -> np.ndarray:
            state["tok"], state["pos"] = tok, np.array(pos, dtype=np.int64)
            logits, *cache = self.decoder.run(None, state)
            state.update(zip(self.cache_names, cache, strict=True))
            return logits  # (N, V)

        out = decode_tokens(step, n, length, grammar, config, self.bos, uniforms)
        return out.reshape(len(p), samples, length)

    def values(self, rows: Sequence[Row]) -> np.ndarray:
        """The value head's output (B, M, K, C)."""
        feeds, _ = self._feeds(rows)
        return self.head.run(["values"], feeds)[0]


class OnnxRegressor(Predictor):
    """A deployed regression LM: ``predict``, ``sample``, ``distribution``,
    ``predict_interval``, ``evaluate`` and ``calibrate`` as on ``RegressionLM``, run by
    onnxruntime. ``threads``: intra-op threads per graph (None: onnxruntime's default, every
    core; 1 is fastest for one input at a time)."""

    runtime_name = "onnx"
    # measured (benchmarks/edge.py, small preset, 16 samples): 8,192 sequences at once peak at
    # 753 MB RSS, 1,024 at 176 MB, for 10% more time; onnxruntime's arena keeps its largest
    max_sequences = 1024

    def __init__(self) -> None:
        super().__init__()
        self.network: OnnxNetwork | None = None
        self.runtime_info: dict[str, Any] = {}
        self.directory: Path | None = None

    @classmethod
    def load(cls, directory: str | Path, *, threads: int | None = None) -> OnnxRegressor:
        d = Path(directory)
        meta = read_deployment(d)
        m = cls()
        try:
            read_pipeline(m, meta, d)
            m.model_config = ModelConfig.from_dict(meta["model"])
            m.train_config = TrainConfig.from_dict(meta["train"])
            m.runtime_info = dict(meta[RUNTIME])
            tok, _ = m._pipeline()
            m.network = OnnxNetwork(d, m.runtime_info, tok.pad_id, threads)
            m.blend = read_member(d, meta, m.targets, partial(cls.load, threads=threads))
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(
                f"{d / 'config.json'} is damaged ({type(e).__name__}: {e}): export the model again"
            ) from None
        m.directory = d
        return m

    def num_params(self) -> int:
        return int(self.runtime_info.get("params", 0))

    def _runtime(self) -> OnnxNetwork:
        self._pipeline()
        if self.network is None:
            raise ValueError("this OnnxRegressor has no graphs: use OnnxRegressor.load(dir)")
        return self.network

    def __repr__(self) -> str:
        info = self.runtime_info
        return (
            f"OnnxRegressor(targets={self.targets}, params={info.get('params')}, "
            f"precision={info.get('precision')!r}, dir={os.fspath(self.directory or '')!r})"
        )
