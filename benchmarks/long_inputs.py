"""Long inputs (issue 18): programs read at 256, 512 and 1,024 tokens, each length in its own process.

PIE ``memory_kb`` at 1,000 training programs, trained as ``accuracy.py`` trains it (its rows,
seed, selection and per-fit budget; ``model="auto"``: the ``small`` preset, its position table
raised to the length). Per length: the share of test programs longer than it (kept as head and
tail), epochs and training examples/s within the budget, the process's peak RSS (and its RSS
before fitting: the harness reads every PIE row first), and the test Spearman of the median of
16 samples. Training memory is bounded by
``TrainConfig.max_positions`` (micro-batches), so a longer input costs time, not memory.

Run:  .venv/bin/python benchmarks/long_inputs.py [--budget 120] [--lengths 256 512 1024]
Writes benchmarks/results/long_inputs.json and prints one line per length.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
TASK = "pie/memory_kb"
SAMPLES = 16


def child(length: int, budget: float) -> dict[str, Any]:
    """Fit and score one length in this process."""
    import accuracy as acc
    from edge import peak_rss_mb
    from scipy.stats import spearmanr

    from rlm import RegressionLM
    from rlm.inputs.vocab import VocabConfig

    task = next(t for t in acc.all_tasks(acc.DATA) if t.name == TASK)
    s = acc.settings_for(acc.parse_args(["--budget", str(budget)]))
    split = acc.load_split(acc.read_task(task), 1000, s)
    model = RegressionLM(
        model="auto",
        targets=[task.target],
        vocab=VocabConfig(max_length=length),
        train=acc.rlm_train_config(s, budget, task.kind),
    )
    rss_data = peak_rss_mb()  # the harness has read every PIE row by now
    t = time.perf_counter()
    model.fit(split.train, valid=split.valid)
    train_s = time.perf_counter() - t
    assert model.tokenizer is not None and model.result is not None
    xs = [e.x for e in split.test]
    full = [len(p) for p in model.tokenizer.pieces_batch(model.texts(xs))]
    draws = model.sample(xs, SAMPLES, seed=0)[:, :, 0]
    truth = np.array([e.y[task.target] for e in split.test])
    history = model.result.history
    return {
        "max_length": length,
        "truncated_share": float(np.mean(np.array(full) > length)),
        "median_tokens": float(np.median(full)),
        "epochs": model.result.epochs,
        "best_epoch": model.result.best_epoch,
        "examples_per_s": float(np.mean([r["examples_per_s"] for r in history])),
        "train_s": train_s,
        "rss_before_fit_mb": rss_data,
        "peak_rss_mb": peak_rss_mb(),
        "spearman": float(spearmanr(np.median(draws, axis=1), truth).statistic),
        "test_rows": len(xs),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=120.0, help="training seconds per length")
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if args.child:
        print(json.dumps(child(args.child, args.budget)))
        return {}
    rows = []
    for length in args.lengths:
        cmd = [sys.executable, __file__, "--child", str(length), "--budget", str(args.budget)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"length {length} failed: {out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.splitlines()[-1]))
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()})
    report = {
        "benchmark": "long_inputs",
        "task": TASK,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, 2 cores",
        "budget_s": args.budget,
        "results": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "long_inputs.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
