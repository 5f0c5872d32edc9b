"""Model selection on validation rows: fit several candidate models on the same rows, keep the
one whose validation Spearman is best.

``RegressionLM(model=[...])`` names the candidates; ``model="auto"`` makes them for field inputs
with enough rows (the digit decoder and a 4-member MSE ensemble: ``nn.config.auto_candidates``,
where the measurements are). Each candidate is an ordinary fit of its own copy of the unfitted
estimator, with its own weight selection and calibration, under an equal share of the time
budget, so choosing costs no more time than one fit under the same budget. The winner replaces
the estimator; what every candidate scored is kept in its ``training_summary["selection"]``
(saved with it, shown by ``rlm info``).

With a run directory each candidate trains in ``run_dir/candidates/<n>-<head>`` (resumable on
its own), and the chosen model is saved in ``run_dir``; a resumed selection loads a candidate
that had finished instead of training it again.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .checkpoint import CONFIG
from .inputs.readers import reads_fields
from .io import Example
from .io.stream import ExampleStream
from .nn.config import AUTO_PRESET, ModelConfig, auto_candidates, preset
from .nn.resume import has_state
from .predict.calibration import MIN_ROWS
from .predict.summary import mean_spearman

if TYPE_CHECKING:
    from .api import RegressionLM

PRESETS_MAX_LEN = 256  # the presets' position table; "auto" raises it for longer text inputs
# samples per valid input when scoring a digit decoder: its point is a median of draws, whose
# noise would favour the deterministic value heads (x264, 1,000 rows: 0.900 at 16, 0.915 at 64)
SELECT_SAMPLES = 64


def model_choice(
    model: str | ModelConfig | Sequence[str | ModelConfig],
) -> tuple[bool, tuple[ModelConfig, ...], ModelConfig]:
    """``RegressionLM(model=...)`` resolved: whether it is ``"auto"``, the candidates to choose
    between (empty: no choice), and the model config until ``fit`` settles it."""
    if isinstance(model, ModelConfig):
        return False, (), model
    if isinstance(model, str):
        auto = model == "auto"
        return auto, (), preset(AUTO_PRESET["text"] if auto else model)
    if not model:
        raise ValueError("model=[]: give a preset, a ModelConfig, or several to choose from")
    candidates = tuple(m if isinstance(m, ModelConfig) else preset(m) for m in model)
    return False, candidates, candidates[0]


def auto_shape(
    model: RegressionLM, examples: Sequence[Example], count: int | None = None
) -> tuple[str, int, int]:
    """What ``model="auto"`` decides on: the kind of input ("fields", "text" or "backbone"),
    the training rows per task (``count`` for a stream's sample) and the position table a
    text reader needs."""
    fields = reads_fields(model, examples)
    kind = "backbone" if model.backbone_config else "fields" if fields else "text"
    reader = model.backbone_config or model.vocab_config
    tasks = model.tasks_of(examples)
    per_task = (count or len(examples)) // len(set(tasks or [""]))
    return kind, per_task, max(PRESETS_MAX_LEN, reader.max_length)


def candidate_configs(
    model: RegressionLM,
    train_ex: Sequence[Example] | ExampleStream,
    valid_ex: Sequence[Example] | None,
) -> tuple[ModelConfig, ...]:
    """The models to choose between on ``valid_ex``: the ones given, or those of
    ``model="auto"`` for these rows (``nn.config.auto_candidates``); fewer than two means no
    choice. A stream or a staged (aligned) fit keeps the one ``auto`` model."""
    if model.candidates or not model._auto_model:
        return model.candidates
    if isinstance(train_ex, ExampleStream) or model.train_config.align_steps:
        return ()
    kind, per_task, length = auto_shape(model, train_ex)
    return auto_candidates(kind, per_task, len(valid_ex or ()) >= MIN_ROWS, length)


def model_label(cfg: ModelConfig) -> str:
    """A model's head and members: ``digits``, ``mse``, ``mse4``, ``gaussian4`` ..."""
    return f"{cfg.head}{cfg.members if cfg.members > 1 else ''}"


def candidate_name(i: int, cfg: ModelConfig) -> str:
    """A candidate's label and run subdirectory: ``0-digits``, ``1-mse4`` ..."""
    return f"{i}-{model_label(cfg)}"


def select_model(
    model: RegressionLM,
    configs: Sequence[ModelConfig],
    train_ex: Sequence[Example] | ExampleStream,
    valid_ex: Sequence[Example] | None,
    run_dir: Path | None,
    fit: dict[str, Any],
) -> RegressionLM:
    """Fit a copy of the unfitted ``model`` per config (``fit``: the keyword arguments of its
    ``_fit``: resume, calibrate, sample_weights) and return the one with the best mean valid
    Spearman (the first of equals), its summary recording every candidate's score."""
    if not valid_ex:
        raise ValueError(
            f"choosing between {len(configs)} candidate models needs validation rows: pass "
            "valid=... to fit, or give one model"
        )
    budget = model.train_config.time_budget_s
    share = None if budget is None else budget / len(configs)
    fitted, report = [], []
    for i, cfg in enumerate(configs):
        name = candidate_name(i, cfg)
        sub = None if run_dir is None else run_dir / "candidates" / name
        twin = _fit_one(model, cfg, share, train_ex, valid_ex, sub, fit)
        pred = twin.distribution(list(valid_ex), samples=SELECT_SAMPLES, seed=0)
        score = mean_spearman(valid_ex, twin.targets or (), pred, twin.tasks_of(valid_ex))
        seconds = (twin.training_summary or {}).get("seconds")
        report.append({"name": name, "valid_spearman": score, "seconds": seconds})
        fitted.append(twin)
    chosen = best_index([r["valid_spearman"] for r in report])
    best = fitted[chosen]
    best.train_config = model.train_config  # the user's options, not the candidate's share
    summary = best.training_summary
    assert summary is not None
    summary["selection"] = {"chosen": report[chosen]["name"], "budget_share_s": share,
                            "candidates": report}  # fmt: skip
    return best


def _fit_one(
    model: RegressionLM,
    cfg: ModelConfig,
    share: float | None,
    train_ex: Sequence[Example] | ExampleStream,
    valid_ex: Sequence[Example],
    run_dir: Path | None,
    fit: dict[str, Any],
) -> RegressionLM:
    """One candidate: a copy of the unfitted estimator with ``cfg`` fixed, trained (or, when
    resuming a selection, loaded from ``run_dir`` if it had finished there)."""
    if fit["resume"] and run_dir is not None and _finished(run_dir):
        done = type(model).load(run_dir, device="cpu")
        done.placement = model.placement
        assert done.net is not None
        done.net.to(model.placement.device)
        return done
    twin = copy.deepcopy(model)
    twin.model_config, twin.candidates, twin._auto_model = cfg, (), False
    if share is not None:
        twin.train_config = replace(twin.train_config, time_budget_s=share)
    return twin._fit(train_ex, valid_ex, run_dir, **fit)


def _finished(run_dir: Path) -> bool:
    """A candidate's run that saved its final model (and left no state to resume)."""
    return (run_dir / CONFIG).is_file() and not has_state(run_dir)


def best_index(scores: Sequence[float]) -> int:
    """The first candidate with the highest score (-inf, none scoring, loses to any)."""
    return int(np.argmax(np.asarray(scores, dtype=np.float64)))
