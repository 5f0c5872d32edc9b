"""``Predictor``: everything a fitted regression LM does at inference, whatever runs the network.
Torch-free.

A predictor is the fitted pipeline around a network: inputs -> ``inputs.fields`` /
``inputs.text`` + ``inputs.vocab`` -> encoded rows -> a runtime's draws (``predict.draws``) ->
target units (per-task scaling) -> medians, calibrated intervals and scores. Two classes build
on it: ``rlm.RegressionLM`` (PyTorch: fit, save, and the torch runtime) and
``rlm.deploy.OnnxRegressor`` (onnxruntime + numpy only). They share this code, so a deployed
model encodes, samples, calibrates and scores exactly as the model it came from.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np

from .checkpoint import TOKENIZER
from .inputs.fields import FieldConfig, FieldEncoder
from .inputs.padding import Row
from .inputs.text import SerializerConfig, serialize
from .inputs.textnums import TextNumberEncoder
from .inputs.vocab import InputTokenizer, VocabConfig
from .io.examples import Example, as_examples, inputs_of
from .nn.config import BackboneConfig, ModelConfig, TrainConfig
from .numbers import NumberConfig
from .numbers.decoding import DecodeConfig
from .numbers.scaling import TargetScaler, TaskScaling
from .numbers.targets import TargetCodec
from .predict.calibration import NonFiniteDraws, calibratable, fit_calibration
from .predict.draws import MAX_SEQUENCES, Draws, Network, sample_digits, sample_values
from .predict.metrics import check_level
from .predict.summary import Predictions, score, score_by_task
from .predict.tasks import Calibration, calibration_from_dict, fit_task_calibration, task_ids

if TYPE_CHECKING:
    from .blend import Blend

InputKind = Literal["auto", "text", "fields"]


class Predictor:
    """The fitted pipeline and inference methods; a subclass supplies the runtime
    (``_runtime``). Attributes are None until fitted or loaded."""

    runtime_name = ""  # what runs the network: "torch", "onnx"
    # sequences (inputs x samples) decoded together when ``sample`` is given no batch_size
    max_sequences = MAX_SEQUENCES

    def __init__(self) -> None:
        self.model_config = ModelConfig()
        self.train_config = TrainConfig()
        self.targets: tuple[str, ...] | None = None
        self.numbers = NumberConfig()
        self.vocab_config = VocabConfig()
        self.serializer = SerializerConfig()
        self.inputs: InputKind = "auto"
        self.field_config = FieldConfig()
        self.task_key: str | None = None
        self.fields: FieldEncoder | None = None  # fitted when the model reads fields
        self.text_numbers: TextNumberEncoder | None = None  # text with VocabConfig(numbers=...)
        self.backbone_config: BackboneConfig | None = None
        self.backbone: Any = None  # rlm.nn.backbone.Backbone: a frozen encoder reads the text
        self.scaler: TargetScaler | None = None  # fitted for a value head (mse, gaussian)
        self.task_scaling: TaskScaling | None = None  # fitted with a task_key
        self.tokenizer: InputTokenizer | None = None
        self.codec: TargetCodec | None = None
        self.training_summary: dict[str, Any] | None = None  # saved with the checkpoint
        self.calibration: Calibration | None = None  # see calibrate(); saved too
        self.blend: Blend | None = None  # a second model mixed into every draw (rlm.blend)

    # -- the runtime: what a subclass provides ------------------------------------------------
    def _runtime(self) -> Network:
        raise NotImplementedError

    def num_params(self) -> int:
        raise NotImplementedError

    def _pipeline(self) -> tuple[InputTokenizer, TargetCodec]:
        if self.tokenizer is None or self.codec is None:
            raise ValueError(
                f"this {type(self).__name__} is not fitted: call fit(...) or load a saved model"
            )
        return self.tokenizer, self.codec

    # -- inputs and units -------------------------------------------------------------------------
    def texts(self, X: Sequence[Any]) -> list[str]:
        return [serialize(x, self.serializer) for x in inputs_of(X)]

    def encode_inputs(self, X: Sequence[Any]) -> list[Row]:
        """The inputs as the encoder reads them: ``FieldRow``s, token id lists or a backbone's
        ``VectorRow``s."""
        tok, _ = self._pipeline()
        if self.fields is not None:
            return list(self.fields.encode_batch(inputs_of(X)))
        texts = self.texts(X)
        if self.backbone is not None:
            return list(self.backbone.encode(texts))
        reader = self.text_numbers
        return tok.encode_batch(texts) if reader is None else list(reader.encode_batch(texts))

    def tasks_of(self, X: Sequence[Any]) -> list[str] | None:
        """Each input's task (``task_key``); None for a model without one."""
        return None if self.task_key is None else task_ids(inputs_of(X), self.task_key)

    def to_target_units(self, draws: np.ndarray, X: Sequence[Any]) -> np.ndarray:
        """Draws (B, n, K) as the output writes them -> target units (a no-op without a
        ``task_key``, whose targets are learnt on each task's own scale)."""
        scaling = self.task_scaling
        return draws if scaling is None else scaling.inverse(draws, self.tasks_of(X) or [])

    # -- inference ------------------------------------------------------------------------------
    def sample(
        self,
        X: Sequence[Any],
        n: int = 64,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        greedy: bool = False,
        seed: int = 0,
        batch_size: int | None = None,
        objectives: int | None = None,
        encoded: Sequence[Row] | None = None,
    ) -> np.ndarray:
        """Draw ``n`` samples per input: array (B, n, K), K = number of objectives.

        ``objectives=k`` decodes only the first k objectives (K = k): those after them are never
        computed, which is faster when later objectives are auxiliary. ``encoded``: ``X`` as
        ``encode_inputs(X)`` gives it, for a caller that samples the same inputs many times
        (training's validation, every epoch: reading 500 x264 configs took a third of an
        epoch of the slot mixer). A blended model (``blend``) mixes its member's draws in.
        """
        _, codec = self._pipeline()
        if n < 1:
            raise ValueError(f"n={n}: need at least one sample")
        k = len(codec.names) if objectives is None else objectives
        if not 1 <= k <= len(codec.names):
            raise ValueError(f"objectives={objectives}: choose 1..{len(codec.names)}")
        rows = self.encode_inputs(X) if encoded is None else encoded
        if len(rows) != len(X):
            raise ValueError(
                f"encoded: {len(rows)} rows for {len(X)} inputs; give encode_inputs(X)"
            )
        cfg = DecodeConfig(greedy=greedy, temperature=temperature, top_p=top_p)
        how = Draws(
            n=n, k=k, cfg=cfg, seed=seed, batch_size=batch_size, max_sequences=self.max_sequences
        )
        if self.scaler is not None:
            draws = sample_values(self._runtime(), self.scaler, rows, how)
        else:
            draws = sample_digits(self._runtime(), codec, rows, how)
        return self.blended(self.to_target_units(draws, X), X, how)

    def blended(self, draws: np.ndarray, X: Sequence[Any], how: Draws) -> np.ndarray:
        """This model's network's draws (B, n, K) for ``X``, in target units, with the blend's
        member (``rlm.blend``) drawn ``how`` and mixed in; as they are without a blend. Every
        path that samples a model (``sample``, the server's batches) ends here."""
        if self.blend is None:
            return draws
        member, cfg = self.blend.member, how.cfg
        # top_p trims a digit decoder's token distribution; a value head has none to trim
        member_p = cfg.top_p if member.scaler is None else 1.0
        other = member.sample(
            X, how.n, temperature=cfg.temperature, top_p=member_p, greedy=cfg.greedy,
            seed=how.seed, batch_size=how.batch_size, objectives=how.k,
        )  # fmt: skip
        return self.blend.mix(draws, other)

    def predict(
        self,
        X: Sequence[Any],
        *,
        samples: int = 64,
        stat: Literal["median", "mean"] = "median",
        seed: int = 0,
    ) -> np.ndarray:
        """Point estimates (B, K): median (default) or mean of samples; samples=0 is greedy."""
        if stat not in ("median", "mean"):  # before the (costly) sampling
            raise ValueError(f"stat={stat!r}: choose 'median' or 'mean'")
        if samples == 0:
            return self.sample(X, 1, greedy=True)[:, 0]
        draws = self.sample(X, samples, seed=seed)
        return np.median(draws, axis=1) if stat == "median" else draws.mean(axis=1)

    def distribution(
        self,
        X: Sequence[Any],
        *,
        samples: int = 64,
        level: float = 0.8,
        seed: int = 0,
        calibrated: bool = True,
        encoded: Sequence[Row] | None = None,
    ) -> Predictions:
        """One sampling pass: median, central ``level`` interval and the draws themselves.

        The interval is calibrated when the model has a calibration (``calibrate``) unless
        ``calibrated=False``, which gives the raw sample quantiles. ``encoded``: as ``sample``.
        """
        check_level(level)  # before the (costly) sampling
        cal = self.calibration if calibrated else None
        draws = self.sample(X, samples, seed=seed, encoded=encoded)
        return Predictions.from_draws(draws, level, cal, self.tasks_of(X))

    def predict_interval(
        self, X: Sequence[Any], level: float = 0.8, *, samples: int = 64, seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Central ``level`` quantile interval per input and objective: (lower, upper), each (B, K)."""
        pred = self.distribution(X, samples=samples, level=level, seed=seed)
        return pred.lower, pred.upper

    def calibrate(
        self, X: Sequence[Any], y: Any = None, *, samples: int = 64, seed: int = 0
    ) -> Self:
        """Calibrate intervals and quantiles on held-out rows (split-conformal, per objective).

        Afterwards ``distribution``, ``predict_interval``, ``evaluate`` and the server widen
        (or narrow) each sampled interval so that, on rows like these, a central ``level``
        interval covers ``level`` of targets. Use rows the model was not trained on; ``fit``
        does this itself with its ``valid`` rows. Medians are unchanged.
        """
        _, codec = self._pipeline()
        rows = as_examples(X, y, self.targets)
        draws = self.sample(rows, samples, seed=seed)
        truth = np.array([[e.y.get(name, np.nan) for name in codec.names] for e in rows])
        tasks = self.tasks_of(rows)  # Mondrian: each task's own margins (see predict.tasks)
        log = self.logged(codec.names)
        self.calibration = (
            fit_calibration(draws, truth, log=log)
            if tasks is None
            else fit_task_calibration(draws, truth, tasks, str(self.task_key), log=log)
        )
        return self

    def logged(self, names: Sequence[str]) -> list[bool]:
        """Per objective, whether this model's value head learned it on a log scale: then its
        intervals are calibrated on one too (``rlm.predict.calibration``). Not for a blend: its
        draws have the member's spread, and a normalised margin of a spread on the log scale
        grows exponentially (systems/deeparch, targets 1-171, blended at 0.75: 80% intervals
        3,850 wide on average)."""
        scaler = self.scaler
        if scaler is None or self.blend is not None:
            return [False] * len(names)
        return [name in scaler.names and scaler.log[scaler.names.index(name)] for name in names]

    def unblend(self) -> Self:
        """A blended model (``rlm.blend``, which ``model="auto"`` keeps where it scores better on
        the valid rows) becomes its primary alone, with the calibration it had on its own draws:
        one network per prediction. Unchanged without a blend."""
        from .blend import unblend

        unblend(self)
        return self

    def calibrate_held_out(self, rows: Sequence[Example]) -> None:
        """``calibrate`` on rows held out from training (a fit's valid rows) where they have
        ``MIN_ROWS`` targets of every objective; draws beyond the float range leave the
        intervals raw, with a warning that says why (the fitted model is kept)."""
        _, codec = self._pipeline()
        if not calibratable(rows, codec.names):
            return
        try:
            self.calibrate(rows)
        except NonFiniteDraws as e:
            warnings.warn(f"intervals left uncalibrated: {e}", stacklevel=3)

    def evaluate(
        self,
        X: Sequence[Any],
        y: Any = None,
        *,
        samples: int = 64,
        level: float = 0.8,
        seed: int = 0,
        per_task: bool = False,
    ) -> dict[str, Any]:
        """Metrics per objective: n, spearman, kendall, mae, mape, r2, interval coverage and width.

        ``per_task=True`` (a model with a ``task_key``): {task: {objective: metrics}} instead.
        """
        _, codec = self._pipeline()
        if per_task and self.task_key is None:
            raise ValueError("per_task=True needs a model fitted with task_key=...")
        ex = as_examples(X, y, self.targets)
        pred = self.distribution(ex, samples=samples, level=level, seed=seed)
        tasks = self.tasks_of(ex)
        if per_task and tasks is not None:
            return score_by_task(ex, codec.names, pred, tasks)
        return score(ex, codec.names, pred)


def read_pipeline(p: Predictor, meta: Mapping[str, Any], d: Path) -> None:
    """Fill ``p``'s pipeline from a saved ``config.json`` (``meta``) and the tokenizer in ``d``.
    A missing or malformed entry raises KeyError/TypeError/AttributeError for the caller to
    report as a damaged file."""
    codec = TargetCodec.from_dict(meta["targets"])
    inputs = meta.get("inputs") or {"kind": "text", "fields": None}  # rlm 0.1: text only
    p.numbers = NumberConfig.from_dict(meta["numbers"])
    p.serializer = SerializerConfig.from_dict(meta["serializer"])
    p.targets, p.codec, p.task_key = codec.names, codec, inputs.get("task_key")
    p.tokenizer = InputTokenizer.load(d / TOKENIZER)  # a damaged file: a ValueError naming it
    p.vocab_config = p.tokenizer.config
    p.fields, p.text_numbers, p.backbone = None, None, None
    if inputs["kind"] == "fields":
        p.fields = FieldEncoder.from_dict(inputs["fields"], p.tokenizer)
        p.field_config = p.fields.config
    elif inputs["kind"] == "backbone":
        from .nn.backbone import Backbone  # torch and transformers: only for such a model

        p.backbone_config = BackboneConfig.from_dict(inputs["backbone"])
        p.backbone = Backbone(p.backbone_config, expect_sha256=inputs["backbone_sha256"])
    elif p.vocab_config.numbers != "digits":
        p.text_numbers = TextNumberEncoder(p.tokenizer)
    p.inputs = inputs["kind"]
    scaler, task_scaling, cal = (
        meta.get("scaler"),
        meta.get("task_scaling"),
        meta.get("calibration"),
    )
    p.scaler = None if scaler is None else TargetScaler.from_dict(scaler)
    p.task_scaling = None if task_scaling is None else TaskScaling.from_dict(task_scaling)
    p.training_summary = meta.get("training")
    p.calibration = None if cal is None else calibration_from_dict(cal)


def pipeline_meta(p: Predictor) -> dict[str, Any]:
    """The pipeline's part of ``config.json``: what ``read_pipeline`` reads back."""
    _, codec = p._pipeline()
    backbone = {}
    if p.backbone is not None:
        backbone = {"backbone": p.backbone.config.to_dict(), "backbone_sha256": p.backbone.sha256}
    return {
        "serializer": p.serializer.to_dict(),
        "numbers": p.numbers.to_dict(),
        "targets": codec.to_dict(),
        "scaler": None if p.scaler is None else p.scaler.to_dict(),
        "task_scaling": None if p.task_scaling is None else p.task_scaling.to_dict(),
        "inputs": {
            "kind": "fields" if p.fields else "backbone" if p.backbone else "text",
            "fields": None if p.fields is None else p.fields.to_dict(),
            "task_key": p.task_key,
            **backbone,
        },
        "training": p.training_summary,
        "calibration": None if p.calibration is None else p.calibration.to_dict(),
    }
