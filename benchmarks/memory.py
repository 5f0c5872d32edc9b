"""Peak memory of training and prediction (issue 15), each in a fresh process.

The workload of the issue: ``rlm train`` with the ``small`` preset on 1,300 configuration rows
(x264: 19 fields, 300 more for validation), for a fixed number of epochs, then ``rlm predict``
on 2,000 rows with 64 samples each (it streams 1,024 rows at a time, so more rows take longer,
not more memory). Each command runs in its own child process, and its peak
resident set size is that child's ``ru_maxrss`` (read by a one-command wrapper, so no other
child is mixed in). Variants:

* ``auto`` / ``fields``: the defaults (``model="auto"``: the compact preset for field inputs);
* ``small`` / ``fields``: the issue's preset, fields read one position each;
* the same with ``RLM_KEEP_MALLOC=1`` (glibc's default allocator settings instead of
  ``rlm.nn.runtime``'s, which keep freed blocks for speed);
* ``small`` / ``text``: the config serialised to text (``--inputs text``, up to 256 BPE/digit
  tokens), the reading the issue measured at 2.4 GB.

Run:  .venv/bin/python benchmarks/memory.py [--epochs 3]
Writes benchmarks/results/memory.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "systems" / "x264.jsonl.gz"
OUT = Path(__file__).resolve().parent / "results" / "memory.json"
TARGET = "psnr_db"
PREDICT_ROWS = 2_000  # two chunks of `rlm predict` (it streams 1,024 rows at a time)
# (preset, inputs, RLM_KEEP_MALLOC): the default, the workload, its allocator, as text
VARIANTS = (
    ("auto", "fields", False),
    ("small", "fields", False),
    ("small", "fields", True),
    ("small", "text", False),
)
WRAPPER = (
    "import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)"
)


def peak_rss_mb(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(peak RSS MiB, seconds, exit code) of one command in a fresh process."""
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True, env=env
    )
    kib, rc = out.stdout.split()[-2:]
    if int(rc) != 0:
        raise RuntimeError(f"{cmd[:4]} failed ({rc}): {out.stderr[-2000:]}")
    return int(kib) / 1024, time.perf_counter() - t, int(rc)


def write_rows(tmp: Path) -> tuple[Path, Path]:
    """1,300 train + 300 valid rows, and the prediction inputs, from the shared x264 file."""
    from rlm.io import read_jsonl

    rows = read_jsonl(DATA, targets=[TARGET])
    train = [e for e in rows if e.split == "train"][:1300]
    valid = [e for e in rows if e.split == "valid"][:300]
    data = tmp / "rows.jsonl"
    lines = [{"x": e.x, "y": e.y, "split": s} for s, part in (("train", train), ("valid", valid))
             for e in part]  # fmt: skip
    data.write_text("\n".join(json.dumps(r) for r in lines))
    inputs = tmp / "inputs.jsonl"
    test = [e for e in rows if e.split == "test"]
    lines = (json.dumps({"x": test[i % len(test)].x}) for i in range(PREDICT_ROWS))
    inputs.write_text("\n".join(lines))
    return data, inputs


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    rlm = [sys.executable, "-m", "rlm.cli"]
    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        data, inputs = write_rows(tmp)
        for preset, inputs_kind, keep in VARIANTS:
            env = {**os.environ, **({"RLM_KEEP_MALLOC": "1"} if keep else {})}
            run = tmp / f"{preset}-{inputs_kind}-{keep}"
            train = [*rlm, "train", str(data), "--target", TARGET, "--out", str(run)]
            train += ["--preset", preset, "--epochs", str(args.epochs), "--no-progress"]
            train += ["--inputs", inputs_kind, "--valid-split", "valid"]
            train_mb, train_s, _ = peak_rss_mb(train, env)
            predict = [
                *rlm,
                "predict",
                str(run),
                "--file",
                str(inputs),
                "-o",
                str(tmp / "p.csv"),
            ]
            predict_mb, predict_s, _ = peak_rss_mb(predict, env)
            row = {
                "preset": preset,
                "inputs": inputs_kind,
                "allocator": "glibc default" if keep else "rlm (keeps freed blocks)",
                "train_peak_rss_mb": round(train_mb),
                "train_s": round(train_s, 1),
                "predict_peak_rss_mb": round(predict_mb),
                "predict_s": round(predict_s, 1),
            }
            print(json.dumps(row), flush=True)
            results.append(row)
    report = {
        "benchmark": "memory",
        "date": time.strftime("%Y-%m-%d"),
        "workload": {
            "data": "systems/x264: 1,300 train + 300 valid rows, 19 fields",
            "train": f"rlm train --preset small --epochs {args.epochs}",
            "predict": f"rlm predict on {PREDICT_ROWS:,} rows, 64 samples each (the default)",
        },
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
