"""The server under load and abuse (issue 15): many clients, bad requests, slow bodies, memory.

``rlm serve``'s app runs in a child process on 127.0.0.1 (``serve_load.serve``, the default
batching), and this process drives it for ``--seconds`` with:

* ``--clients`` asyncio clients (httpx), each sending one request at a time; one request in
  ``BAD_EVERY`` is one of ``BAD`` (malformed JSON, a 2 MB body, 10^9 samples, quantiles outside
  (0, 1), a number as input, 10,000-deep nesting), the rest a NAS-Bench-201 cell with 8 samples;
* ``--slow`` clients that, during the middle third of the run, open a connection and trickle a
  valid body one byte every 50 ms (a slow-loris upload), then read their answer;
* the server's resident memory (``/proc/PID/status``), sampled every 0.5 s.

It reports every status code seen, p50/p99 latency of the good requests before/during/after
the trickle, and RSS after warm-up and at the end. Pass: no 5xx at all, every bad request a 4xx,
every good one a 200, p99 during the trickle below ``max(3 x p99 outside it, 250 ms)`` (a
server that read bodies synchronously would stall everyone for the whole trickle), and RSS at
the end within 10% of RSS after warm-up. ``tests/test_serve_stress.py`` runs a short form.

Run:  .venv/bin/python benchmarks/serve_stress.py [--clients 50] [--seconds 30] [--slow 5]
Writes benchmarks/results/serve_stress.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling module, run as a script
from serve_load import free_port, train_model, wait_ready

OUT = Path(__file__).resolve().parent / "results" / "serve_stress.json"
BAD_EVERY = 4
DEEP = 10_000
OVERSIZE = "2 MB body"
BAD: list[tuple[str, bytes]] = [
    ("malformed JSON", b'{"inputs": "|nor_conv_3x3~0|+'),
    (OVERSIZE, json.dumps({"inputs": "x" * 2_000_000}).encode()),
    ("10^9 samples", json.dumps({"inputs": "a", "samples": 10**9}).encode()),
    ("quantile 1.5", json.dumps({"inputs": "a", "quantiles": [1.5]}).encode()),
    ("number as input", json.dumps({"inputs": 5}).encode()),
    ("deep nesting", ("[" * DEEP + "]" * DEEP).encode()),
]
TRICKLE_BYTE_S = 0.05


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def trickle(port: int, body: bytes, seconds: float) -> tuple[int, float]:
    """One slow upload: headers at once, then the body a byte at a time over ``seconds``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode())
    start = time.perf_counter()
    n = max(1, int(seconds / TRICKLE_BYTE_S))
    for b in body[: n - 1]:
        writer.write(bytes([b]))
        await writer.drain()
        await asyncio.sleep(TRICKLE_BYTE_S)
    writer.write(body[n - 1 :])
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    await reader.read()
    writer.close()
    return status, time.perf_counter() - start


async def drive(
    port: int, pid: int, clients: int, seconds: float, slow: int, cells: list[str]
) -> dict[str, Any]:
    import httpx

    url = f"http://127.0.0.1:{port}"
    good: list[tuple[float, float]] = []  # (start time, latency)
    codes: Counter[str] = Counter()
    wrong: list[str] = []
    rss: list[tuple[float, float]] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120.0) as c:
        t0 = time.perf_counter()
        stop_at = t0 + seconds
        window = (t0 + seconds / 3, t0 + 2 * seconds / 3)

        async def client(i: int) -> None:
            k = 0
            while time.perf_counter() < stop_at:
                k += 1
                t = time.perf_counter()
                if k % BAD_EVERY == 0:
                    name, body = BAD[(i + k) % len(BAD)]
                    try:
                        r = await c.post("/predict", content=body, headers=headers)
                    except httpx.TransportError:
                        # the server may answer 413 and close before an oversize body is sent
                        codes[f"{name}: closed"] += 1
                        if name != OVERSIZE:
                            wrong.append(f"{name} -> connection closed")
                        continue
                    codes[f"{name}: {r.status_code}"] += 1
                    if not 400 <= r.status_code < 500:
                        wrong.append(f"{name} -> {r.status_code}")
                    continue
                cell = cells[(i * 31 + k) % len(cells)]
                r = await c.post("/predict", json={"inputs": cell, "samples": 8, "seed": i})
                codes[f"good: {r.status_code}"] += 1
                if r.status_code != 200:
                    wrong.append(f"good -> {r.status_code}")
                good.append((t, time.perf_counter() - t))

        async def slow_client(i: int) -> tuple[int, float]:
            await asyncio.sleep(window[0] - time.perf_counter())
            body = json.dumps({"inputs": cells[i % len(cells)], "samples": 8}).encode()
            return await trickle(port, body, window[1] - window[0])

        async def memory() -> None:
            while time.perf_counter() < stop_at:
                rss.append((time.perf_counter() - t0, rss_mb(pid)))
                await asyncio.sleep(0.5)

        tasks = [client(i) for i in range(clients)]
        slow_out, *_ = await asyncio.gather(
            asyncio.gather(*(slow_client(i) for i in range(slow))), memory(), *tasks
        )
    return summarise(good, codes, wrong, rss, slow_out, window, t0, seconds)


def summarise(good, codes, wrong, rss, slow_out, window, t0, seconds) -> dict[str, Any]:
    def pct(lat: list[float], q: float) -> float | None:
        return round(float(np.percentile(np.array(lat) * 1000, q)), 1) if lat else None

    during = [lat for t, lat in good if window[0] <= t <= window[1]]
    outside = [lat for t, lat in good if not window[0] <= t <= window[1]]
    warm = [m for t, m in rss if t >= min(3.0, seconds / 3)] or [m for _, m in rss]
    p99_out, p99_during = pct(outside, 99), pct(during, 99)
    bound = max(3 * (p99_out or 0), 250.0)
    return {
        "requests": sum(codes.values()),
        "requests_per_s": round(sum(codes.values()) / seconds, 1),
        "status": dict(sorted(codes.items())),
        "server_errors": sum(n for k, n in codes.items() if _is_5xx(k)),
        "wrong": wrong[:10],
        "p50_ms": pct([lat for _, lat in good], 50),
        "p99_ms": pct([lat for _, lat in good], 99),
        "p99_outside_trickle_ms": p99_out,
        "p99_during_trickle_ms": p99_during,
        "trickle_bound_ms": bound,
        "slow_clients": [{"status": s, "seconds": round(d, 2)} for s, d in slow_out],
        "rss_mb_after_warmup": round(warm[0], 1),
        "rss_mb_end": round(rss[-1][1], 1),
        "rss_mb_max": round(max(m for _, m in rss), 1),
        "ok": {
            "no_5xx": not any(_is_5xx(k) for k in codes),
            "every_answer_as_expected": not wrong,
            "slow_clients_do_not_delay_others": p99_during is not None and p99_during <= bound,
            "slow_clients_answered": all(s == 200 for s, _ in slow_out),
            "rss_stable_within_10pct": rss[-1][1] <= 1.10 * warm[0],
        },
    }


def _is_5xx(key: str) -> bool:
    return key.rsplit(": ", 1)[1].startswith("5")


def run(model_dir: str, clients: int, seconds: float, slow: int, cells: list[str]) -> dict:
    """Serve ``model_dir`` in a child process and drive it; the child is always stopped."""
    port = free_port()
    here = str(Path(__file__).resolve().parent / "serve_load.py")
    cmd = [sys.executable, here, "--serve", model_dir, str(port), "batched"]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        asyncio.run(wait_ready(f"http://127.0.0.1:{port}"))
        return asyncio.run(drive(port, proc.pid, clients, seconds, slow, cells))
    finally:
        proc.terminate()
        proc.wait(30)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", help="checkpoint directory (default: train a quick one)")
    ap.add_argument("--preset", default="small", help="preset of the quick model")
    ap.add_argument("--train-seconds", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--slow", type=int, default=5, help="clients trickling their body")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    from rlm.io import load_demo

    cells = [e.x for e in load_demo("nas201", "test")]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            model_dir = str(Path(tmp) / "model")
            train_model(args.preset, Path(model_dir), args.train_seconds)
        result = run(model_dir, args.clients, args.seconds, args.slow, cells)
    report = {
        "benchmark": "serve_stress",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "load": {
            "clients": args.clients,
            "seconds": args.seconds,
            "slow_clients": args.slow,
            "bad_every": BAD_EVERY,
            "bad_requests": [name for name, _ in BAD],
            "model": args.model or f"quick {args.preset} model",
        },
        "result": result,
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
