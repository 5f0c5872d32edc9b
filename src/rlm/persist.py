"""Saving and loading a ``RegressionLM``: a checkpoint directory of safetensors weights and JSON.

``save`` writes the files named by ``rlm.checkpoint.FILES``: ``model.safetensors`` (weights),
``config.json`` (every config, the field encoder, the target codec or scaler, the calibration,
the training summary) and ``tokenizer.json``. ``load`` rebuilds the exact same predictor from
them and never unpickles anything. Kept apart from ``api`` so the estimator reads as the
pipeline and this file as the format.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .blend import read_member, remove_stale_member, write_member
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CONFIG,
    TOKENIZER,
    WEIGHTS,
    atomic_write_all,
    check_checkpoint,
    read_meta,
)
from .io.examples import Example
from .io.stream import ExampleStream
from .nn.config import ModelConfig, TrainConfig
from .nn.resume import STATE_FILE
from .predictor import pipeline_meta, read_pipeline

if TYPE_CHECKING:
    import torch

    from .api import RegressionLM


def save_model(
    m: RegressionLM, directory: str | Path, weights: dict[str, torch.Tensor] | None = None
) -> Path:
    """Write the checkpoint files of a fitted model into ``directory`` (created if missing);
    ``weights`` in place of the network's own (a training run's best so far).

    The three files are staged and fsync'd, then renamed in one go, ``config.json`` last with the
    sha256 of the other two, so a reader sees a complete checkpoint or is told which file does
    not belong to it.
    """
    from safetensors.torch import save

    tok, _, net = m._check_fitted()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    weights = net.state_dict() if weights is None else weights
    state = {k: v.detach().cpu().contiguous() for k, v in weights.items()}  # from any device
    data = {
        WEIGHTS: save(state, {"format": "rlm", "version": __version__}),
        TOKENIZER: tok.to_json().encode("utf-8"),
    }
    # config.json records these digests: a file from elsewhere is named at load
    files = {name: hashlib.sha256(b).hexdigest() for name, b in data.items()}
    meta = {
        "format": CHECKPOINT_FORMAT,
        "rlm_version": __version__,
        "files": files,
        "model": m.model_config.to_dict(),
        "train": m.train_config.to_dict(),
        **pipeline_meta(m),
        # a blend's member first, into d/MEMBER_DIR: config.json names its digest
        "blend": write_member(m.blend, d, save_model),  # type: ignore[arg-type]
    }
    data[CONFIG] = json.dumps(meta, indent=2).encode("utf-8")
    # all three staged, then renamed together: a kill mid-save leaves the previous checkpoint
    atomic_write_all([(d / name, b) for name, b in data.items()])
    remove_stale_member(m.blend, d)  # a blend saved here before
    return d


def load_model(cls: type[RegressionLM], directory: str | Path) -> RegressionLM:
    """Rebuild a saved model on the CPU, in eval mode. A damaged, mixed or too-new checkpoint is
    a ValueError naming the file and what to do; nothing is unpickled."""
    d = Path(directory)
    check_checkpoint(d)
    meta = read_meta(d)
    try:
        m = _from_meta(cls, meta, d)
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(
            f"{d / CONFIG} is damaged ({type(e).__name__}: {e}): re-save the model or retrain"
        ) from None
    m.net = m._network()
    m.net.load_state_dict(_weights(d, m.net.state_dict()))
    m.net.eval()
    m.blend = read_member(d, meta, m.targets, lambda where: load_model(cls, where))
    return m


def _from_meta(cls: type[RegressionLM], meta: dict[str, Any], d: Path) -> RegressionLM:
    # a checkpoint saved before target scales existed learnt on the standard one: fine-tuning
    # it (new targets, new tasks) keeps to that, where the default "auto" might rank
    model = {"target_scale": "standard", **meta["model"]}
    m = cls(model=ModelConfig.from_dict(model), train=TrainConfig.from_dict(meta["train"]))
    read_pipeline(m, meta, d)
    return m


def _weights(d: Path, want: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The saved tensors, checked name by name against the network the config describes."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(d / WEIGHTS))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{d / WEIGHTS} cannot be read ({e}): the checkpoint is damaged") from None
    missing, extra = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    if missing or extra:
        raise ValueError(
            f"{d / WEIGHTS} does not fit {CONFIG}: missing {missing[:3]}, unexpected "
            f"{extra[:3]}; the two files come from different models"
        )
    for k, t in want.items():
        if state[k].shape != t.shape or state[k].dtype != t.dtype:
            raise ValueError(
                f"{d / WEIGHTS}: {k} is {state[k].dtype} {tuple(state[k].shape)} where "
                f"{CONFIG} describes {t.dtype} {tuple(t.shape)}; the files come from different "
                "models"
            )
    return state


def run_fingerprint(
    m: RegressionLM,
    train: Sequence[Example] | ExampleStream,
    valid: Sequence[Example] | None,
    sample_weights: np.ndarray | None = None,
) -> str:
    """sha256 of what a training run depends on (options, fitted vocabularies, the rows and how
    they are drawn), so a resume on other data or options is refused rather than mixed."""
    tok, codec, _ = m._check_fitted()
    # not the result: how often to report or save, how a batch is cut into micro-batches (the
    # same gradient; lowering it to resume after running out of memory must stay possible)
    how_often = ("progress", "checkpoint_every_s", "checkpoint_every_steps", "max_positions")
    options = {
        "model": m.model_config.to_dict(),
        "train": {k: v for k, v in m.train_config.to_dict().items() if k not in how_often},
        "serializer": m.serializer.to_dict(),
        "numbers": m.numbers.to_dict(),
        "targets": codec.to_dict(),
        "fields": None if m.fields is None else m.fields.to_dict(),
        "task_key": m.task_key,
        "backbone": None if m.backbone is None else m.backbone.sha256,
    }
    h = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    if sample_weights is not None:
        h.update(np.asarray(sample_weights, dtype=np.float64).tobytes())
    h.update(tok.to_json().encode())
    if isinstance(train, ExampleStream):  # its files, named by path, size and time
        h.update(f"stream {train.fingerprint()}".encode())
        train = []
    for part in (train, valid or ()):
        h.update(f"|{len(part)} rows|".encode())  # a row moved from train to valid differs
        for e in part:
            h.update(json.dumps([e.x, e.y], sort_keys=True, default=str).encode())
    return h.hexdigest()


def finish_run(m: RegressionLM, run_dir: Path) -> None:
    """The final model into the run directory, then its resumable state is no longer needed."""
    save_model(m, run_dir)
    (run_dir / STATE_FILE).unlink(missing_ok=True)
