"""Regenerate the bundled demo data in src/rlm/datasets/ from the shared benchmark files.

    python tools/make_demo_data.py [--data-dir /work/shared/data]

The choice is a seeded random sample per split (``random.Random(SEED).sample`` over the row
indices of that split, kept in file order), so the same inputs always give byte-identical outputs:
gzip is written with mtime=0 and no file name. ``meta`` is dropped (provenance only), ids and
splits are kept, and nas201 keeps only six of its 30 targets to stay small.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from pathlib import Path

SEED = 0
ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "src" / "rlm" / "datasets"

# name -> (source file under the data dir, rows per split, targets kept (None = all))
DEMOS: dict[str, tuple[str, dict[str, int], list[str] | None]] = {
    "nas201": (
        "nas201/nas201.jsonl.gz",
        {"train": 1500, "valid": 300, "test": 500},
        [
            "cifar10_test_acc",
            "cifar100_test_acc",
            "imagenet16_test_acc",
            "latency_ms_gold_6226",
            "latency_ms_pixel3",
            "latency_ms_titanxp_256",
        ],
    ),
    "x264": ("systems/x264.jsonl.gz", {"train": 1000, "valid": 200, "test": 300}, None),
}


def make(name: str, data_dir: Path) -> Path:
    source, counts, targets = DEMOS[name]
    with gzip.open(data_dir / source, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    chosen: list[int] = []
    for split, n in counts.items():
        idx = [i for i, r in enumerate(rows) if r["split"] == split]
        if n > len(idx):
            raise ValueError(f"{source}: only {len(idx)} {split} rows, {n} asked for")
        chosen += random.Random(f"{SEED}/{name}/{split}").sample(idx, n)
    out_rows = []
    for i in sorted(chosen):  # file order, splits interleaved as in the source
        r = rows[i]
        y = r["y"] if targets is None else {t: r["y"][t] for t in targets}
        out_rows.append({"id": r["id"], "x": r["x"], "y": y, "split": r["split"]})
    text = "".join(
        json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in out_rows
    )
    out = OUT_DIR / f"{name}_demo.jsonl.gz"
    with open(out, "wb") as raw, gzip.GzipFile("", "wb", 9, raw, mtime=0) as gz:
        gz.write(text.encode("utf-8"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args()
    for name in DEMOS:
        out = make(name, args.data_dir)
        print(f"{out.relative_to(ROOT)}: {out.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
