"""Transfer benchmark (issue 18): pretrain on many tasks, adapt to a new one from a few rows.

**Systems, leave one out.** For each held-out system H (the 10 with signal; redis is only ever
pretrained on), one RLM is pretrained on the other 10 systems (``RegressionLM.pretrain``:
``--pretrain-rows`` training and 100 validation rows each, the ``compact`` preset with an MSE
head, ``task_key="system"``, ``--pretrain-budget`` seconds). Then for each size n in
``--sizes`` and each of ``--repeats`` seeded draws of H's rows (n from its train split,
max(8, n/4) from its valid split; the test rows are fixed):

* ``rlm_ft``: the pretrained model fine-tuned on the n rows (``finetune``: H's task, keys and
  categories added; every weight trained; ``FT_EPOCHS`` epochs at ``FT_LR``, no selection: on 8
  validation rows selection measured worse than a fixed schedule);
* ``rlm_lora``: the same with LoRA adapters (rank 8, ``rlm.nn.adapters``);
* ``rlm_scratch``: the same model (compact, MSE head) trained from scratch on the n rows,
  selected on the valid rows, ``--budget`` seconds;
* ``gbt``, ``lightgbm``, ``catboost``, ``tabm``: the baselines of ``accuracy.py`` on the same
  rows, tuned or early-stopped on the same valid rows (TabM within ``--budget``).

Test Spearman and MAPE, the mean over the draws. **NAS-Bench-201** (``--nas``): one RLM
(``small``, MSE head, the edge vocabulary) pretrained on 1,000 cells' CIFAR-100 and
ImageNet16-120 accuracies and two latencies; then CIFAR-10 accuracy, a target it has never
written, learnt from n cells as a new objective (``finetune`` grows the head), against the
same model from scratch and the trees; Kendall's tau on 1,000 test cells.

Run:  .venv/bin/python benchmarks/transfer.py [--quick] [--held-out x264 7z] [--no-nas]
Writes benchmarks/results/transfer.json and transfer.md (``--quick``: transfer_quick.*).
Full mode: about an hour on the 2-core CPU machine.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, run as a script
from accuracy import DATA, EDGE_PATTERN, RESULTS, SYSTEM_TARGETS
from baselines import fit_baselines
from tuned_baselines import TUNED, check_tuned, fit_tuned

from rlm import RegressionLM
from rlm.inputs.vocab import VocabConfig
from rlm.io import Example, read_jsonl, subset
from rlm.nn.config import LoraConfig, TrainConfig, preset
from rlm.predict.metrics import regression_metrics

NO_SIGNAL = ("redis",)  # no method learns it (issue 17): pretrained on, never held out
HELD_OUT = tuple(s for s in SYSTEM_TARGETS if s not in NO_SIGNAL)
# fine-tuning: a fixed schedule; every weight at 1e-3 (3e-3 collapsed x264 at 64 rows, quick run),
# adapters at 3e-3 (LoRA's corrections start at zero and need the larger step)
FT_EPOCHS, FT_LR, LORA_LR = 100, 1e-3, 3e-3
LORA = LoraConfig(rank=8, alpha=16.0)
NAS_PRETRAIN = (
    "cifar100_test_acc",
    "imagenet16_test_acc",
    "latency_ms_gold_6226",
    "latency_ms_pixel3",
)
NAS_TARGET = "cifar10_test_acc"
BASELINES = ("gbt", *TUNED)
METHODS = ("rlm_ft", "rlm_lora", "rlm_scratch", *BASELINES)


def rows_of(path: Path) -> dict[str, list[Example]]:
    out: dict[str, list[Example]] = {"train": [], "valid": [], "test": []}
    for e in read_jsonl(path):
        if e.split in out:
            out[e.split].append(e)
    return out


def take(rows: Sequence[Example], n: int, seed: int) -> list[Example]:
    """A seeded subset of n rows (all of them when there are fewer)."""
    return subset(rows, min(n, len(rows)), seed=seed)


def as_target(rows: Sequence[Example], own: str, name: str, system: str | None) -> list[Example]:
    """Rows with one target ``own`` renamed ``name``, the system named in the input."""
    return [
        Example(x=e.x if system is None else {"system": system, **e.x}, y={name: e.y[own]}, id=e.id)  # type: ignore[dict-item]
        for e in rows
    ]


def train_config(budget: float, epochs: int, lr: float, select: str, batch: int) -> TrainConfig:
    return TrainConfig(
        lr=lr, batch_size=batch, max_epochs=epochs, time_budget_s=budget, select=select,  # type: ignore[arg-type]
        patience=50, warmup_frac=0.0, seed=0, progress=False,
    )  # fmt: skip


def score(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    m = regression_metrics(y, pred)
    return {k: m.get(k, float("nan")) for k in ("spearman", "kendall", "mape")}


def baselines(
    kind: str, tr: Sequence[Example], va: Sequence[Example], te: Sequence[Example], target: str,
    budget: float,
) -> dict[str, tuple[np.ndarray, float]]:  # fmt: skip
    """Each baseline's test predictions and fit seconds, on the same rows as the RLM."""
    x = lambda rows: [e.x for e in rows]  # noqa: E731
    y = lambda rows: np.array([e.y[target] for e in rows], dtype=float)  # noqa: E731
    out = fit_baselines(kind, x(tr), y(tr), x(va), y(va), x(te), 0)  # type: ignore[arg-type]
    out.update(fit_tuned(kind, TUNED, x(tr), y(tr), x(va), y(va), x(te), 0, budget))  # type: ignore[arg-type]
    return {m: (r.pred, r.train_s) for m, r in out.items() if m in BASELINES and r is not None}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    return fn(), time.perf_counter() - t


def adapt(
    pretrained: RegressionLM, scratch: Callable[[], RegressionLM], kind: str,
    tr: list[Example], va: list[Example], te: list[Example], target: str, budget: float,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """Every method on one draw of rows: test metrics and seconds."""
    y = np.array([e.y[target] for e in te])
    xs = [e.x for e in te]
    k = -1  # the last objective: the only one (systems), or the new one (NAS)
    out = {}
    for name, lora, lr in (("rlm_ft", None, FT_LR), ("rlm_lora", LORA, LORA_LR)):
        tune = train_config(budget, FT_EPOCHS, lr, "loss", 16)
        model, s = timed(
            lambda lora=lora, tune=tune: pretrained.finetune(
                tr, train=tune, lora=lora, calibrate=False
            )
        )
        out[name] = {**score(y, model.predict(xs, samples=0)[:, k]), "train_s": s}
    model, s = timed(lambda: scratch().fit(tr, valid=va, calibrate=False))
    out["rlm_scratch"] = {**score(y, model.predict(xs, samples=0)[:, k]), "train_s": s}
    for name, (pred, s) in baselines(kind, tr, va, te, target, budget).items():
        out[name] = {**score(y, pred), "train_s": s}
    return out


def mean_over(draws: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {
        m: {k: float(np.nanmean([d[m][k] for d in draws])) for k in draws[0][m]} for m in draws[0]
    }


def systems(args: argparse.Namespace) -> dict[str, Any]:
    data = {s: rows_of(DATA / "systems" / f"{s}.jsonl.gz") for s in SYSTEM_TARGETS}
    head = preset("compact", head="mse")
    out: dict[str, Any] = {}
    for held in args.held_out:
        pre = {
            s: as_target(take(data[s]["train"], args.pretrain_rows, seed=0), t, "y", None)
            for s, t in SYSTEM_TARGETS.items() if s != held
        }  # fmt: skip
        val = {
            s: as_target(take(data[s]["valid"], 100, seed=0), t, "y", None)
            for s, t in SYSTEM_TARGETS.items() if s != held
        }  # fmt: skip
        cfg = train_config(args.pretrain_budget, 400, 3e-3, "spearman", 32)
        model = RegressionLM(model=head, targets=["y"], task_key="system", train=cfg)
        t = time.perf_counter()
        model.pretrain(pre, valid=val)
        pre_s = time.perf_counter() - t
        own = SYSTEM_TARGETS[held]
        te = as_target(take(data[held]["test"], args.max_test, seed=0), own, "y", held)
        scratch = lambda: RegressionLM(  # noqa: E731
            model=head, targets=["y"], train=train_config(args.budget, 400, 3e-3, "spearman", 16)
        )
        out[held] = {"pretrain_s": pre_s, "pretrain_epochs": model.training_summary["epochs"]}  # type: ignore[index]
        for n in args.sizes:
            draws = []
            for r in range(args.repeats):
                tr = as_target(take(data[held]["train"], n, seed=100 + r), own, "y", held)
                va = as_target(
                    take(data[held]["valid"], max(8, n // 4), seed=100 + r), own, "y", held
                )
                draws.append(adapt(model, scratch, "config", tr, va, te, "y", args.budget))
            out[held][str(n)] = mean_over(draws)
            print(held, n, table_line(out[held][str(n)], "spearman"), flush=True)
    return out


def nas(args: argparse.Namespace) -> dict[str, Any]:
    data = rows_of(DATA / "nas201" / "nas201.jsonl.gz")
    vocab = VocabConfig(pattern=EDGE_PATTERN)
    head = preset("small", head="mse")
    keep = lambda rows, names: [Example(x=e.x, y={k: e.y[k] for k in names}, id=e.id) for e in rows]  # noqa: E731
    pre = keep(take(data["train"], args.pretrain_rows, seed=0), NAS_PRETRAIN)
    val = keep(take(data["valid"], 200, seed=0), NAS_PRETRAIN)
    cfg = train_config(args.pretrain_budget, 400, 1e-3, "spearman", 32)
    model = RegressionLM(model=head, vocab=vocab, train=cfg)
    _, pre_s = timed(lambda: model.fit(pre, valid=val, calibrate=False))
    te = keep(take(data["test"], args.max_test, seed=0), [NAS_TARGET])
    scratch = lambda: RegressionLM(  # noqa: E731
        model=head, vocab=vocab, train=train_config(args.budget, 400, 1e-3, "spearman", 16)
    )
    out: dict[str, Any] = {"pretrain_s": pre_s, "pretrained_on": list(NAS_PRETRAIN)}
    for n in args.nas_sizes:
        draws = []
        for r in range(args.repeats):
            tr = keep(take(data["train"], n, seed=100 + r), [NAS_TARGET])
            va = keep(take(data["valid"], max(8, n // 4), seed=100 + r), [NAS_TARGET])
            draws.append(adapt(model, scratch, "nas", tr, va, te, NAS_TARGET, args.budget))
        out[str(n)] = mean_over(draws)
        print("nas201", n, table_line(out[str(n)], "kendall"), flush=True)
    return out


def table_line(row: dict[str, dict[str, float]], metric: str) -> str:
    return "  ".join(f"{m} {row[m][metric]:.3f}" for m in METHODS if m in row)


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        "# Transfer benchmark",
        "",
        f"Generated by `benchmarks/transfer.py` in {report['seconds']:.0f} s on "
        f"{s['threads']} CPU threads. Systems: leave one out, pretrained "
        f"{s['pretrain_budget']:.0f} s on {s['pretrain_rows']} rows of each other system; "
        f"each cell the mean over {s['repeats']} draws of the held-out rows; RLM fine-tunes "
        f"{FT_EPOCHS} epochs (lr {FT_LR}, LoRA rank {LORA.rank} at {LORA_LR}), from scratch "
        f"and TabM within {s['budget']:.0f} s. Test Spearman (MAPE %); `nan`: constant "
        "predictions (scikit-learn's GBT needs 20 rows per leaf).",
        "",
    ]
    for n in s["sizes"]:
        lines += [f"## {n} rows of the held-out system", ""]
        lines += ["| system | " + " | ".join(METHODS) + " |", "|---|" + "---:|" * len(METHODS)]
        wins = {m: [0, 0] for m in ("rlm_ft", "rlm_lora")}  # [> best baseline, > scratch]
        for held, per in report["systems"].items():
            row = per[str(n)]
            cells = [f"{row[m]['spearman']:.3f} ({row[m]['mape']:.1f})" for m in METHODS]
            lines.append(f"| {held} | " + " | ".join(cells) + " |")
            best = np.nanmax([row[m]["spearman"] for m in BASELINES])
            for m, w in wins.items():
                w[0] += row[m]["spearman"] > best
                w[1] += row[m]["spearman"] > row["rlm_scratch"]["spearman"]
        total = len(report["systems"])
        lines += [
            "",
            *(
                f"`{m}` is above the best of the trees and TabM on {w[0]} of {total} held-out "
                f"systems, above the same model from scratch on {w[1]} of {total}."
                for m, w in wins.items()
            ),
            "",
        ]
    if "nas201" in report:
        lines += ["## NAS-Bench-201: CIFAR-10 accuracy as a new target (Kendall tau)", ""]
        lines += ["| rows | " + " | ".join(METHODS) + " |", "|---|" + "---:|" * len(METHODS)]
        for n in s["nas_sizes"]:
            row = report["nas201"][str(n)]
            lines.append(
                f"| {n} | " + " | ".join(f"{row[m]['kendall']:.3f}" for m in METHODS) + " |"
            )
        lines.append("")
    return "\n".join(lines)


def rewrite(stem: str = "transfer") -> None:
    """The Markdown report again from its JSON (after a change to ``markdown``)."""
    report = json.loads((RESULTS / f"{stem}.json").read_text())
    (RESULTS / f"{stem}.md").write_text(markdown(report))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two systems, one draw, short budgets")
    ap.add_argument("--held-out", nargs="+", default=None, choices=HELD_OUT)
    ap.add_argument("--sizes", nargs="+", type=int, default=[16, 64])
    ap.add_argument("--nas-sizes", nargs="+", type=int, default=[16, 64])
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--pretrain-rows", type=int, default=1000)
    ap.add_argument("--pretrain-budget", type=float, default=None)
    ap.add_argument("--budget", type=float, default=None, help="from-scratch RLM and TabM")
    ap.add_argument("--max-test", type=int, default=1000)
    ap.add_argument("--no-nas", action="store_true")
    args = ap.parse_args(argv)
    quick = args.quick
    args.held_out = args.held_out or (["x264", "LLVM"] if quick else list(HELD_OUT))
    args.repeats = args.repeats or (1 if quick else 2)
    args.pretrain_budget = args.pretrain_budget or (15.0 if quick else 120.0)
    args.budget = args.budget or (5.0 if quick else 20.0)
    if quick:
        args.pretrain_rows, args.max_test = min(args.pretrain_rows, 200), min(args.max_test, 300)
    check_tuned(TUNED)
    torch.set_num_threads(2)
    t = time.perf_counter()
    report: dict[str, Any] = {"systems": systems(args)}
    if not args.no_nas:
        report["nas201"] = nas(args)
    report["seconds"] = time.perf_counter() - t
    report["settings"] = {
        k: getattr(args, k)
        for k in (
            "sizes",
            "nas_sizes",
            "repeats",
            "pretrain_rows",
            "pretrain_budget",
            "budget",
            "max_test",
        )
    } | {"threads": torch.get_num_threads(), "machine": platform.machine(), "quick": quick}
    stem = "transfer_quick" if quick else "transfer"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
