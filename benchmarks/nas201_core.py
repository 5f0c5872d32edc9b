"""NAS-Bench-201 core benchmark: CIFAR-10 accuracy from the cell string, 1,000 training rows.

The protocol from the RLM-core issue: train on 1,000 rows of the train split, evaluate on 1,000
rows of the test split (both seeded subsets), target ``cifar10_test_acc``. Only those 1,000
labelled rows are used: no validation rows, so the RLM trains on a fixed schedule. Every method
below is measured in the same run, on the same rows:

* mean predictor; TF-IDF (character n-grams) + Ridge; gradient-boosted trees on a one-hot of
  the six edge operations (scikit-learn HistGradientBoosting);
* the RLM (``small`` preset, structure-aware input: one token per edge), single seed and an
  ensemble of seeds (samples pooled, median), with auxiliary objectives (the other two
  accuracies) decoded *after* the target so they shape the encoder without changing the target's
  decoding. Training time is wall-clock on this machine, summed over the ensemble.

Run:  .venv/bin/python benchmarks/nas201_core.py [--seeds 3] [--epochs 40]
Writes benchmarks/results/nas201_core.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from rlm import RegressionLM
from rlm.inputs.vocab import VocabConfig
from rlm.io import read_jsonl, subset
from rlm.nn.config import TrainConfig, preset
from rlm.predict.metrics import regression_metrics

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nas201" / "nas201.jsonl.gz"
OUT = Path(__file__).resolve().parent / "results" / "nas201_core.json"
TARGET = "cifar10_test_acc"
AUX = ["cifar100_test_acc", "imagenet16_test_acc"]
EDGE_PATTERN = r"[a-z_0-9]+~\d|\+"  # one token per edge ("nor_conv_3x3~0") and stage separator


def baselines(train_x, train_y, test_x) -> dict[str, tuple[np.ndarray, float, int]]:
    """(predictions, fit seconds, parameter count) per baseline."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import OneHotEncoder

    out = {}
    t = time.perf_counter()
    out["mean predictor"] = (np.full(len(test_x), np.mean(train_y)), time.perf_counter() - t, 1)

    t = time.perf_counter()
    tfidf = TfidfVectorizer(analyzer="char", ngram_range=(2, 5))
    ridge = Ridge(alpha=1.0).fit(tfidf.fit_transform(train_x), train_y)
    pred = ridge.predict(tfidf.transform(test_x))
    out["TF-IDF + Ridge"] = (pred, time.perf_counter() - t, int(ridge.coef_.size + 1))

    def edges(s: str) -> list[str]:
        return [e.split("~")[0] for e in s.strip("|").replace("|+|", "|").split("|")]

    t = time.perf_counter()
    enc = OneHotEncoder(handle_unknown="ignore")
    xtr = enc.fit_transform([edges(s) for s in train_x]).toarray()
    gbt = HistGradientBoostingRegressor(random_state=0).fit(xtr, train_y)
    pred = gbt.predict(enc.transform([edges(s) for s in test_x]).toarray())
    out["GBT on one-hot edges"] = (pred, time.perf_counter() - t, -1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--seeds", type=int, default=3, help="ensemble members (each a full training run)"
    )
    ap.add_argument("--epochs", type=int, default=40, help="fixed training epochs per member")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--samples", type=int, default=64, help="samples per test input")
    ap.add_argument("--no-aux", action="store_true", help="train on the target alone")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    targets = [TARGET] if args.no_aux else [TARGET, *AUX]
    train = subset(read_jsonl(DATA, split="train", targets=targets), 1000, seed=0)
    test = subset(read_jsonl(DATA, split="test", targets=[TARGET]), 1000, seed=0)
    y_test = np.array([e.y[TARGET] for e in test])
    train_x, test_x = [e.x for e in train], [e.x for e in test]

    rows: dict[str, dict] = {}
    for name, (pred, secs, params) in baselines(
        train_x, [e.y[TARGET] for e in train], test_x
    ).items():
        rows[name] = {**regression_metrics(y_test, pred), "train_s": secs, "params": params}

    draws, greedy, train_s, sample_s = [], [], 0.0, 0.0
    for seed in range(args.seeds):
        model = RegressionLM(
            model=preset(args.preset),
            targets=targets,
            vocab=VocabConfig(pattern=EDGE_PATTERN),
            train=TrainConfig(
                max_epochs=args.epochs, lr=args.lr, batch_size=32, seed=seed, progress=False
            ),
        )
        t = time.perf_counter()
        model.fit(train)
        train_s += time.perf_counter() - t
        t = time.perf_counter()
        d = model.sample(test, args.samples, seed=seed, objectives=1)[:, :, 0]  # (1000, S)
        sample_s = time.perf_counter() - t  # one member's sampling time
        draws.append(d)
        greedy.append(model.sample(test, 1, greedy=True, objectives=1)[:, 0, 0])
        pooled = np.concatenate(draws, axis=1)
        lo, hi = np.quantile(pooled, 0.1, axis=1), np.quantile(pooled, 0.9, axis=1)
        label = "RLM (1 seed)" if seed == 0 else f"RLM ensemble ({seed + 1} seeds)"
        rows[label] = {
            **regression_metrics(y_test, np.median(pooled, axis=1), lower=lo, upper=hi),
            "train_s": train_s,
            "params": model.net.num_params() * (seed + 1),
        }
        if seed == 0:
            rows["RLM (1 seed, greedy)"] = {
                **regression_metrics(y_test, greedy[0]),
                "train_s": train_s,
                "params": model.net.num_params(),
            }
        print(f"seed {seed}: {rows[label]['kendall']:.4f} kendall, {train_s:.0f}s training so far")

    table = Table(title=f"NAS-Bench-201 {TARGET}: 1,000 train rows, 1,000 test rows")
    for col in ("method", "kendall", "spearman", "mae", "r2", "cov80", "train s", "params"):
        table.add_column(col, justify="right" if col != "method" else "left")

    def cell(r: dict, key: str, digits: int) -> str:
        # metrics are omitted when undefined (a constant prediction has no rank correlation)
        return f"{r[key]:.{digits}f}" if key in r else "—"

    for name, r in rows.items():
        table.add_row(
            name,
            cell(r, "kendall", 4),
            cell(r, "spearman", 4),
            cell(r, "mae", 3),
            cell(r, "r2", 3),
            cell(r, "coverage", 3),
            f"{r['train_s']:.1f}",
            f"{r['params']:,}" if r["params"] > 0 else "",
        )
    Console().print(table)
    best = rows[f"RLM ensemble ({args.seeds} seeds)" if args.seeds > 1 else "RLM (1 seed)"]
    result = {
        "task": f"nas201/{TARGET}",
        "protocol": "1000 seeded train-split rows (no validation rows), 1000 seeded test-split rows",
        "kendall": best["kendall"],
        "spearman": best["spearman"],
        "rlm_train_seconds_total": train_s,
        "sampling_seconds_1000_inputs_x_samples": sample_s,
        "samples": args.samples,
        "config": {
            "preset": args.preset,
            "seeds": args.seeds,
            "epochs": args.epochs,
            "lr": args.lr,
            "targets": targets,
            "vocab_pattern": EDGE_PATTERN,
        },
        "methods": rows,
        "machine": {
            "cpus": torch.get_num_threads(),
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(
        f"kendall {result['kendall']:.4f} | training {train_s:.0f}s | sampling {sample_s:.1f}s -> {args.out}"
    )


if __name__ == "__main__":
    main()
