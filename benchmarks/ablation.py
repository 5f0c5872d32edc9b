"""Ablation (issue 17): how the input is read, and which head writes the number.

Same rows, seed, budget and selection as ``accuracy.py`` (it is imported for them); one RLM per
(task, variant), all in one process and one run. Variants:

Configurations (``systems/*``, redis left out: no method finds a signal there):

* ``text``: the config serialised to JSON, BPE with one token per digit (``inputs="text"``);
* ``pairs``: one token per ``"key":value`` pair (``inputs="text"`` with ``PAIRS`` as the
  vocabulary pattern, 4,096 tokens, min frequency 1): the pre-field-encoder trick;
* ``category``: fields, every value a ``key=value`` token (``FieldConfig(numbers="category")``);
* ``value``: fields, numbers read only as values (``numbers="value"``);
* ``fields``: fields, both (the default).

Strings and code (``nas201/cifar10_test_acc``, ``pie/memory_kb``):

* ``text``: BPE with one token per digit (the default for code);
* ``edges``: NAS only, one token per cell edge (the pattern ``accuracy.py`` uses for NAS);
* ``num``: each number one ``<num>`` position carrying its value (``VocabConfig(numbers="value")``);
* ``num+digits``: the digits and a ``<num>`` (``numbers="both"``).

Heads, on each family's default representation (fields; edges; text): ``digits`` (the
variant above), ``mse`` and ``gaussian`` (``ModelConfig.head``); and ``num+mse`` for strings
and code: numbers as values under the MSE head.

Run:  .venv/bin/python benchmarks/ablation.py [--tasks systems/x264 pie] [--sizes 100]
Writes benchmarks/results/ablation.json and ablation.md. Default sizes: 100 rows for
systems (where the representation matters most), 1,000 for nas201 and pie; 120 s per fit.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling module, run as a script
import accuracy as acc

from rlm import RegressionLM
from rlm.inputs.fields import FieldConfig
from rlm.inputs.vocab import VocabConfig
from rlm.nn.config import preset

PAIRS = r'"[^"]+":[^,}]+'  # one piece per "key":value of a compact JSON config
TASKS = (
    *(f"systems/{s}" for s in acc.SYSTEMS if s != "redis"),
    "nas201/cifar10_test_acc",
    "pie/memory_kb",
)
SIZES = {"config": 100, "nas": 1000, "code": 1000}
HEADS = ("mse", "gaussian")
Variant = dict[str, Any]  # RegressionLM keyword arguments beyond targets and train


def variants(kind: acc.Kind) -> dict[str, Variant]:
    """The representations of one kind of task, the default last, then the heads on it."""
    text_preset, digits = preset("small"), preset("compact")
    if kind == "config":
        reps: dict[str, Variant] = {
            "text": {"model": text_preset, "inputs": "text"},
            "pairs": {
                "model": text_preset,
                "inputs": "text",
                "vocab": VocabConfig(pattern=PAIRS, vocab_size=4096, min_frequency=1),
            },
            # the digit decoder, explicitly: model="auto" would pick a value head at 100 rows
            "category": {"model": digits, "fields": FieldConfig(numbers="category")},
            "value": {"model": digits, "fields": FieldConfig(numbers="value")},
            "fields": {"model": digits},
        }
        default, base = "fields", "compact"
    else:
        reps = {"text": {"model": text_preset}}
        if kind == "nas":
            reps["edges"] = {"model": text_preset, "vocab": VocabConfig(pattern=acc.EDGE_PATTERN)}
        reps["num"] = {"model": text_preset, "vocab": VocabConfig(numbers="value")}
        reps["num+digits"] = {"model": text_preset, "vocab": VocabConfig(numbers="both")}
        default, base = ("edges" if kind == "nas" else "text"), "small"
    for head in HEADS:
        reps[head] = {**reps[default], "model": preset(base, head=head)}
    if kind != "config":  # numbers read as values, under the head that does not collapse
        reps["num+mse"] = {**reps["num"], "model": preset(base, head="mse")}
    return reps


def fit_variant(
    task: acc.Task, split: acc.Split, s: acc.Settings, kwargs: Variant
) -> dict[str, Any]:
    model = RegressionLM(
        targets=[task.target], train=acc.rlm_train_config(s, s.budget_s, task.kind), **kwargs
    )
    t = time.perf_counter()
    model.fit(split.train, valid=split.valid)
    train_s = time.perf_counter() - t
    y = acc.ys(split.test, task.target)
    metrics, _ = acc.rlm_metrics(model, [e.x for e in split.test], y, s)
    return {**metrics, **acc.fitted_row(model, train_s), "positions": positions(model, split)}


def positions(model: RegressionLM, split: acc.Split) -> float:
    """Mean encoder positions per training input: what the representation costs."""
    return float(np.mean([len(r) for r in model.encode_inputs(split.train)]))


def run(
    args: argparse.Namespace, log: Callable[[str], None], partial: Path | None = None
) -> dict[str, Any]:
    s = acc.settings_for(args)
    tasks = [t for t in acc.all_tasks(args.data) if t.name in TASKS]
    tasks = acc.select_tasks(tasks, args.tasks)
    start = time.perf_counter()
    out: dict[str, Any] = {}
    for task in tasks:
        size = args.size or SIZES[task.kind]
        split = acc.load_split(acc.read_task(task), size, s)
        results = {}
        for name, kwargs in variants(task.kind).items():
            if args.variants and name not in args.variants:
                continue
            results[name] = fit_variant(task, split, s, kwargs)
            r = results[name]
            log(
                f"{task.name} n={len(split.train)} {name}: Spearman {r['spearman']:.3f}, "
                f"MAPE {r['mape']:.1f}%, {r['train_s']:.0f}s | "
                f"{time.perf_counter() - start:.0f}s total"
            )
        out[task.name] = {"n_train": len(split.train), "n_test": len(split.test), **results}
        if partial is not None:  # progress survives a crash an hour in
            partial.write_text(json.dumps(out, indent=2))
    return {
        "settings": {"budget_s": s.budget_s, "samples": s.samples, "seed": s.seed},
        "tasks": out,
        "total_s": time.perf_counter() - start,
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform()},
    }


def _cell(r: dict[str, Any] | None, key: str, digits: int) -> str:
    if r is None or r.get(key) is None:
        return "—"
    return f"{r[key]:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Ablation: input representation and head",
        "",
        f"Generated by `benchmarks/ablation.py` in {report['total_s']:.0f} s on "
        f"{report['machine']['cpus']} CPU threads; {report['settings']['budget_s']:.0f} s per "
        "fit, the rows, seed and selection of `accuracy.py`. Test Spearman / MAPE %; "
        "`positions`: mean encoder positions per input. See the module docstring for the "
        "variants.",
    ]
    by_kind: dict[str, list[str]] = {}
    for name in report["tasks"]:
        by_kind.setdefault(name.split("/")[0], []).append(name)
    for family, names in by_kind.items():
        cols = [c for c in report["tasks"][names[0]] if c not in ("n_train", "n_test")]
        lines += ["", f"## {family}", "", "| task | n | " + " | ".join(cols) + " |"]
        lines.append("|---|---:|" + "---:|" * len(cols))
        for name in names:
            t = report["tasks"][name]
            cells = [
                f"{_cell(t.get(c), 'spearman', 3)} / {_cell(t.get(c), 'mape', 1)}" for c in cols
            ]
            lines.append(f"| {name} | {t['n_train']} | " + " | ".join(cells) + " |")
        if len(names) > 1:
            means = [np.mean([report["tasks"][n][c]["spearman"] for n in names]) for c in cols]
            lines.append("| **mean Spearman** | | " + " | ".join(f"{m:.3f}" for m in means) + " |")
        pos = [_cell(report["tasks"][names[0]].get(c), "positions", 1) for c in cols]
        lines.append(f"| positions ({names[0]}) | | " + " | ".join(pos) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="+", help="substrings of task names (default: all)")
    ap.add_argument("--variants", nargs="+", help="only these variants (default: all)")
    ap.add_argument("--size", type=int, help="train rows for every task (default per kind)")
    ap.add_argument("--budget", type=float, help="seconds per fit (120)")
    ap.add_argument("--samples", type=int, help="samples per test input (64)")
    ap.add_argument("--max-test", type=int, help="test rows per task (1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=acc.DATA)
    ap.add_argument("--out", type=Path, default=acc.RESULTS / "ablation.json")
    args = ap.parse_args(argv)
    # what accuracy.settings_for reads
    args.quick, args.preset, args.multi_budget, args.methods = False, None, None, None
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    console = Console(width=160)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_suffix(".partial.json")
    report = run(args, lambda line: console.print(f"[dim]{line}"), partial)
    partial.unlink(missing_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    md = markdown(report)
    args.out.with_suffix(".md").write_text(md)
    console.print(md)
    return report


if __name__ == "__main__":
    main()
