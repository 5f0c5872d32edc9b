"""Blending two fitted models: each draw of the primary mixed with a second model's, at a weight
chosen on the valid rows. Torch-free.

Why: ``model="auto"`` from 500 rows fits the slot mixer's value ensemble and the digit decoder
(``rlm.selection``), and they err differently. Measured at 1,000 rows (the accuracy
benchmark's rows, 60 s each, test Spearman, one run): HSQLDB slots 0.963, digits 0.970, their
mean 0.980; deeparch 0.962 / 0.970, mixed at 0.25 0.968; where one model is clearly better
(x264 0.957 / 0.912, LLVM 0.991 / 0.979) the valid rows kept it alone. So after choosing,
``choose_weight`` tries the primary at each of ``WEIGHTS`` against the runner-up on the same
valid draws and keeps a blend only where it scores better than the primary alone.

A blended model is its primary (the better candidate: everything that needs one network, its
file and its pipeline, is that model's) plus ``Blend(member, weight)``. Draw s of input b is
``weight * primary[b, s] + (1 - weight) * member[b, s]`` in target units, both drawn with the
same seed: a value head's draws are its point repeated, so there the median of the blend is
exactly the weighted mean of the two medians. Intervals come from the blended draws, calibrated
on the valid rows like any model's. Mixing in target units, not logs: on the ten systems the
two gave the same test Spearman to 0.001, and a weighted mean never meets a log of a negative.

Saved as the primary's checkpoint with the member's in ``MEMBER_DIR`` beside it
(``rlm.persist``), and exported the same way: the primary's ONNX deployment with the member's
inside it (``rlm.deploy``), so ``write_member`` and ``read_member`` serve both formats. Network
surgery (pruning, exits, fine-tuning) is refused (``check_single``), since it would change one
half of the blend.
"""

from __future__ import annotations

import math
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .checkpoint import CONFIG, digest, finish_reading
from .io.examples import Example
from .predict.summary import Predictions, mean_spearman
from .predict.tasks import Calibration, calibration_from_dict

if TYPE_CHECKING:
    from .predictor import Predictor

MEMBER_DIR = "blend"  # the member's checkpoint, inside the primary's directory
# the primary's weights tried on the valid rows; 1.0 (the primary alone) is the default
WEIGHTS = (0.75, 0.5, 0.25)


@dataclass
class Blend:
    """The second model of a blend, the primary's weight (0 < weight < 1), and the primary's
    calibration on its own draws (``alone``: what ``unblend`` restores; None where it had
    none, or the blend was saved before it was kept)."""

    member: Predictor
    weight: float
    alone: Calibration | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.weight < 1.0 or not math.isfinite(self.weight):
            raise ValueError(
                f"blend weight={self.weight!r}: the primary's share must lie strictly between 0 "
                "and 1 (1 is the primary alone: no blend)"
            )

    def mix(self, primary: np.ndarray, member: np.ndarray) -> np.ndarray:
        """Draws (B, n, K) of the primary and of the member -> the blend's (B, n, K)."""
        return mix(primary, member, self.weight)

    def to_dict(self) -> dict[str, Any]:
        """What ``config.json`` records (the member's files are its own checkpoint)."""
        alone = None if self.alone is None else self.alone.to_dict()
        return {"weight": self.weight, "member": MEMBER_DIR, "alone_calibration": alone}


def mix(primary: np.ndarray, member: np.ndarray, weight: float) -> np.ndarray:
    """Sample by sample: ``weight`` of the primary's draws and the rest of the member's."""
    if primary.shape != member.shape:
        raise ValueError(
            f"blend: the primary drew {primary.shape} and the member {member.shape}; both must "
            "predict the same targets for the same inputs"
        )
    return weight * primary + (1.0 - weight) * member


def choose_weight(
    primary: np.ndarray, member: np.ndarray, score: Callable[[np.ndarray], float]
) -> tuple[float, list[dict[str, float | None]]]:
    """The primary's weight (1.0: alone) whose blended valid draws ``score`` best, and what
    each weight scored. Ties keep the heavier primary: a blend must earn its second model."""
    best_w, best = 1.0, score(primary)
    tried: list[dict[str, float | None]] = [{"weight": 1.0, "valid_spearman": json_score(best)}]
    for w in WEIGHTS:
        s = score(mix(primary, member, w))
        tried.append({"weight": w, "valid_spearman": json_score(s)})
        if s > best:
            best_w, best = w, s
    return best_w, tried


def json_score(x: float) -> float | None:
    """A score as JSON takes it: -inf (constant predictions) is no JSON number."""
    return x if math.isfinite(x) else None


def attach(
    primary: Predictor,
    member: Predictor,
    weight: float,
    valid: Sequence[Example],
    calibrate: bool = True,
) -> None:
    """Blend ``member`` into ``primary`` at ``weight`` (1.0: none), in place; the primary's
    calibration is refitted on the blended draws of ``valid`` (``calibrate``), or dropped:
    the blend's draws are wider or narrower than the primary's alone. The primary's own is
    kept in the blend, for ``unblend``."""
    same_targets(primary.targets, member.targets)
    if weight >= 1.0:
        return
    primary.blend = Blend(member, weight, alone=primary.calibration)
    primary.calibration = None
    if calibrate:
        primary.calibrate_held_out(valid)


def blend_on_valid(
    first: Predictor,
    second: Predictor,
    valid: Sequence[Example],
    *,
    samples: int = 64,
    calibrate: bool = True,
) -> tuple[Predictor, dict[str, Any]]:
    """Of two fitted models of the same targets (neither blended), the better on ``valid``
    (mean Spearman of ``samples`` draws' medians, over tasks where the models have a
    ``task_key``), with the other blended in where a mix of their draws scores better still:
    (that model, changed in place, and what each model and weight scored). For models fitted
    apart, e.g. a shared model fine-tuned on one task and a model of that task alone."""
    if first.blend is not None or second.blend is not None:
        raise ValueError("blend_on_valid blends two single models: one of these is a blend")
    same_targets(first.targets, second.targets)
    rows = list(valid)
    draws = [m.sample(rows, samples, seed=0) for m in (first, second)]
    tasks = first.tasks_of(rows) or second.tasks_of(rows)  # per task where one has a task_key
    score = partial(draws_spearman, rows, first.targets or (), tasks)
    scores = [score(d) for d in draws]
    lead = 1 if scores[1] > scores[0] else 0  # the first of equals leads
    primary, member = (first, second) if lead == 0 else (second, first)
    weight, tried = choose_weight(draws[lead], draws[1 - lead], score)
    attach(primary, member, weight, rows, calibrate)
    return primary, {"scores": [json_score(x) for x in scores], "primary": lead,
                     "weight": weight, "tried": tried}  # fmt: skip


def draws_spearman(
    rows: Sequence[Example], names: Sequence[str], tasks: Sequence[str] | None, draws: np.ndarray
) -> float:
    """Mean Spearman (over objectives, and tasks when given) of draws' (B, S, K) medians."""
    pred = Predictions.from_draws(draws, 0.5)  # the medians are scored, not the intervals
    return mean_spearman(rows, names, pred, tasks)


def unblend(model: Predictor) -> None:
    """Keep a blended model's primary alone, in place, with the calibration it had on its own
    draws; a model without a blend is left as it is.

    Why: a blend runs two networks per prediction, often for a small gain on the valid rows
    (accuracy benchmark, 1,000 rows, valid Spearman: nas201 gold latency 0.9880 alone, 0.9881
    blended; pixel3 0.9466 and 0.9486), and a deployment may want the speed more (``rlm export
    --primary-only``; ``benchmarks/edge.py`` measures both). Without the primary's
    own calibration (a blend saved before it was kept, or fitted without calibrating) its
    intervals are raw sample quantiles, with a warning that says how to calibrate them.
    """
    blend = model.blend
    if blend is None:
        return
    model.blend, model.calibration = None, blend.alone
    if blend.alone is None:
        warnings.warn(
            "this blend holds no calibration of its primary alone (saved before 2026-12-02, or "
            "fitted without calibrating): its intervals are raw sample quantiles until "
            "model.calibrate(valid rows)",
            stacklevel=2,
        )


def check_single(model: Predictor, what: str) -> None:
    """Refuse ``what`` (an operation on one network) for a blended model."""
    if model.blend is not None:
        raise ValueError(
            f"{what} changes one network, and this model blends two (model.blend: chosen by "
            "model='auto' on the valid rows). Keep the primary alone first: "
            "model.unblend() (its own calibration restored)"
        )


def same_targets(primary: Sequence[str] | None, member: Sequence[str] | None) -> None:
    """Both halves of a blend must write the same objectives in the same order (in memory, and
    for a saved blend, whose member's digest ``rlm.persist`` checks first)."""
    if tuple(primary or ()) != tuple(member or ()):
        raise ValueError(
            f"blend: the primary predicts {primary} and the member {member}; blend two models "
            "fitted for the same targets, in the same order"
        )


def write_member(blend: Blend | None, d: Path, write: Callable[[Predictor, Path], Any]) -> Any:
    """A blend's member written by ``write`` (a checkpoint's save, a deployment's export) into
    ``d/MEMBER_DIR``, before the primary's ``config.json``, whose record this returns (None
    without a blend): the member's config digest, so a member from elsewhere is refused."""
    if blend is None:
        return None
    write(blend.member, d / MEMBER_DIR)
    return {**blend.to_dict(), "config_sha256": digest(d / MEMBER_DIR / CONFIG)}


def remove_stale_member(blend: Blend | None, d: Path) -> None:
    """After the primary's ``config.json`` is written without a blend, a member a blend left in
    ``d`` before is removed (only then: a kill in between leaves a loadable directory)."""
    if blend is None and (d / MEMBER_DIR / CONFIG).is_file():
        shutil.rmtree(d / MEMBER_DIR)


def read_member(
    d: Path, meta: dict[str, Any], targets: Sequence[str] | None, load: Callable[[Path], Predictor]
) -> Blend | None:
    """The blend recorded in ``d``'s ``config.json`` (``meta``; ``write_member``), its member
    loaded by ``load`` after its digest is checked; None when the model is not blended."""
    saved = meta.get("blend")
    if saved is None:
        return None
    where = d / MEMBER_DIR
    if not isinstance(saved, dict) or saved.get("member") != MEMBER_DIR:
        raise ValueError(
            f"{d / CONFIG}: its blend entry {saved!r} is damaged (the member is always in "
            f"{MEMBER_DIR}/): save (or export) the model again"
        )
    weight = saved.get("weight")  # checked before the member is loaded: the entry is read whole
    if not isinstance(weight, (int, float)) or isinstance(weight, bool):
        raise ValueError(
            f"{d / CONFIG}: blend weight {weight!r} is damaged: save (or export) the model again"
        )
    alone = _alone(d, saved.get("alone_calibration"))
    # an interrupted save of the member is completed first, so that its digest is the one read
    finish_reading(where)
    if not (where / CONFIG).is_file():
        raise ValueError(
            f"{d / CONFIG} blends a second model saved in {where}, which is missing: copy the "
            "whole directory, or save (or export) the model again"
        )
    if digest(where / CONFIG) != saved.get("config_sha256"):
        raise ValueError(
            f"{where} is not the model {d / CONFIG} was written with: copy the whole directory "
            "again, or save (or export) the model again"
        )
    member = load(where)
    same_targets(targets, member.targets)
    return Blend(member, float(weight), alone)


def _alone(d: Path, saved: Any) -> Calibration | None:
    """The primary's own calibration as ``config.json`` records it (None: none kept)."""
    if saved is None:
        return None
    try:
        return calibration_from_dict(saved)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(
            f"{d / CONFIG}: the blend's alone_calibration is damaged ({e}): save (or export) "
            "the model again"
        ) from None
