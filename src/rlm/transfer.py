"""Transfer: one model pretrained on many tasks, then adapted to a new one from a few rows.

Pretraining (``RegressionLM.pretrain``) is ``fit`` on a *mixture*: several named datasets,
each row tagged with its task in the input (``{task_key: name, **config}``), so the model
learns every task on its own target scale (``rlm.numbers.scaling.TaskScaling``) and selects
and calibrates per task. Each task's share of an epoch is set by a weight, so a small system
is not drowned by a large one (and a large one is not repeated to exhaustion).

Fine-tuning (``RegressionLM.finetune``) trains a copy on the new rows. A new system brings
what the model has never seen: its task, its option keys, their values. ``extend_model``
grows what is needed and keeps every learnt row as it was: the task gets a target scale
fitted on its rows, the field encoder new key ids, categories and per-key statistics
(``FieldEncoder.extend``), and the network's tables new rows (``rlm.nn.grow``). With LoRA
(``rlm.nn.adapters``) the pretrained matrices stay frozen and only low-rank corrections, the
input tables and the head learn. Torch is imported by the modules this one calls.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .io import Example, target_names
from .io.examples import task_name
from .nn.config import target_scale

if TYPE_CHECKING:
    from .api import RegressionLM


def mixture(datasets: Mapping[str, Sequence[Example]], key: str | None) -> list[Example]:
    """Every dataset's rows, each input naming its task: ``{key: name, **x}``.

    A row that already names a task under ``key`` must name this one; inputs must be mappings
    (a configuration or a table row), where the task can be named."""
    if key is None:
        raise ValueError(
            "rows name their task inside the input, under the model's task key, and this model "
            "has none: build it with one, e.g. RegressionLM(task_key='task')"
        )
    if not datasets:
        raise ValueError("no datasets to pretrain on: pass {task name: rows, ...}")
    out: list[Example] = []
    for name, rows in datasets.items():
        if not rows:
            raise ValueError(f"dataset {name!r} has no rows: drop it or give it rows")
        for i, e in enumerate(rows):
            if not isinstance(e.x, Mapping):
                raise ValueError(
                    f"dataset {name!r} row {i}: the input is a {type(e.x).__name__}, but a "
                    f"task is named inside the input (under {key!r}): pass mappings"
                )
            if task_name(e.x.get(key, name)) != name:
                raise ValueError(
                    f"dataset {name!r} row {i} names task {e.x[key]!r} under {key!r}, not "
                    f"{name!r}: every row of a dataset names its own task (or none), so drop "
                    "the name from the rows, or give these rows under the task they name"
                )
            out.append(replace(e, x={key: name, **e.x}))
    return out


def check_targets(datasets: Mapping[str, Sequence[Example]], targets: Sequence[str] | None) -> None:
    """A ValueError naming the first dataset none of whose rows has one of ``targets`` (a
    dataset that would train with no loss at all); None: the targets come from the rows."""
    if not targets:
        return
    for name, rows in datasets.items():
        if not any(t in e.y for e in rows for t in targets):
            have = target_names(rows)[:5]
            raise ValueError(
                f"dataset {name!r} has none of the model's targets {list(targets)} (its rows "
                f"have {have}): rename its target to the model's (a manifest's \"target\")"
            )


def row_weights(tasks: Sequence[str], weights: Mapping[str, float] | None) -> np.ndarray | None:
    """Per-row draw probabilities giving task t a share ``weights[t] / sum(weights)`` of each
    epoch (its rows equally likely); None: every row once an epoch (shares by size)."""
    if weights is None:
        return None
    names = set(tasks)
    unknown = set(weights) - names
    if unknown:
        raise ValueError(f"weights for unknown tasks {sorted(unknown)}; tasks: {sorted(names)}")
    missing = names - set(weights)
    if missing:
        raise ValueError(f"no weight for tasks {sorted(missing)}: give every task a weight")
    bad = {t: w for t, w in weights.items() if not (np.isfinite(w) and w >= 0)}
    if bad or not sum(weights.values()) > 0:
        raise ValueError(f"task weights must be finite, >= 0 and not all 0: got {dict(weights)}")
    counts = Counter(tasks)
    p = np.array([weights[t] / counts[t] for t in tasks], dtype=float)
    return p / p.sum()


def extend_model(model: RegressionLM, rows: Sequence[Example]) -> dict[str, Any]:
    """Grow ``model`` (in place: call on a copy) to know the tasks and field keys of ``rows``;
    returns what was added (``targets``, ``tasks``, ``keys``, ``categories``)."""
    added: dict[str, Any] = {
        "targets": _extend_targets(model, rows), "tasks": [], "keys": [], "categories": 0
    }  # fmt: skip
    tasks = model.tasks_of(rows)
    if model.task_scaling is not None and tasks is not None:
        known = set(model.task_scaling.scalers)
        model.task_scaling = model.task_scaling.extend([e.y for e in rows], tasks)
        added["tasks"] = sorted(set(model.task_scaling.scalers) - known)
    old = model.fields
    if old is None:  # text inputs: the byte-level vocabulary already covers any text
        return added
    from .nn.grow import grow_inputs

    grown, source = old.extend([e.x for e in rows])  # type: ignore[misc]
    added["keys"] = grown.keys[len(old.keys) :]
    added["categories"] = len(grown.categories) - len(old.categories)
    if added["keys"]:
        assert model.net is not None
        grow_inputs(
            model.net,
            source,
            grown.n_keys,
            categories=old.category_ids,
            keys=old.key_ids,
            seed=model.train_config.seed,
        )
        model.fields = grown
    return added


def _extend_targets(model: RegressionLM, rows: Sequence[Example]) -> list[str]:
    """Append the objectives of ``rows`` that ``model`` does not write yet (decoded after the
    known ones, so conditioned on them)."""
    known = tuple(model.targets or ())
    new = [n for n in target_names(rows) if n not in known]
    if not new:
        return []
    if model.task_scaling is not None:
        raise ValueError(
            f"new targets {new} for a model with a task_key: its targets are scaled per task, "
            f"which a few rows cannot extend; name the targets as the model does: {list(known)}"
        )
    from .nn.grow import grow_objectives

    assert model.codec is not None and model.net is not None
    ys = [e.y for e in rows]
    last_span = model.codec.spans[-1]
    model.codec = model.codec.extend(ys, new, model.numbers)
    if model.scaler is not None:
        # new targets of a single-task value head, scaled by the rule its fit used
        scale = target_scale(model.model_config, shared=False)
        model.scaler = model.scaler.extend(ys, new, scale)
    grow_objectives(model.net, len(model.codec.names), model.codec.length, last_span)
    model.targets = known + tuple(new)
    return new
