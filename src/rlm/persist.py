"""Saving and loading a ``RegressionLM``: a checkpoint directory of safetensors weights and JSON.

``save`` writes the files named by ``rlm.checkpoint.FILES``: ``model.safetensors`` (weights),
``config.json`` (every config, the field encoder, the target codec or scaler, the calibration,
the training summary) and ``tokenizer.json``. ``load`` rebuilds the exact same predictor from
them and never unpickles anything. Kept apart from ``api`` so the estimator reads as the
pipeline and this file as the format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .checkpoint import FILES
from .inputs.fields import FieldEncoder
from .inputs.text import SerializerConfig
from .inputs.textnums import TextNumberEncoder
from .inputs.vocab import InputTokenizer
from .nn.config import ModelConfig, TrainConfig
from .numbers import NumberConfig
from .numbers.scaling import TargetScaler, TaskScaling
from .numbers.targets import TargetCodec
from .predict.tasks import calibration_from_dict

if TYPE_CHECKING:
    from .api import RegressionLM

CHECKPOINT_FORMAT = 1
WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer.json"
assert set(FILES) == {WEIGHTS, CONFIG, TOKENIZER}  # one list of a checkpoint's files


def save_model(m: RegressionLM, directory: str | Path) -> Path:
    """Write the checkpoint files of a fitted model into ``directory`` (created if missing)."""
    from safetensors.torch import save_file

    tok, codec, net = m._check_fitted()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(d / WEIGHTS), metadata={"format": "rlm", "version": __version__})
    tok.save(d / TOKENIZER)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "rlm_version": __version__,
        "model": m.model_config.to_dict(),
        "train": m.train_config.to_dict(),
        "serializer": m.serializer.to_dict(),
        "numbers": m.numbers.to_dict(),
        "targets": codec.to_dict(),
        "scaler": None if m.scaler is None else m.scaler.to_dict(),
        "task_scaling": None if m.task_scaling is None else m.task_scaling.to_dict(),
        "inputs": {
            "kind": "text" if m.fields is None else "fields",
            "fields": None if m.fields is None else m.fields.to_dict(),
            "task_key": m.task_key,
        },
        "training": m.training_summary,
        "calibration": None if m.calibration is None else m.calibration.to_dict(),
    }
    (d / CONFIG).write_text(json.dumps(meta, indent=2))
    return d


def load_model(cls: type[RegressionLM], directory: str | Path) -> RegressionLM:
    """Rebuild a saved model on the CPU, in eval mode."""
    from safetensors.torch import load_file

    d = Path(directory)
    for name in FILES:
        if not (d / name).is_file():
            raise ValueError(
                f"{d} is not an rlm checkpoint: {name} is missing (save with .save(dir))"
            )
    meta = json.loads((d / CONFIG).read_text())
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint format {meta.get('format')!r} is not {CHECKPOINT_FORMAT}")
    codec = TargetCodec.from_dict(meta["targets"])
    inputs = meta.get("inputs") or {"kind": "text", "fields": None}  # rlm 0.1: text only
    m = cls(
        model=ModelConfig.from_dict(meta["model"]),
        numbers=NumberConfig.from_dict(meta["numbers"]),
        serializer=SerializerConfig.from_dict(meta["serializer"]),
        train=TrainConfig.from_dict(meta["train"]),
        targets=codec.names,
        task_key=inputs.get("task_key"),
    )
    m.tokenizer = InputTokenizer.load(d / TOKENIZER)
    m.vocab_config = m.tokenizer.config
    m.codec = codec
    if inputs["kind"] == "fields":
        m.fields = FieldEncoder.from_dict(inputs["fields"], m.tokenizer)
        m.field_config = m.fields.config
    elif m.vocab_config.numbers != "digits":
        m.text_numbers = TextNumberEncoder(m.tokenizer)
    m.inputs = inputs["kind"]
    scaler = meta.get("scaler")
    m.scaler = None if scaler is None else TargetScaler.from_dict(scaler)
    task_scaling = meta.get("task_scaling")
    m.task_scaling = None if task_scaling is None else TaskScaling.from_dict(task_scaling)
    m.net = m._network()
    m.net.load_state_dict(load_file(str(d / WEIGHTS)))
    m.net.eval()
    m.training_summary = meta.get("training")
    cal = meta.get("calibration")
    m.calibration = None if cal is None else calibration_from_dict(cal)
    return m
