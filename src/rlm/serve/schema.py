"""What ``rlm serve`` speaks: its limits (``ServeConfig``), the body of ``POST /predict``
(``PredictRequest``), and the JSON it answers with (``summarise``, ``model_card``, readable
validation errors). Needs the ``serve`` extra (pydantic comes with fastapi).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..checkpoint import best_valid_loss, read_history
from ..predict.tasks import Calibration, calibrated_quantiles

if TYPE_CHECKING:
    from ..predictor import Predictor
    from .batching import MicroBatcher

DEFAULT_QUANTILES = (0.1, 0.5, 0.9)


@dataclass(frozen=True)
class ServeConfig:
    """Limits and batching of a server. Every limit is enforced before any model work."""

    max_inputs: int = 64  # inputs in one request
    max_samples: int = 256  # samples per input
    default_samples: int = 64
    max_input_chars: int = 20_000  # characters of one input once serialised
    max_body_bytes: int = 1_000_000  # request body
    max_quantiles: int = 32
    max_batch: int = 256  # inputs in one model call (across requests)
    batch_wait_ms: float = 5.0  # how long a batch's first request waits for company
    max_queue: int = 256  # requests waiting per model; beyond it: 503

    def __post_init__(self) -> None:
        for name in ("max_inputs", "max_samples", "default_samples", "max_input_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        for name in ("max_body_bytes", "max_quantiles", "max_batch", "max_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.default_samples > self.max_samples:
            raise ValueError(
                f"default_samples={self.default_samples} exceeds max_samples={self.max_samples}"
            )
        if not 0 <= self.batch_wait_ms <= 10_000:
            raise ValueError(f"batch_wait_ms={self.batch_wait_ms}: use 0..10000")

    @property
    def batching(self) -> bool:
        return self.max_batch > 1


class PredictRequest(BaseModel):
    """Body of ``POST /predict``."""

    model_config = ConfigDict(extra="forbid")

    inputs: str | dict[str, Any] | list[str | dict[str, Any]] = Field(
        description="One input (a string, or a JSON object such as a configuration) or a list "
        "of inputs. A list always means several inputs.",
        examples=["|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|"],
    )
    model: str | None = Field(
        None, description="Which served model; default: the first (or only) one."
    )
    samples: int | None = Field(
        None, description="Samples per input (default: the server's default_samples)."
    )
    quantiles: list[float] = Field(
        default=list(DEFAULT_QUANTILES), description="Quantiles to report, each in [0, 1]."
    )
    level: float = Field(0.8, description="Central interval level, in (0, 1).")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Same seed, same numbers.")
    return_samples: bool = Field(False, description="Include the raw draws per objective.")

    @field_validator("inputs", mode="before")
    @classmethod
    def _input_types(cls, v: Any) -> Any:
        # Checked before the union so that a mistake gets one plain message, not three.
        items = v if isinstance(v, list) else [v]
        for i, x in enumerate(items):
            if not isinstance(x, str | dict):
                where = f"inputs[{i}]" if isinstance(v, list) else "inputs"
                kind = "null" if x is None else type(x).__name__
                raise ValueError(f"{where} is {kind}; each input must be a string or a JSON object")
        if isinstance(v, list) and not v:
            raise ValueError("inputs is an empty list; send at least one input")
        return v


def error_text(errors: Sequence[Mapping[str, Any]]) -> str:
    """Pydantic errors as one readable line: 'samples: Input should be a valid integer; ...'."""
    parts: list[str] = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        if e.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON ({e.get('ctx', {}).get('error', msg)})")
            continue
        where = ".".join(loc[:1] + [f"[{p}]" if p.isdigit() else p for p in loc[1:]])
        parts.append(f"{where}: {msg}" if where and not msg.startswith(loc[0]) else msg)
    return "; ".join(dict.fromkeys(parts)) or "invalid request"


@dataclass
class Served:
    """A model as served: its batcher, units and (optionally) the checkpoint directory."""

    name: str
    model: Predictor
    batcher: MicroBatcher
    units: dict[str, str] = field(default_factory=dict)
    directory: Path | None = None


def model_card(served: Served, config: ServeConfig) -> dict[str, Any]:
    """What ``GET /model`` returns: configuration, targets, units, training summary, limits."""
    m = served.model
    tok, codec = m._pipeline()
    card: dict[str, Any] = {
        "name": served.name,
        "targets": list(codec.names),
        "units": {t: served.units.get(t) for t in codec.names},
        "params": m.num_params(),
        "runtime": m.runtime_name,
        "input_vocab_size": tok.vocab_size,
        "model_config": m.model_config.to_dict(),
        "train_config": m.train_config.to_dict(),
        "numbers": [c.to_dict() for c in codec.configs],
        "training": m.training_summary,
        "calibration": None if m.calibration is None else m.calibration.to_dict(),
        "limits": asdict(config),
        "defaults": {
            "samples": config.default_samples,
            "quantiles": list(DEFAULT_QUANTILES),
            "level": 0.8,
            "seed": 0,
        },
    }
    if served.directory is not None:
        history = read_history(served.directory)
        card["checkpoint"] = str(served.directory)
        card["history"] = {
            "epochs_logged": len(history),
            "best_valid_loss": best_valid_loss(history),
            "last": history[-1] if history else None,
        }
    return card


def summarise(
    draws: np.ndarray,
    names: Sequence[str],
    units: Mapping[str, str],
    quantiles: Sequence[float],
    level: float,
    return_samples: bool,
    calibration: Calibration | None = None,
    tasks: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Draws (n, S, K) -> per input, per objective: point, mean, std, interval, quantiles.

    Interval and quantiles are the model's calibrated ones when it has a calibration (the
    same ``calibrated_quantiles`` as ``RegressionLM.distribution``), so both answer alike;
    ``tasks`` names each input's task for a model calibrated per task.
    """
    a = (1.0 - level) / 2.0
    qs = [*quantiles, 0.5, a, 1.0 - a]
    table = calibrated_quantiles(draws, qs, calibration, tasks)  # (Q, n, K)
    mean, std = draws.mean(axis=1), draws.std(axis=1)
    nq = len(quantiles)
    out = []
    for i in range(draws.shape[0]):
        objectives = []
        for k, name in enumerate(names):
            o: dict[str, Any] = {
                "name": name,
                "unit": units.get(name),
                "point": float(table[nq, i, k]),
                "mean": float(mean[i, k]),
                "std": float(std[i, k]),
                "lower": float(table[nq + 1, i, k]),
                "upper": float(table[nq + 2, i, k]),
                "quantiles": [float(v) for v in table[:nq, i, k]],
            }
            if return_samples:
                o["samples"] = draws[i, :, k].tolist()
            objectives.append(o)
        out.append({"objectives": objectives})
    return out
