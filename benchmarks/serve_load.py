"""Serving throughput: N concurrent HTTP clients on loopback, micro-batching on vs off.

A model is served by uvicorn in a child process (``rlm.serve.create_app``), and this process
runs N asyncio clients (httpx), each sending one request at a time (one NAS-Bench-201 cell,
``--samples`` samples) until ``--requests`` requests are done or ``--seconds`` have passed,
whichever is first. Every run stops by itself; traffic goes to 127.0.0.1 only. Two server
settings are compared at each concurrency level:

* ``batched``: ``max_batch=256, batch_wait_ms=5`` (the defaults): concurrent requests share one
  decoding pass, and a batch's first request may wait up to 5 ms for company;
* ``batched-nowait``: ``max_batch=256, batch_wait_ms=0``: batches are only what queued up while
  the previous model call ran;
* ``unbatched``: ``max_batch=1, batch_wait_ms=0``: one request per model call.

Reports requests/s, p50/p99 latency as the clients see it (including HTTP), p50/p99 of the
server's handler time (queue + model, reported in each response's ``elapsed_ms``) and the mean
inputs per model call. Clients and server share the CPUs this runs on (``taskset`` pins both),
so at high concurrency the load generator's own CPU use is part of what the clients see. The model is ``--model DIR``, or a ``--preset`` model trained for a few seconds
on NAS-Bench-201 demo rows (decoding cost does not depend on how well it is trained).

Run:  taskset -c 1 .venv/bin/python benchmarks/serve_load.py [--clients 1 32] [--seconds 15]
Writes benchmarks/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "serve_load.json"
MODES = {
    "batched": {"max_batch": 256, "batch_wait_ms": 5.0},
    "batched-nowait": {"max_batch": 256, "batch_wait_ms": 0.0},
    "unbatched": {"max_batch": 1, "batch_wait_ms": 0.0},
}


def serve(model_dir: str, port: int, mode: str) -> None:
    """Child process: serve the model on 127.0.0.1:port with the mode's batching."""
    import torch
    import uvicorn

    from rlm import RegressionLM
    from rlm.serve import ServeConfig, create_app

    torch.set_num_threads(1)
    config = ServeConfig(max_queue=1024, **MODES[mode])
    app = create_app({"model": RegressionLM.load(model_dir)}, config)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def train_model(preset: str, out: Path, seconds: float) -> None:
    import torch

    from rlm import RegressionLM
    from rlm.cli.demo import DEMO_PATTERN, DEMO_TARGET
    from rlm.inputs.vocab import VocabConfig
    from rlm.io import load_demo
    from rlm.nn.config import TrainConfig

    torch.set_num_threads(1)
    model = RegressionLM(
        model=preset,
        targets=[DEMO_TARGET],
        vocab=VocabConfig(pattern=DEMO_PATTERN),
        train=TrainConfig(max_epochs=3, time_budget_s=seconds, progress=False),
    )
    model.fit(load_demo("nas201", "train")[:400])
    model.save(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_ready(url: str, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.time() + timeout
    async with httpx.AsyncClient() as c:
        while time.time() < deadline:
            try:
                if (await c.get(url + "/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"server at {url} did not start in {timeout} s")


async def load(
    url: str, clients: int, requests: int, seconds: float, samples: int, cells: list[str]
) -> dict:
    import httpx

    latencies: list[float] = []
    server_ms: list[float] = []  # handler time: queue + model + summary, without HTTP
    errors = 0
    sent = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as c:
        for cell in cells[:3]:  # warm-up
            await c.post("/predict", json={"inputs": cell, "samples": samples})
        before = (await c.get("/health")).json()["models"]["model"]
        start = time.perf_counter()
        stop_at = start + seconds

        async def client(i: int) -> None:
            nonlocal errors, sent
            while sent < requests and time.perf_counter() < stop_at:
                cell = cells[(sent * 7 + i) % len(cells)]
                sent += 1
                t = time.perf_counter()
                r = await c.post("/predict", json={"inputs": cell, "samples": samples, "seed": i})
                latencies.append(time.perf_counter() - t)
                if r.status_code != 200:
                    errors += 1
                else:
                    server_ms.append(r.json()["elapsed_ms"])

        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = time.perf_counter() - start
        after = (await c.get("/health")).json()["models"]["model"]
    ms = np.array(latencies) * 1000
    calls = after["batches"] - before["batches"]
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "mean_ms": round(float(ms.mean()), 1),
        "server_p50_ms": round(float(np.percentile(server_ms, 50)), 1),
        "server_p99_ms": round(float(np.percentile(server_ms, 99)), 1),
        "model_calls": calls,
        "mean_inputs_per_call": round((after["inputs"] - before["inputs"]) / max(calls, 1), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", help="checkpoint directory (default: train a quick one)")
    ap.add_argument("--preset", default="small", help="preset of the quick model")
    ap.add_argument("--train-seconds", type=float, default=20.0)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--requests", type=int, default=3000, help="cap per run")
    ap.add_argument("--seconds", type=float, default=12.0, help="cap per run")
    ap.add_argument("--samples", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--serve", nargs=3, metavar=("DIR", "PORT", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2])
        return

    from rich.console import Console
    from rich.table import Table

    from rlm.io import load_demo

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            model_dir = str(Path(tmp) / "model")
            print(f"training a quick {args.preset} model ({args.train_seconds:.0f} s budget) ...")
            train_model(args.preset, Path(model_dir), args.train_seconds)
        meta = json.loads((Path(model_dir) / "config.json").read_text())
        cells = [e.x for e in load_demo("nas201", "test")]
        rows = []
        runs = [(s, c, m) for s in args.samples for c in args.clients for m in args.modes]
        for samples, clients, mode in runs:
            port = free_port()
            cmd = [sys.executable, __file__, "--serve", model_dir, str(port), mode]
            proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
            try:
                url = f"http://127.0.0.1:{port}"
                asyncio.run(wait_ready(url))
                res = asyncio.run(load(url, clients, args.requests, args.seconds, samples, cells))
            finally:
                proc.terminate()
                proc.wait(30)
            rows.append(
                {"samples": samples, "clients": clients, "mode": mode, **MODES[mode], **res}
            )
            print(json.dumps(rows[-1]))

    table = Table(title="rlm serve on loopback: one input per request")
    cols = ("samples", "clients", "mode", "req/s", "p50 ms", "p99 ms", "server p99 ms")
    for col in (*cols, "inputs/call", "errors"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["samples"]),
            str(r["clients"]),
            r["mode"],
            f"{r['requests_per_s']:.1f}",
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            f"{r['server_p99_ms']:.1f}",
            f"{r['mean_inputs_per_call']:.2f}",
            str(r["errors"]),
        )
    Console(width=120).print(table)
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = None
    result = {
        "benchmark": "serve_load",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus_visible": os.cpu_count(),
            "cpu_affinity": affinity,
            "torch_threads": 1,
            "note": "server (child process) and clients share the CPUs in cpu_affinity",
        },
        "model": {
            "preset_config": meta["model"],
            "targets": meta["targets"]["names"],
            "checkpoint": args.model or f"quick {args.preset} model",
        },
        "load": {
            "samples_per_request": args.samples,
            "inputs_per_request": 1,
            "max_requests_per_run": args.requests,
            "max_seconds_per_run": args.seconds,
        },
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
