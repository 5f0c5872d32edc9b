"""``RegressionLM``: the one class a user needs. fit / predict / sample / predict_interval /
evaluate / save / load, in the scikit-learn spirit.

Pipeline: a mapping input (a config, a table row) -> ``inputs.fields`` positions (one per field,
numbers read as values); a string input -> ``inputs.text.serialize`` -> ``inputs.vocab`` ids;
either -> encoder. Targets -> ``numbers.targets.TargetCodec`` -> number tokens -> decoder.
Everything that shapes that pipeline (configs, field encoder, tokenizer, target codec) is saved
beside the weights, so ``load`` rebuilds the exact same predictor.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .align import align_numbers, check_alignment
from .blend import check_single
from .compress import Compression
from .inputs.fields import FieldConfig
from .inputs.padding import Row
from .inputs.readers import fit_readers, reader_sizes, reads_fields
from .inputs.text import SerializerConfig
from .inputs.vocab import InputTokenizer, VocabConfig
from .io import Example, target_names
from .io.examples import as_examples
from .io.stream import ExampleStream
from .nn.batches import Batches, InMemory, Streamed, Targets
from .nn.config import (
    BackboneConfig,
    LoraConfig,
    ModelConfig,
    TrainConfig,
    auto_model,
    target_scale,
)
from .nn.decoding import GrammarTable
from .nn.device import Placement, Precision
from .nn.distributed import World
from .nn.exits import ExitNetwork
from .nn.model import RegressionTransformer
from .nn.resume import has_state
from .nn.sampling import TorchNetwork
from .nn.training import TrainResult, train
from .numbers import NumberConfig
from .numbers.scaling import ScaledTargets, TargetScaler, TaskScaling
from .numbers.targets import EncodedTargets, TargetCodec
from .persist import finish_run, load_model, run_fingerprint, save_model
from .predict.calibration import MIN_ROWS
from .predict.summary import mean_spearman
from .predictor import InputKind, Predictor
from .selection import auto_shape, candidate_configs, model_choice, select_model
from .transfer import check_targets, extend_model, mixture, row_weights


class RegressionLM(Compression, Predictor):
    """A regression language model: text (or JSON-like configs) in, numbers out.

    Inference (sample / predict / distribution / predict_interval / calibrate / evaluate) is
    ``rlm.predictor.Predictor``, shared with the torch-free ``rlm.deploy.OnnxRegressor``; this
    class adds training, saving and the PyTorch runtime.

    >>> m = RegressionLM(model="tiny").fit(["a", "b"], [1.0, 2.0])  # doctest: +SKIP
    >>> m.predict(["a"])  # (1, 1) array of medians of 64 samples   # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        model: str | ModelConfig | Sequence[str | ModelConfig] = "auto",
        numbers: NumberConfig | None = None,
        vocab: VocabConfig | None = None,
        serializer: SerializerConfig | None = None,
        train: TrainConfig | None = None,
        targets: Sequence[str] | None = None,
        inputs: InputKind = "auto",
        fields: FieldConfig | None = None,
        task_key: str | None = None,
        backbone: BackboneConfig | None = None,
        device: str = "auto",
        precision: Precision = "auto",
    ) -> None:
        """``model``: a preset name, a ``ModelConfig``, several of them (each is fitted in turn
        with an equal share of the time budget the ones before it left, and the best on the
        valid rows is kept: ``rlm.selection``), or ``"auto"``: the ``compact`` preset (for text
        its position table raised to ``vocab.max_length``), 4 value-head members under 500
        rows per task; from 500, with 10+ valid rows, 4 MSE members (read by the slot mixer for
        field inputs, through attention for text) or the digit decoder, chosen on the valid
        rows, else the digit decoder (``nn.config.auto_candidates``; a stream, a frozen
        backbone or a staged fit is not chosen for).
        ``inputs``: ``"fields"`` reads mapping inputs one field per position (see
        ``rlm.inputs.fields``), ``"text"`` serialises every input to text first, ``"auto"``
        (default) reads fields when every training input is a mapping, else text.
        ``task_key``: the input field naming each row's task when one model serves several
        (systems, devices): weights are then selected on the mean of the tasks' valid
        Spearman, intervals are calibrated per task, and ``evaluate(per_task=True)`` scores
        each task (see ``rlm.predict.tasks``). ``backbone``: read every input (as text) through
        a frozen pretrained encoder and train only what is on top (``rlm.nn.backbone``).
        ``device``: "auto" (CUDA, else MPS, else CPU), "cpu", "cuda", "cuda:N" or "mps";
        ``precision``: "auto" (bf16 autocast on CUDA, fp32 elsewhere), "fp32" or "bf16"
        (``rlm.nn.device``). Neither is saved: ``load(dir, device=...)`` chooses again."""
        super().__init__()
        if inputs not in ("auto", "text", "fields"):
            raise ValueError(f"inputs={inputs!r}: choose 'auto', 'text' or 'fields'")
        self._auto_model, self.candidates, self.model_config = model_choice(model)
        self.numbers = numbers or NumberConfig()
        self.vocab_config = vocab or VocabConfig()
        self.serializer = serializer or SerializerConfig()
        self.train_config = train or TrainConfig()
        self.targets = tuple(targets) if targets else None
        self.inputs = inputs
        self.field_config = fields or FieldConfig()
        self.task_key = task_key
        self.backbone_config = backbone
        self.placement = Placement.of(device, precision)  # an absent device fails here
        self.net: RegressionTransformer | None = None
        self.result: TrainResult | None = None
        self.early_exit: float | None = None  # see set_early_exit
        self.exit_log: list[np.ndarray] = []

    # -- plumbing ---------------------------------------------------------------------------
    def _check_fitted(self) -> tuple[InputTokenizer, TargetCodec, RegressionTransformer]:
        if self.tokenizer is None or self.codec is None or self.net is None:
            raise ValueError(
                "this RegressionLM is not fitted: call fit(...) or RegressionLM.load(dir)"
            )
        return self.tokenizer, self.codec, self.net

    runtime_name = "torch"

    def _runtime(self) -> TorchNetwork:
        tok, codec, net = self._check_fitted()
        net.to(self.placement.device)
        if self.early_exit is None:
            return TorchNetwork(net, tok.pad_id, self.placement)
        return ExitNetwork(
            net, tok.pad_id, tolerance=self.early_exit, codec=codec, scaler=self.scaler,
            log=self.exit_log, placement=self.placement,
        )  # fmt: skip

    def num_params(self) -> int:
        return self._check_fitted()[2].num_params()

    def _build(
        self, examples: Sequence[Example], calibrated: bool = False, count: int | None = None
    ) -> None:
        """Fit the pipeline on ``examples`` (all the training rows, or a stream's sample of
        its ``count`` rows) and a fresh network for it."""
        names = list(self.targets) if self.targets else target_names(examples)
        self.targets = tuple(names)
        if self._auto_model:
            _, per_task, length = auto_shape(self, examples, count)
            self.model_config = auto_model(per_task, calibrated, length)
        scale = target_scale(self.model_config, shared=self.task_key is not None)
        self.task_scaling, self.blend = None, None  # a refit's pipeline is its own
        tasks = self.tasks_of(examples)
        if tasks is not None:
            ys = [e.y for e in examples]
            self.task_scaling = TaskScaling.fit(ys, names, tasks, str(self.task_key), scale)
        rows = self._unit_rows(examples)
        self.codec = TargetCodec.fit(rows, names, self.numbers)
        self.scaler = None
        fit_readers(self, examples, reads_fields(self, examples))
        if self.model_config.head != "digits":
            # with a task_key the rows are on each task's scale already: mean and std only
            self.scaler = TargetScaler.fit(rows, names, scale if tasks is None else "standard")
        torch.manual_seed(self.train_config.seed)
        self.net = self._network()  # on the CPU: the same initial weights on every device

    def _network(self) -> RegressionTransformer:
        """The transformer for the fitted (or loaded) encoder and codec, fresh weights."""
        assert self.tokenizer is not None and self.codec is not None
        if self.model_config.mixer == "slots" and self.fields is None:
            raise ValueError(
                "mixer='slots' reads field inputs (a mapping per row, one slot per key): use "
                "mixer='attention' for text, code or a backbone's states"
            )
        sizes = reader_sizes(self)
        return RegressionTransformer(
            self.model_config,
            sizes.pop("in_vocab"),
            len(self.codec.tokens),
            self.codec.length,
            **sizes,
            objectives=len(self.codec.names),
        )

    def _unit_rows(self, examples: Sequence[Example]) -> list[Mapping[str, float]]:
        """The targets the output learns: as given, or on each task's unit scale (task_key)."""
        rows, scaling = [e.y for e in examples], self.task_scaling
        return rows if scaling is None else scaling.transform(rows, self.tasks_of(examples) or [])

    def _encoded(self, examples: Sequence[Example]) -> tuple[list[Row], Targets]:
        """Examples as the network trains on them: encoded inputs and targets."""
        return self.encode_inputs(examples), self._targets(examples)

    def _targets(self, examples: Sequence[Example]) -> EncodedTargets | ScaledTargets:
        """What the output trains on: number tokens (digit decoder) or unit-scale floats."""
        _, codec, _ = self._check_fitted()
        rows = self._unit_rows(examples)
        return codec.encode(rows) if self.scaler is None else self.scaler.transform(rows)

    # -- training -------------------------------------------------------------------------------
    def fit(
        self,
        X: Sequence[Any],
        y: Any = None,
        *,
        valid: Sequence[Example] | tuple[Sequence[Any], Any] | None = None,
        run_dir: str | Path | None = None,
        resume: bool = False,
        calibrate: bool = True,
    ) -> RegressionLM:
        """Train from scratch on ``X`` (inputs, or Examples when ``y`` is None, or an
        ``rlm.io.stream.ExampleStream`` of files larger than memory: vocabularies and scales are
        fitted on its sample, epochs read the files again). ``valid`` rows select the best
        weights, then (``calibrate=True``, 10+ rows per objective) calibrate the intervals.
        ``run_dir``: training writes ``metrics.jsonl``, resumable checkpoints with the best
        model so far, then the final model there; SIGINT/SIGTERM save and raise
        ``rlm.nn.resume.Interrupted``; ``resume=True`` continues the run saved there.
        Under torchrun every process calls ``fit`` alike and trains its share
        (``rlm.nn.distributed``); rank 0 writes ``run_dir``."""
        if isinstance(X, ExampleStream):
            if y is not None:
                raise ValueError("an ExampleStream carries its targets: drop y")
            if self.numbers.scheme == "normalized":
                raise ValueError(
                    "the normalized number scheme fits its range on the training rows; a stream "
                    "fits on a sample, and a row outside it would fail mid-run: use ieee or p10"
                )
            valid_ex = None if valid is None else self._examples(X.skim(), None, valid)[1]
            return self._fit(X, valid_ex, run_dir, resume, calibrate)
        train_ex, valid_ex = self._examples(X, y, valid)
        return self._fit(train_ex, valid_ex, run_dir, resume, calibrate)

    def pretrain(
        self,
        datasets: Mapping[str, Sequence[Example]],
        *,
        weights: Mapping[str, float] | None = None,
        valid: Mapping[str, Sequence[Example]] | None = None,
        run_dir: str | Path | None = None,
        resume: bool = False,
        calibrate: bool = True,
    ) -> RegressionLM:
        """Train from scratch on several named datasets at once (``rlm.transfer``): each row's
        input names its task under this model's ``task_key``, so every task keeps its own
        target scale, selection and calibration; ``finetune`` then adapts the model to a new
        task from a few rows. ``weights``: each task's share of an epoch (default: by size).
        Inputs must be mappings; every dataset's rows carry this model's targets."""
        train_ex = mixture(datasets, self.task_key)
        valid_ex = None if valid is None else mixture(valid, self.task_key)
        check_targets(datasets, self.targets)
        p = row_weights(self.tasks_of(train_ex) or [], weights)
        return self._fit(train_ex, valid_ex, run_dir, resume, calibrate, p)

    def _fit(
        self,
        train_ex: list[Example] | ExampleStream,
        valid_ex: list[Example] | None,
        run_dir: str | Path | None,
        resume: bool,
        calibrate: bool,
        sample_weights: np.ndarray | None = None,
    ) -> RegressionLM:
        run = Path(run_dir) if run_dir else None
        configs = candidate_configs(self, train_ex, valid_ex)
        if len(configs) > 1:
            fit = {"resume": resume, "calibrate": calibrate, "sample_weights": sample_weights}
            return self._adopt(select_model(self, configs, train_ex, valid_ex, run, fit), run)
        calibrated = calibrate and len(valid_ex or ()) >= MIN_ROWS
        if self.train_config.align_steps:  # a backbone's staged training (rlm.align)
            check_alignment(self, train_ex)
        self._prepare(train_ex, calibrated)
        aligned = None  # a resumed run's saved weights replace stage 1's: skip it
        if self.train_config.align_steps and not (resume and run and has_state(run)):
            aligned = align_numbers(self, train_ex)  # type: ignore[arg-type]
        return self._train(train_ex, valid_ex, run, calibrate, resume, sample_weights, aligned)

    def _prepare(self, train_ex: list[Example] | ExampleStream, calibrated: bool = False) -> None:
        """The pipeline fitted on the rows and a fresh network (``_build``); a stream's on its
        sample, sized by its count."""
        if isinstance(train_ex, ExampleStream):
            self._build(train_ex.skim(), calibrated, count=train_ex.rows)
        else:
            self._build(train_ex, calibrated)

    def _adopt(self, chosen: RegressionLM, run: Path | None) -> RegressionLM:
        """Become the chosen candidate (keeping what to choose from, for a later ``fit``) and
        save it in the run directory."""
        candidates, auto = self.candidates, self._auto_model
        self.__dict__.update(chosen.__dict__)
        self.candidates, self._auto_model = candidates, auto
        if run is not None and World.current().main:
            finish_run(self, run)
        return self

    def finetune(
        self,
        X: Sequence[Any],
        y: Any = None,
        *,
        valid: Sequence[Example] | tuple[Sequence[Any], Any] | None = None,
        train: TrainConfig | None = None,
        lora: LoraConfig | None = None,
        calibrate: bool = True,
    ) -> RegressionLM:
        """A copy of this fitted model trained further on ``X`` (one task of a shared model, or
        a new one), with its own weight selection on ``valid`` and its own calibration; this
        model is left as it is. A task, option keys (with their values) and targets the model
        has never seen are added to the copy (``rlm.transfer.extend_model``; name new targets
        with Examples or dict targets); unseen values of known keys are read by content.
        ``train``: how to train the copy (default: this model's ``TrainConfig``), usually a
        shorter budget. ``lora``: train low-rank adapters of the frozen transformer instead of
        every weight (``rlm.nn.adapters``; merged into the weights when done)."""
        self._check_fitted()
        train_ex, valid_ex = self._examples(X, y, valid)
        tuned = self._copy()
        extend_model(tuned, train_ex)
        tuned.train_config = train or self.train_config
        if lora is None:
            return tuned._train(train_ex, valid_ex, None, calibrate)
        from .nn.adapters import add_lora, merge

        handle = add_lora(tuned.net, lora)  # type: ignore[arg-type]
        try:
            tuned._train(train_ex, valid_ex, None, calibrate)
        finally:
            tuned.net = merge(handle)
        return tuned

    def _copy(self) -> RegressionLM:
        """A deep copy that predicts at full depth (early exit is a setting of this object,
        not of the weights: a copy is trained, calibrated and saved without it), for network
        surgery: refused for a blend of two networks (``rlm.blend``)."""
        check_single(self, "fine-tuning, pruning or adding exits")
        twin = copy.deepcopy(self)
        twin.early_exit, twin.exit_log = None, []
        return twin

    def _examples(
        self, X: Sequence[Any], y: Any, valid: Sequence[Example] | tuple[Sequence[Any], Any] | None
    ) -> tuple[list[Example], list[Example] | None]:
        """Training and validation rows as Examples, checked before any training."""
        train_ex = as_examples(X, y, self.targets)
        if not train_ex:
            raise ValueError("no training examples")
        valid_ex = None
        if valid is not None:
            valid_ex = (
                as_examples(*valid, names=self.targets) if isinstance(valid, tuple) else list(valid)
            )
        self.tasks_of(train_ex + (valid_ex or []))  # every row names its task (with a task_key)
        return train_ex, valid_ex

    def _train(
        self,
        train_ex: Sequence[Example] | ExampleStream,
        valid_ex: Sequence[Example] | None,
        run_dir: Path | None,
        calibrate: bool,
        resume: bool = False,
        sample_weights: np.ndarray | None = None,
        align_s: float | None = None,
    ) -> RegressionLM:
        """Train the built network on the rows, select on ``valid_ex``, then calibrate.
        ``align_s``: the seconds of a preceding alignment stage, for the summary."""
        # (re)training invalidates any earlier calibration, before training samples valid rows
        # (select="spearman") with a model whose objectives may differ from the calibration's
        self.calibration, self.training_summary = None, None
        self.set_early_exit(None)  # validation and calibration sample at full depth
        tok, codec, net = self._check_fitted()
        batch_size = self.train_config.batch_size
        if isinstance(train_ex, ExampleStream):
            data: Batches = Streamed(train_ex, self._encoded, batch_size, train_ex.config.workers)
        else:
            data = InMemory(*self._encoded(train_ex), batch_size, sample_weights)
        if codec.clamped:  # the explicit opt-in still deserves a visible report
            warnings.warn(
                f"{codec.clamped} training targets were clamped into the number range",
                stacklevel=2,
            )
        grammar = GrammarTable(codec.grammar)
        net.to(self.placement.device)  # grown, pruned or fresh weights: all go there first
        valid_data, score_fn = None, None
        if valid_ex:
            vsrc = self.encode_inputs(valid_ex)
            valid_data = (vsrc, self._targets(valid_ex))

            tasks = self.tasks_of(valid_ex)

            def score_fn() -> float:
                pred = self.distribution(
                    valid_ex, samples=self.train_config.eval_samples, encoded=vsrc
                )
                return mean_spearman(valid_ex, codec.names, pred, tasks)

        self.result = train(
            net,
            data,
            grammar,
            self.train_config,
            tok.pad_id,
            valid=valid_data,
            score_fn=score_fn,
            run_dir=run_dir,
            resume=resume,
            fingerprint=run_fingerprint(self, train_ex, valid_ex, sample_weights)
            if run_dir
            else "",
            on_checkpoint=None if run_dir is None else partial(save_model, self, run_dir),
            placement=self.placement,
        )
        self.training_summary = self.result.summary()
        if align_s is not None:
            self.training_summary["align_s"] = align_s
        if calibrate and valid_ex:
            self.calibrate_held_out(valid_ex)
        if run_dir is not None and World.current().main:  # rank 0 of a torchrun launch
            finish_run(self, run_dir)
        return self

    # -- persistence ----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write model.safetensors, config.json and tokenizer.json into ``directory``."""
        return save_model(self, directory)

    @classmethod
    def load(
        cls, directory: str | Path, *, device: str = "auto", precision: Precision = "auto"
    ) -> RegressionLM:
        """Rebuild a saved model on ``device`` (see ``__init__``); never unpickles anything."""
        m = load_model(cls, directory)
        m.placement = Placement.of(device, precision)
        if m.blend is not None:  # its member runs where the primary does
            m.blend.member.placement = m.placement  # type: ignore[attr-defined]
        assert m.net is not None
        m.net.to(m.placement.device)
        return m

    def __repr__(self) -> str:
        n = self.net.num_params() if self.net is not None else None
        return f"RegressionLM(targets={self.targets}, params={n}, model={self.model_config})"
