"""Build ``x264_ugc``: x264 encodings of 1,397 named YouTube-UGC videos x 201 configurations.

    python tools/build_x264_ugc.py [--repo GIT_DIR | --src CSV_DIR] [--out /tmp/x264_ugc.jsonl.gz]

Source: https://github.com/llesoil/input_sensitivity (Lesoil et al., "Input Sensitivity on the
Performance of Configurable Systems: An Empirical Study", JSS 2023), commit
``aec6b95bb0587a9fb8584fb0a290099d28c5e393``, files ``data/x264/<video>.csv`` (one CSV per input
video, ``data/x264/others/`` is not used). License: MIT (c) 2023 Luc Lesoil. Only measurements
and video names are read; no code from that repository is used.

What it does: every CSV row (one x264 configuration encoding one video) becomes one JSON line

    {"id": "x264_ugc/<video>/<configurationID>",
     "x": {"video": "<video name>", <24 x264 options as int/str, "None" -> null>},
     "y": {size_bytes, bitrate_kbps, fps, elapsed_s, user_time_s, system_time_s, cpu_percent},
     "split": "train" | "valid" | "test",
     "meta": {"configuration_id": int, "frames": int}}

The video name (e.g. ``Gaming_1080P-0ef8``: UGC category, resolution, 4-hex-digit clip id) is the
only description of the input. ``frames`` (clip length) is an input property, so it is kept in
``meta`` and left out of ``x``. ``elapsedtime`` (an ``m:ss.ss`` string) duplicates ``etime`` and is
dropped. ``qpmax`` is constant (69) and is kept as is.

Split: held-out videos. The sorted distinct video names are shuffled with
``random.Random("<seed>/x264_ugc")``; the first 70% are train, the next 10% valid and the rest
test. A test video never appears in train or valid, while all 201 configurations appear in
every split. ``--configs N`` keeps a seeded sample of N configurations (the same N for every
video) to make the file smaller. gzip is written with mtime=0, so the output is deterministic.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import random
import subprocess
from pathlib import Path

NAME = "x264_ugc"
COMMIT = "aec6b95bb0587a9fb8584fb0a290099d28c5e393"
DEFAULT_REPO = "/work/.mirror/llesoil+input_sensitivity/repo"
PREFIX = "data/x264/"
# source column -> target name (all floats)
TARGETS = {
    "size": "size_bytes",
    "kbs": "bitrate_kbps",
    "fps": "fps",
    "etime": "elapsed_s",
    "usertime": "user_time_s",
    "systemtime": "system_time_s",
    "cpu": "cpu_percent",
}
NOT_X = {"configurationID", "frames", "elapsedtime", *TARGETS}
FRACTIONS = (0.7, 0.1)  # train, valid; test gets the rest


def read_git(git_dir: str, commit: str) -> dict[str, str]:
    """video name -> CSV text, for every data/x264/*.csv directly under data/x264/ at commit."""
    ls = subprocess.run(
        ["git", "--git-dir", git_dir, "ls-tree", commit, PREFIX],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    entries = []
    for line in ls.splitlines():
        info, path = line.split("\t", 1)
        kind, sha = info.split()[1:3]
        if kind == "blob" and path.endswith(".csv"):
            entries.append((Path(path).stem, sha))
    batch = subprocess.run(
        ["git", "--git-dir", git_dir, "cat-file", "--batch"],
        input="".join(sha + "\n" for _, sha in entries).encode(),
        check=True,
        capture_output=True,
    ).stdout
    out, pos = {}, 0
    for name, _sha in entries:
        header_end = batch.index(b"\n", pos)
        size = int(batch[pos:header_end].split()[2])
        out[name] = batch[header_end + 1 : header_end + 1 + size].decode("utf-8")
        pos = header_end + 1 + size + 1
    return out


def read_dir(src: str) -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(Path(src).glob("*.csv"))}


def value(s: str):
    s = s.strip()
    if s in ("", "None"):
        return None
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    return s


def assign_splits(names: list[str], seed: int) -> dict[str, str]:
    order = sorted(names)
    random.Random(f"{seed}/{NAME}").shuffle(order)
    n_train = round(FRACTIONS[0] * len(order))
    n_valid = round(FRACTIONS[1] * len(order))
    return {
        v: "train" if i < n_train else "valid" if i < n_train + n_valid else "test"
        for i, v in enumerate(order)
    }


def build(files: dict[str, str], seed: int, n_configs: int | None) -> list[dict]:
    splits = assign_splits(list(files), seed)
    keep = None
    rows = []
    for video in sorted(files):
        table = list(csv.DictReader(io.StringIO(files[video])))
        if keep is None and n_configs is not None:
            ids = sorted({int(r["configurationID"]) for r in table})
            keep = set(random.Random(f"{seed}/{NAME}/configs").sample(ids, n_configs))
        for r in table:
            cid = int(r["configurationID"])
            if keep is not None and cid not in keep:
                continue
            x = {"video": video}
            x.update({k: value(v) for k, v in r.items() if k not in NOT_X})
            y = {}
            for col, name in TARGETS.items():
                v = value(r[col])
                if isinstance(v, (int, float)) and v == v:
                    y[name] = float(v)
            if not y:
                continue
            rows.append(
                {
                    "id": f"{NAME}/{video}/{cid}",
                    "x": x,
                    "y": y,
                    "split": splits[video],
                    "meta": {"configuration_id": cid, "frames": value(r["frames"])},
                }
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=DEFAULT_REPO, help="git dir of the fetched snapshot")
    ap.add_argument("--commit", default=COMMIT)
    ap.add_argument("--src", help="directory of data/x264/*.csv files (instead of --repo)")
    ap.add_argument("--out", default=f"/tmp/{NAME}.jsonl.gz")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--configs", type=int, help="keep a seeded sample of N configurations")
    args = ap.parse_args()

    files = read_dir(args.src) if args.src else read_git(args.repo, args.commit)
    rows = build(files, args.seed, args.configs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        for r in rows:
            gz.write((json.dumps(r, separators=(",", ":")) + "\n").encode("utf-8"))

    counts = {s: sum(r["split"] == s for r in rows) for s in ("train", "valid", "test")}
    videos = {s: len({r["x"]["video"] for r in rows if r["split"] == s}) for s in counts}
    print(f"{out}: {len(rows)} rows {counts}, videos {videos}, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
