"""Training and sampling throughput, measured against this CPU's own matmul peak.

For the ``small`` and ``base`` presets at input lengths 128 and 512 tokens, in one run:

* peak: the best of several large fp32 matmuls (the machine's dense limit, measured here);
* training: examples/s, tokens/s and model FLOPs utilisation (MFU) = achieved FLOP/s / peak,
  where the FLOPs are counted analytically (``step_flops``: every matmul of the forward pass,
  attention included, times 3 for forward + backward);
* sampling: predictions/s with 1 (greedy) and 64 samples per input at batch 1, 16 and 256,
  achieved FLOP/s (encoder once per input + every decoded token of every sample), and the
  batch-1 latency p50/p95;
* the sample curve: cost per input for 1, 8, 64, 256 samples (encoder shared);
* peak RSS.

Inputs are random token ids of exactly the stated length, targets one ``ieee`` number (7 tokens).

On a GPU (``--device cuda``, or ``auto`` where one is present) the same rows are measured there
in bf16 autocast (``rlm.nn.device``), against the device's measured bf16 matmul peak, with the
device synchronised around every timing.

Run:  .venv/bin/python benchmarks/speed.py [--quick] [--device auto|cpu|cuda]
Writes benchmarks/results/speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from rlm.nn.config import ModelConfig, preset
from rlm.nn.decoding import DecodeConfig, GrammarTable, decode
from rlm.nn.device import CPU, Placement
from rlm.nn.loss import Batch, grammar_loss
from rlm.nn.model import RegressionTransformer
from rlm.nn.source import Source
from rlm.numbers import NumberConfig
from rlm.numbers.decoding import uniforms
from rlm.numbers.targets import TargetCodec

OUT = Path(__file__).resolve().parent / "results" / "speed.json"
IN_VOCAB = 512


def sync(where: Placement) -> None:
    """Wait for the device's queued work (a GPU runs asynchronously); a no-op on the CPU."""
    if where.device.type == "cuda":
        torch.cuda.synchronize(where.device)


def matmul_peak(
    sizes: tuple[int, ...] = (2048, 3072, 4096), repeats: int = 4, where: Placement = CPU
) -> float:
    """Best observed FLOP/s over large square matmuls (fp32; bf16 where the placement runs
    bf16): the denominator of every MFU.

    Taking the best size and the best repeat makes the peak as high as this device shows, so
    the utilisation figures are conservative.
    """
    if where.device.type == "cuda":
        sizes = (4096, 8192, 16384)
    dtype = torch.bfloat16 if where.bf16 else torch.float32
    best_rate = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=where.device, dtype=dtype)
        b = torch.randn(n, n, device=where.device, dtype=dtype)
        for _ in range(repeats):
            sync(where)
            t = time.perf_counter()
            a @ b
            sync(where)
            best_rate = max(best_rate, 2 * n**3 / (time.perf_counter() - t))
    return best_rate


def forward_macs(cfg: ModelConfig, t: int, l_out: int, vocab: int) -> tuple[float, float, float]:
    """Multiply-accumulates of one forward pass, split as (encoder per input, memory K/V
    projections per input, decoder per output token at full length)."""
    d, e, r = cfg.d_model, cfg.dec_d_model, cfg.mlp_ratio
    enc = cfg.enc_layers * t * ((4 + 2 * r) * d * d + 2 * t * d)
    mem_kv = cfg.dec_layers * t * d * 2 * e
    # per decoded token: self-attn (4E^2 + 2*L*E, L = average prefix ~ l_out/2, bounded by l_out),
    # cross-attn q/proj (2E^2) + scores over T (2*T*E), MLP 2rE^2; then the output head
    dec = cfg.dec_layers * ((4 + 2 + 2 * r) * e * e + 2 * l_out * e + 2 * t * e) + e * vocab
    return float(enc), float(mem_kv), float(dec)


def build(name: str, t: int, where: Placement = CPU) -> tuple[RegressionTransformer, TargetCodec]:
    cfg = preset(name)
    if t > cfg.max_input_len:
        cfg = preset(name, max_input_len=t)
    codec = TargetCodec.fit([{"y": 1.0}], ["y"], NumberConfig())
    torch.manual_seed(0)
    net = RegressionTransformer(cfg, IN_VOCAB, len(codec.tokens), codec.length)
    return net.to(where.device), codec


def random_source(b: int, t: int, where: Placement) -> Source:
    ids = torch.randint(5, IN_VOCAB, (b, t), device=where.device)
    return Source(ids, torch.zeros(b, t, dtype=torch.bool, device=where.device))


def bench_training(
    name: str, t: int, peak: float, seconds: float, where: Placement = CPU, batch: int = 0
) -> dict:
    net, codec = build(name, t, where)
    grammar = GrammarTable(codec.grammar, where.device)
    b = batch or max(4, 8192 // t)  # ~8k input tokens per step
    tg = codec.encode([{"y": 12.5}] * b)
    data = Batch(
        random_source(b, t, where),
        torch.as_tensor(tg.ids, device=where.device),
        torch.as_tensor(tg.weight, device=where.device),
        torch.as_tensor(tg.states, dtype=torch.int64, device=where.device),
    )
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    net.train()

    def step() -> None:
        with where.autocast():
            loss = grammar_loss(net, data, grammar)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):  # warm-up: allocator, thread pools, kernels
        step()
    sync(where)
    steps, start = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < seconds:
        step()
        steps += 1
        if steps % 10 == 0:
            sync(where)
    sync(where)
    dt = (time.perf_counter() - start) / steps
    enc, mem, dec = forward_macs(net.cfg, t, codec.length, len(codec.tokens))
    flops = 3 * 2 * b * (enc + mem + codec.length * dec)  # forward + backward = 3 x forward
    return {
        "device": where.describe(),
        "preset": name,
        "input_tokens": t,
        "params": net.num_params(),
        "batch": b,
        "step_s": dt,
        "examples_per_s": b / dt,
        "tokens_per_s": b * (t + codec.length) / dt,
        "gflops": flops / dt / 1e9,
        "mfu": flops / dt / peak,
    }


def bench_sampling(
    name: str, t: int, peak: float, batches: list[int], samples: list[int], where: Placement = CPU
) -> list[dict]:
    net, codec = build(name, t, where)
    net.eval()
    grammar = codec.grammar
    enc, mem, dec = forward_macs(net.cfg, t, codec.length, len(codec.tokens))
    rows = []
    for b in batches:
        src = random_source(b, t, where)
        first = Source(src.ids[:1], src.pad[:1])
        for s in samples:
            cfg = DecodeConfig(greedy=s == 1)
            u = None if cfg.greedy else uniforms(0, (b * s, codec.length))
            with where.autocast():  # warm-up
                decode(net, first, grammar, s, cfg, uniforms=None if u is None else u[:s])
            times = []
            budget = time.perf_counter()
            while len(times) < 3 or (
                b == 1 and len(times) < 20 and time.perf_counter() - budget < 5
            ):
                t0 = time.perf_counter()
                with where.autocast():
                    decode(net, src, grammar, s, cfg, uniforms=u)  # returns numpy: synchronised
                times.append(time.perf_counter() - t0)
                if b * s >= 4096:  # big configurations: one timed run is enough
                    break
            dt = statistics.median(times)
            flops = 2 * b * (enc + mem + s * codec.length * dec)
            rows.append(
                {
                    "device": where.describe(),
                    "preset": name,
                    "input_tokens": t,
                    "batch": b,
                    "samples": s,
                    "seconds": dt,
                    "predictions_per_s": b / dt,
                    "ms_per_input": 1e3 * dt / b,
                    "p50_ms": 1e3 * statistics.median(times) if b == 1 else None,
                    "p95_ms": 1e3 * sorted(times)[int(0.95 * (len(times) - 1))] if b == 1 else None,
                    "gflops": flops / dt / 1e9,
                    "flops_frac_of_peak": flops / dt / peak,
                }
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small preset, 128 tokens, short timings")
    ap.add_argument(
        "--seconds", type=float, default=8.0, help="timed training seconds per configuration"
    )
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    args = ap.parse_args()
    presets = ["small"] if args.quick else ["small", "base"]
    lengths = [128] if args.quick else [128, 512]
    seconds = 2.0 if args.quick else args.seconds
    console = Console()
    where = Placement.of(args.device)
    gpu = where.device.type == "cuda"

    peak = matmul_peak(where=where)
    console.print(
        f"matmul peak: {peak / 1e9:.1f} GFLOP/s on {where.describe()}"
        + ("" if gpu else f", {torch.get_num_threads()} threads")
    )
    train_rows = [bench_training(p, t, peak, seconds, where) for p in presets for t in lengths]
    if gpu:  # a GPU wants larger batches than the CPU's ~8k tokens per step
        train_rows += [
            bench_training(p, t, peak, seconds, where, batch=max(64, 131072 // t))
            for p in presets
            for t in lengths
        ]
    table = Table(title="training")
    for col in ("preset", "tokens", "params", "batch", "ex/s", "tok/s", "GFLOP/s", "MFU"):
        table.add_column(col, justify="right")
    for r in train_rows:
        table.add_row(
            r["preset"],
            str(r["input_tokens"]),
            f"{r['params']:,}",
            str(r["batch"]),
            f"{r['examples_per_s']:.1f}",
            f"{r['tokens_per_s']:.0f}",
            f"{r['gflops']:.1f}",
            f"{r['mfu']:.1%}",
        )
    console.print(table)

    sample_rows = []
    for p in presets:
        for t in lengths:
            big = p == "small" and t == 128  # the headline configuration gets batch 256
            batches = [1, 16, 256] if big and not args.quick else [1, 16]
            if gpu:
                batches += [1024, 10_000]  # the 10,000 inputs x 64 samples
            sample_rows += bench_sampling(p, t, peak, batches, [1, 64], where)
    curve = bench_sampling("small", 128, peak, [16], [1, 8, 64, 256], where)
    table = Table(title="sampling")
    for col in (
        "preset",
        "tokens",
        "batch",
        "samples",
        "pred/s",
        "ms/input",
        "p50 ms",
        "p95 ms",
        "GFLOP/s",
        "of peak",
    ):
        table.add_column(col, justify="right")
    for r in sample_rows:
        table.add_row(
            r["preset"],
            str(r["input_tokens"]),
            str(r["batch"]),
            str(r["samples"]),
            f"{r['predictions_per_s']:.1f}",
            f"{r['ms_per_input']:.2f}",
            f"{r['p50_ms']:.1f}" if r["p50_ms"] else "",
            f"{r['p95_ms']:.1f}" if r["p95_ms"] else "",
            f"{r['gflops']:.1f}",
            f"{r['flops_frac_of_peak']:.1%}",
        )
    console.print(table)
    table = Table(title="samples per input (small, 128 tokens, batch 16): cost per input")
    for col in ("samples", "ms/input", "ms/sample"):
        table.add_column(col, justify="right")
    for r in curve:
        table.add_row(
            str(r["samples"]), f"{r['ms_per_input']:.2f}", f"{r['ms_per_input'] / r['samples']:.3f}"
        )
    console.print(table)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"peak RSS: {rss_mb:.0f} MiB")
    result = {
        "device": where.describe(),
        "matmul_peak_gflops": peak / 1e9,
        "threads": torch.get_num_threads(),
        "training": train_rows,
        "sampling": sample_rows,
        "samples_curve": curve,
        "peak_rss_mib": rss_mb,
        "quick": args.quick,
        "machine": {"platform": platform.platform(), "torch": torch.__version__},
    }
    out = OUT.with_name("speed_gpu.json") if gpu and args.out == OUT else args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    console.print(f"-> {out}")


if __name__ == "__main__":
    main()
