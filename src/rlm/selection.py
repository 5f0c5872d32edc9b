"""Model selection on validation rows: fit several candidate models on the same rows, keep the
one whose validation Spearman is best.

``RegressionLM(model=[...])`` names the candidates; ``model="auto"`` makes them for field and
text inputs with enough rows and valid rows (a 4-member MSE ensemble, read by the slot mixer for
fields, then the digit decoder: ``nn.config.auto_candidates``, where the measurements are). Each
candidate is an ordinary fit of its own copy of the unfitted estimator, with its own weight
selection and calibration, in turn, each under an equal share of the time budget the ones before
it left (one that stops early gives its rest to the next; without a budget each trains until it
stops, so choosing costs their sum; the training loops share the budget, encoding, calibration
and scoring come on top), then one pass of ``SELECT_SAMPLES`` samples over the valid rows scores
it. The winner replaces the estimator, blended with the runner-up where a mix of their valid
draws scores better than the winner alone (``rlm.blend``; the draws are already there, so trying
costs seconds); what every candidate and blend weight scored is kept in its
``training_summary["selection"]`` (saved with it, shown by ``rlm info``).

With a run directory each candidate trains in ``run_dir/candidates/<n>-<head>``, resumable on
its own, and the chosen model is saved in ``run_dir``. A candidate that finished leaves
``DONE_FILE`` with its run's fingerprint: a resumed selection loads it instead of training it
again, and refuses it when the rows or options have changed since (as a resumed fit does).
Data-parallel, rank 0 scores and every rank takes its figures, so all keep the same model.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .blend import attach, choose_weight, draws_spearman, json_score
from .checkpoint import atomic_write
from .inputs.readers import reads_fields
from .io import Example
from .io.stream import ExampleStream
from .nn.config import AUTO_PRESET, ModelConfig, auto_candidates, preset
from .nn.distributed import World, broadcast_floats, check_same
from .nn.resume import has_state
from .persist import run_fingerprint
from .predict.calibration import MIN_ROWS

if TYPE_CHECKING:
    from .api import RegressionLM

PRESETS_MAX_LEN = 256  # the presets' position table; "auto" raises it for longer text inputs
CANDIDATES_DIR = "candidates"  # run_dir/candidates/<n>-<head>: each candidate's own run
DONE_FILE = "candidate.json"  # a finished candidate's run fingerprint
# samples per valid input when scoring a digit decoder: its point is a median of draws, whose
# noise would favour the deterministic value heads (x264, 1,000 rows: 0.900 at 16, 0.915 at 64)
SELECT_SAMPLES = 64
MIN_SHARE_S = 1.0  # the least time budget a candidate gets, whatever those before it spent


def model_choice(
    model: str | ModelConfig | Sequence[str | ModelConfig],
) -> tuple[bool, tuple[ModelConfig, ...], ModelConfig]:
    """``RegressionLM(model=...)`` resolved: whether it is ``"auto"``, the candidates to choose
    between (empty: no choice), and the model config until ``fit`` settles it."""
    if isinstance(model, ModelConfig):
        return False, (), model
    if isinstance(model, str):
        auto = model == "auto"
        return auto, (), preset(AUTO_PRESET if auto else model)
    if not isinstance(model, (list, tuple)) or not model:
        raise ValueError(
            f"model={model!r}: give a preset name, a ModelConfig, or a non-empty list of them "
            "to choose from on the valid rows"
        )
    for m in model:
        if not isinstance(m, (str, ModelConfig)) or m == "auto":
            raise ValueError(
                f"model list entry {m!r}: each candidate is a preset name or a ModelConfig "
                "('auto' chooses its own candidates: pass it alone)"
            )
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
    ``model="auto"`` for these rows and options (``nn.config.auto_candidates``); fewer than two
    means no choice. A stream or a staged (aligned) fit keeps the one ``auto`` model."""
    if model.candidates or not model._auto_model:
        return model.candidates
    if isinstance(train_ex, ExampleStream) or model.train_config.align_steps:
        return ()
    kind, per_task, length = auto_shape(model, train_ex)
    validated = len(valid_ex or ()) >= MIN_ROWS
    return auto_candidates(kind, per_task, validated, length)


def model_label(cfg: ModelConfig) -> str:
    """A model's head and members, the slot mixer, and a target scale other than auto:
    ``digits``, ``mse4``, ``gaussian4``, ``mse4-slots``, ``mse4-rank`` ..."""
    mixer = "-slots" if cfg.mixer == "slots" else ""
    scale = "" if cfg.target_scale == "auto" else f"-{cfg.target_scale}"
    return f"{cfg.head}{cfg.members if cfg.members > 1 else ''}{mixer}{scale}"


def fitted_label(model: RegressionLM) -> str:
    """A fitted model's ``model_label``, and a blend's member with its share of each draw:
    ``mse4-slots``, ``mse4-slots+digits(0.25)`` ..."""
    label = model_label(model.model_config)
    if model.blend is None:
        return label
    member = model_label(model.blend.member.model_config)  # type: ignore[attr-defined]
    return f"{label}+{member}({1 - model.blend.weight:g})"


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
    Spearman (the first of equals), blended with the runner-up where that scores better still
    (``rlm.blend``), its summary recording every candidate's score."""
    if not valid_ex:
        raise ValueError(
            f"choosing between {len(configs)} candidate models needs validation rows: pass "
            "valid=... to fit, or give one model"
        )
    budget = model.train_config.time_budget_s
    spent = 0.0
    report: list[dict[str, Any]] = []
    ranked: list[tuple[float, str, RegressionLM, np.ndarray]] = []  # the best two, best first
    for i, cfg in enumerate(configs):
        name = candidate_name(i, cfg)
        sub = None if run_dir is None else run_dir / CANDIDATES_DIR / name
        share = None if budget is None else budget_share(budget, spent, len(configs) - i)
        twin = _fit_one(model, cfg, share, train_ex, valid_ex, sub, fit)
        draws = _valid_draws(twin, valid_ex)
        score = _score(twin, valid_ex, draws)
        seconds = (twin.training_summary or {}).get("seconds")
        spent += seconds if seconds is not None else (share or 0.0)  # unknown: all its share
        report.append({"name": name, "valid_spearman": json_score(score), "budget_s": share,
                       "seconds": seconds})  # fmt: skip
        ranked.append((score, name, twin, draws))  # stable: the first of equals stays first
        ranked = sorted(ranked, key=lambda r: -r[0])[:2]  # only two stay in memory
    (_, chosen, best, draws), runner_up = ranked[0], ranked[1:]
    assert best.training_summary is not None
    best.train_config = model.train_config  # the user's options, not the candidate's share
    selection = {"chosen": chosen, "budget_s": budget, "candidates": report}
    if runner_up:
        selection["blend"] = _blend(best, runner_up[0], draws, valid_ex, fit["calibrate"])
    best.training_summary["selection"] = selection
    return best


def _blend(
    best: RegressionLM,
    runner_up: tuple[float, str, RegressionLM, np.ndarray],
    draws: np.ndarray,
    valid_ex: Sequence[Example],
    calibrate: bool,
) -> dict[str, Any]:
    """Mix the runner-up into ``best`` at the weight that scores best on the valid draws (rank
    0's choice, on every rank), recalibrated on the blended draws; what each weight scored."""
    _, name, member, member_draws = runner_up
    world = World.current()
    weight, tried = 1.0, []
    if world.main:
        score = partial(draws_spearman, valid_ex, best.targets or (), best.tasks_of(valid_ex))
        weight, tried = choose_weight(draws, member_draws, score)
    if world.active:
        (weight,) = broadcast_floats([weight], best.placement.device)
    member.train_config = best.train_config  # the user's options, not the candidate's share
    attach(best, member, weight, valid_ex, calibrate)
    return {"member": name if weight < 1.0 else None, "weight": weight, "tried": tried}


def budget_share(budget: float, spent: float, left: int) -> float:
    """The next of ``left`` candidates' time budget: an equal share of what the ones before
    it left unspent (a candidate that stops early gives its rest to those after it), and never
    under ``MIN_SHARE_S`` (a candidate that overran its share does not starve the next)."""
    return max((budget - spent) / left, MIN_SHARE_S)


def _valid_draws(twin: RegressionLM, valid_ex: Sequence[Example]) -> np.ndarray:
    """A fitted candidate's ``SELECT_SAMPLES`` draws per valid row (rank 0's; the other ranks
    score nothing and hold an empty array)."""
    if not World.current().main:
        return np.empty((0, SELECT_SAMPLES, len(twin.targets or ())))
    return twin.sample(list(valid_ex), SELECT_SAMPLES, seed=0)


def _score(twin: RegressionLM, valid_ex: Sequence[Example], draws: np.ndarray) -> float:
    """Mean valid Spearman of a candidate's valid draws: rank 0's, on every rank."""
    world = World.current()
    score = -math.inf
    if world.main:
        score = draws_spearman(valid_ex, twin.targets or (), twin.tasks_of(valid_ex), draws)
    if world.active:
        (score,) = broadcast_floats([score], twin.placement.device)
    return score


def _fit_one(
    model: RegressionLM,
    cfg: ModelConfig,
    share: float | None,
    train_ex: Sequence[Example] | ExampleStream,
    valid_ex: Sequence[Example],
    run_dir: Path | None,
    fit: dict[str, Any],
) -> RegressionLM:
    """One candidate: a copy of the unfitted estimator with ``cfg`` fixed, trained, or loaded
    from ``run_dir`` when resuming a selection in which it had finished."""
    # a refitted estimator's network, backbone, result and blend are not copied: the fit's own
    fitted = (model.net, model.backbone, model.result, model.blend)
    skip = {id(x): None for x in fitted if x is not None}
    twin = copy.deepcopy(model, skip)
    twin.model_config, twin.candidates, twin._auto_model = cfg, (), False
    if share is not None:
        twin.train_config = replace(twin.train_config, time_budget_s=share)
    weights = fit["sample_weights"]
    if run_dir is not None and fit["resume"] and _finished(run_dir, model):
        return _load_finished(twin, run_dir, train_ex, valid_ex, weights)
    resume = fit["resume"] and run_dir is not None and has_state(run_dir)
    if run_dir is not None and World.current().main:  # done once this fit is
        (run_dir / DONE_FILE).unlink(missing_ok=True)
    twin._fit(train_ex, list(valid_ex), run_dir, **{**fit, "resume": resume})
    if run_dir is not None and World.current().main:
        done = {"fingerprint": run_fingerprint(twin, train_ex, valid_ex, weights)}
        atomic_write(run_dir / DONE_FILE, json.dumps(done).encode())
    return twin


def _finished(run_dir: Path, model: RegressionLM) -> bool:
    """A candidate whose run saved its final model and its fingerprint (the same answer on
    every rank, or the ranks would go different ways)."""
    done = (run_dir / DONE_FILE).is_file() and not has_state(run_dir)
    if World.current().active:
        fix = "every rank must see the same run directory (a shared file system)"
        check_same(str(done), f"finished candidates ({run_dir})", model.placement.device, fix)
    return done


def _load_finished(
    twin: RegressionLM,
    run_dir: Path,
    train_ex: Sequence[Example] | ExampleStream,
    valid_ex: Sequence[Example],
    weights: np.ndarray | None,
) -> RegressionLM:
    """The finished candidate's weights, calibration and summary in ``twin``, whose pipeline is
    built from these rows and options: refused if they are not the ones it was trained on."""
    twin._prepare(train_ex)
    saved = json.loads((run_dir / DONE_FILE).read_text())["fingerprint"]
    if saved != run_fingerprint(twin, train_ex, valid_ex, weights):
        raise ValueError(
            f"{run_dir} holds a candidate trained on other rows or options than these: resume "
            "with the same ones, or start afresh (resume=False, rlm train --overwrite)"
        )
    done = type(twin).load(run_dir, device="cpu")
    assert twin.net is not None and done.net is not None
    twin.net.load_state_dict(done.net.state_dict())
    twin.net.to(twin.placement.device).eval()
    twin.calibration, twin.training_summary = done.calibration, done.training_summary
    return twin
