"""Beyond one process (issue 14): data-parallel training on torchrun, and prediction over a
million rows with bounded memory.

**Training.** ``rlm train`` on x264 configurations (fields), the same global batch (64) and
epochs in every run, each run in its own process tree:

* one process, 1 thread; one process, 2 threads (torch's default here);
* ``torchrun --nproc-per-node 2`` (2 processes, 1 thread each: torchrun's default), the
  data-parallel path of ``rlm.nn.distributed``;
* one process, 2 threads, ``--precision bf16`` (CPU autocast; this CPU has AVX512-BF16).

Examples/s is the mean of each run's epochs after the first (``metrics.jsonl``). The
data-parallel run's final validation loss is printed beside one process's: the same global
batches, so they agree to float rounding.

**Prediction.** ``rlm predict`` over N x264-like configurations (each key's value drawn from the
values it takes in the data, so most rows are configurations nobody measured) read from a
gzipped JSONL file and written to another, with the peak resident memory of the whole process
tree (polled every 0.2 s with psutil: the parent and any workers, summed). Then ``--workers 2``
on a slice, checked byte-identical to one process's output.

Run:  .venv/bin/python benchmarks/scale.py [--rows 4000 --epochs 4 --predict-rows 1000000]
Writes benchmarks/results/scale.{json,md} and prints the tables.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "systems" / "x264.jsonl.gz"
RESULTS = Path(__file__).resolve().parent / "results"
TARGET = "psnr_db"
RLM = [sys.executable, "-m", "rlm.cli"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]
# (name, launcher prefix, extra env, extra options)
TRAIN_RUNS = (
    ("1 process, 1 thread", RLM, {"OMP_NUM_THREADS": "1"}, []),
    ("1 process, 2 threads", RLM, {"OMP_NUM_THREADS": "2"}, []),
    ("torchrun, 2 processes x 1 thread", [*TORCHRUN, "2", "-m", "rlm.cli"], {}, []),
    ("1 process, 2 threads, bf16", RLM, {"OMP_NUM_THREADS": "2"}, ["--precision", "bf16"]),
)


def run_tree(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak MiB of the process tree's summed RSS) of one command; raises on failure."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        root, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.2)
        if proc.returncode != 0:
            log.seek(0)
            raise RuntimeError(f"{cmd[:6]} failed ({proc.returncode}): {log.read()[-3000:]}")
    return time.perf_counter() - start, peak / 2**20


def read_data() -> list[dict]:
    with gzip.open(DATA, "rt") as f:
        return [json.loads(line) for line in f]


def write_training_rows(path: Path, n_train: int, n_valid: int) -> None:
    rows = read_data()
    train = [r for r in rows if r["split"] == "train"][:n_train]
    valid = [r for r in rows if r["split"] == "valid"][:n_valid]
    path.write_text("".join(json.dumps({k: r[k] for k in ("x", "y", "split")}) + "\n"
                            for r in train + valid))  # fmt: skip


def write_configs(path: Path, n: int, seed: int = 0) -> None:
    """n x264-like configurations: each key's value drawn from those it takes in the data."""
    rows = [r["x"] for r in read_data()]
    values = {k: sorted({r[k] for r in rows}) for k in rows[0]}
    rng = random.Random(seed)
    with gzip.open(path, "wt", compresslevel=1) as f:
        for i in range(n):
            f.write(json.dumps({"id": i, "x": {k: rng.choice(v) for k, v in values.items()}}))
            f.write("\n")


def train_runs(tmp: Path, data: Path, preset: str, epochs: int) -> list[dict]:
    out = []
    for name, launcher, env, extra in TRAIN_RUNS:
        run = tmp / f"{preset}-{len(out)}"
        cmd = [*launcher, "train", str(data), "--out", str(run), "--preset", preset]
        cmd += ["--epochs", str(epochs), "--no-progress", "--device", "cpu", *extra]
        seconds, peak = run_tree(cmd, {**os.environ, **env})
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        rates = [r["examples_per_s"] for r in rows[1:]] or [rows[0]["examples_per_s"]]
        row = {
            "preset": preset,
            "run": name,
            "examples_per_s": round(sum(rates) / len(rates), 1),
            "final_valid_loss": rows[-1].get("valid_loss"),
            "seconds": round(seconds, 1),
            "peak_rss_mb": round(peak),
        }
        print(json.dumps(row), flush=True)
        out.append(row)
    base = {r["run"]: r["examples_per_s"] for r in out}
    for r in out:
        r["vs_1_thread"] = round(r["examples_per_s"] / base["1 process, 1 thread"], 2)
        r["vs_2_threads"] = round(r["examples_per_s"] / base["1 process, 2 threads"], 2)
    return out


def predict_runs(tmp: Path, model: Path, n: int, samples: int, slice_rows: int) -> list[dict]:
    big = tmp / "configs.jsonl.gz"
    write_configs(big, n)
    out = []
    for workers, rows, source in ((1, n, big), (1, slice_rows, None), (2, slice_rows, None)):
        if source is None:
            source = tmp / f"slice{slice_rows}.jsonl.gz"
            if not source.exists():
                write_configs(source, slice_rows)
        dest = tmp / f"pred-{workers}-{rows}.jsonl.gz"
        cmd = [*RLM, "predict", str(model), "--file", str(source), "--output", str(dest)]
        cmd += ["--samples", str(samples), "--workers", str(workers), "--no-progress"]
        seconds, peak = run_tree(cmd, dict(os.environ))
        row = {
            "rows": rows,
            "samples": samples,
            "workers": workers,
            "seconds": round(seconds, 1),
            "rows_per_s": round(rows / seconds),
            "peak_rss_mb": round(peak),
        }
        print(json.dumps(row), flush=True)
        out.append(row)
    one, two = (tmp / f"pred-{w}-{slice_rows}.jsonl.gz" for w in (1, 2))
    with gzip.open(one) as a, gzip.open(two) as b:
        same = a.read() == b.read()
    out[-1]["identical_to_1_worker"] = same
    return out


def markdown(report: dict) -> str:
    lines = [
        "# Scale: data-parallel training and prediction over many rows",
        "",
        f"Machine: {report['machine']['cpus']} CPU cores; {report['date']}. "
        f"Command: `{report['command']}`.",
        "",
        f"Training: `rlm train` on {report['workload']['train']}.",
        "",
        "| preset | run | examples/s | vs 1 thread | vs 2 threads | final valid loss | s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["train"]:
        loss = r["final_valid_loss"]
        lines.append(
            f"| {r['preset']} | {r['run']} | {r['examples_per_s']:,.0f} | {r['vs_1_thread']} "
            f"| {r['vs_2_threads']} | {'' if loss is None else f'{loss:.5f}'} | {r['seconds']} |"
        )
    lines += [
        "",
        f"Prediction: `rlm predict` over {report['workload']['predict']}.",
        "",
        "| rows | samples | workers | s | rows/s | peak RSS MB (process tree) | same output |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["predict"]:
        same = r.get("identical_to_1_worker", "")
        lines.append(
            f"| {r['rows']:,} | {r['samples']} | {r['workers']} | {r['seconds']} | "
            f"{r['rows_per_s']:,} | {r['peak_rss_mb']:,} | {same} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=4000, help="training rows (500 validate)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--presets", nargs="+", default=["compact", "small"])
    ap.add_argument("--predict-rows", type=int, default=1_000_000)
    ap.add_argument("--slice-rows", type=int, default=20_000)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        data = tmp / "x264.jsonl"
        write_training_rows(data, args.rows, 500)
        train = [row for p in args.presets for row in train_runs(tmp, data, p, args.epochs)]
        model = tmp / f"{args.presets[0]}-1"  # one process, 2 threads
        predict = predict_runs(tmp, model, args.predict_rows, args.samples, args.slice_rows)
    report = {
        "benchmark": "scale",
        "date": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/scale.py " + " ".join(argv or sys.argv[1:]),
        "workload": {
            "train": f"systems/x264, {args.rows:,} train + 500 valid rows, global batch 64, "
            f"{args.epochs} epochs, --device cpu",
            "predict": f"{args.predict_rows:,} x264-like configurations (gzipped JSONL in and "
            f"out), the {args.presets[0]} model trained above, {args.samples} samples each",
        },
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "train": train,
        "predict": predict,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return report


if __name__ == "__main__":
    main()
