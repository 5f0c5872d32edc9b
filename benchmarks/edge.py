"""Edge deployment (issue 19): each way of running a trained model, in its own process, one table.

Two tasks, as ``accuracy.py`` trains them (its rows, seed, selection and budget): ``nas201``
CIFAR-10 accuracy from the cell string (text, ``small`` preset, 3.9M parameters, the demo's
model) and ``systems/x264`` PSNR from its configuration (fields, ``compact`` preset), both at
1,000 training rows with the digit decoder. Per task:

* ``model``: trained; run as ``eager fp32`` (``RegressionLM.load`` on PyTorch, its default
  threads), ``onnx fp32`` (``rlm export`` run by onnxruntime + numpy, no torch in the process),
  ``onnx int8`` (``rlm export --int8``), ``onnx int8 1t`` (one onnxruntime thread per graph) and
  ``onnx int4 1t`` (``rlm export --int4``: 4-bit weight blocks);
* ``pruned30`` / ``pruned50``: 30% / 50% of every block's heads and MLP neurons removed
  (``RegressionLM.prune``), then a ``--recovery`` fine-tune; run eager and as ONNX int8;
* ``shared``: the same preset with cross-layer weight sharing, trained from scratch for the
  same budget; run eager.
* ``exits``: ``model`` with an exit after every encoder layer below the last
  (``RegressionLM.add_exits``, a ``--recovery`` fine-tune on every exit's loss); run eager to the
  end, and with early exit at tolerances 1% and 5% (``rlm.nn.exits``; the mean exit layer over
  the test split is reported). Early exit needs two exits below the last layer, so a 2-layer
  encoder (x264's ``compact``) has no such rows;
* ``mse`` / ``mse-exits``: the same preset with the MSE value head (what ``auto`` picks under
  500 rows), trained for the budget, and its exits copy; run eager and as ONNX int8, the exits
  copy to the end and with early exit at 1%: where a check costs a pooled linear layer, not a
  greedy decode.
* ``default``: ``model="auto"`` as a user gets it, fitted as ``accuracy.py``'s ``rlm`` method
  fits it (the ``compact`` preset; from 500 rows it chooses between a 4-member MSE ensemble,
  read by the slot MLP for fields and through attention for text, and the digit decoder on the
  valid rows, and may blend the two, ``rlm.blend``); run eager and as ONNX int8 and int4 on one
  thread, the deployable default; where it blends two networks, also its primary alone as
  ``rlm export --primary-only`` deploys it (``default-primary``, ONNX int8 and int4, one thread).

Each runs in a fresh child process that loads the model, predicts once (its RSS then is
``rss_load_mb``), then measures batch-1 latency (p50/p95 over single inputs: greedy, and 16
samples), throughput (inputs/s, batches of 64 inputs x 16 samples), test Spearman of the median of
16 samples on the whole test split (up to 1,000 rows), the share of valid outputs (finite numbers
the grammar accepts), its peak RSS and the files' size.

Run:  .venv/bin/python benchmarks/edge.py [--budget 120] [--work DIR] [--out FILE.json]
Writes benchmarks/results/edge.json and edge.md and prints the table. ``--quick`` (the test
suite's smoke run): every model and variant on 500 training rows, 2 s budgets, 40 test rows and
5 latency inputs, into edge_quick.{json,md}; its figures mean nothing.
Profile a deployment:  .venv/bin/python benchmarks/edge.py --profile DIR --rows TEST.jsonl
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
# (variant, model, runtime, precision, onnxruntime threads); the first row is the baseline
VARIANTS = (
    ("eager fp32", "model", "torch", "fp32", None),
    ("onnx fp32", "model", "onnx", "fp32", None),
    ("onnx int8", "model", "onnx", "int8", None),
    ("onnx int8 1t", "model", "onnx", "int8", 1),
    ("onnx int4 1t", "model", "onnx", "int4", 1),
    ("onnx fp32 1t", "model", "onnx", "fp32", 1),
    ("eager pruned 30%", "pruned30", "torch", "fp32", None),
    ("eager pruned 50%", "pruned50", "torch", "fp32", None),
    ("eager shared layers", "shared", "torch", "fp32", None),
    ("onnx int8 1t pruned 30%", "pruned30", "onnx", "int8", 1),
    ("onnx int8 1t pruned 50%", "pruned50", "onnx", "int8", 1),
    ("onnx fp32 1t pruned 50%", "pruned50", "onnx", "fp32", 1),
    ("eager exits, run to the end", "exits", "torch", "fp32", None),
    ("eager early exit 1%", "exits", "torch", "fp32", None),
    ("eager early exit 5%", "exits", "torch", "fp32", None),
    ("eager mse head", "mse", "torch", "fp32", None),
    ("onnx int8 1t mse head", "mse", "onnx", "int8", 1),
    ("onnx int4 1t mse head", "mse", "onnx", "int4", 1),
    ("eager mse exits, run to the end", "mse-exits", "torch", "fp32", None),
    ("eager mse head early exit 1%", "mse-exits", "torch", "fp32", None),
    ("eager default (auto)", "default", "torch", "fp32", None),
    ("onnx int8 1t default (auto)", "default", "onnx", "int8", 1),
    ("onnx int4 1t default (auto)", "default", "onnx", "int4", 1),
    ("onnx int8 1t default, primary only", "default-primary", "onnx", "int8", 1),
    ("onnx int4 1t default, primary only", "default-primary", "onnx", "int4", 1),
)
# the early-exit tolerance of a variant (rlm.nn.exits), by its name
EARLY_EXIT = {"eager early exit 1%": 0.01, "eager early exit 5%": 0.05,
              "eager mse head early exit 1%": 0.01}  # fmt: skip
PRUNE = (0.3, 0.5)
EXPORTS = (
    ("model", "fp32"),
    ("model", "int8"),
    ("model", "int4"),
    ("pruned30", "int8"),
    ("pruned50", "int8"),
    ("pruned50", "fp32"),
    ("mse", "int8"),
    ("mse", "int4"),
    ("default", "int8"),
    ("default", "int4"),
    ("default-primary", "int8"),
    ("default-primary", "int4"),
)
TASKS = ("nas201/cifar10_test_acc", "systems/x264")
SAMPLES = 16
LATENCY_INPUTS = 100
QUICK_TEST, QUICK_LATENCY, QUICK_BUDGET = 40, 5, 2.0  # --quick: a smoke run, not a measurement
QUICK_SKIP = ("onnx int8", "onnx fp32 1t", "onnx fp32 1t pruned 50%", "eager early exit 5%")
THROUGHPUT_BATCH = 64


# ----------------------------------------------------------------------------------------------
# the child: one variant, one model, no torch unless the variant is eager


def _percentiles(times: list[float]) -> tuple[float, float]:
    ms = np.array(times) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def measure(model: Any, rows: list[Any], target: str, latency_inputs: int) -> dict[str, Any]:
    """Latency (over ``latency_inputs`` inputs), throughput, accuracy and valid outputs of one
    loaded model."""
    from scipy.stats import spearmanr

    xs = [e.x for e in rows]
    out: dict[str, Any] = {}
    for name, samples in (("greedy", 0), ("s16", SAMPLES)):
        model.predict(xs[:2], samples=samples)  # warm-up
        times = []
        for x in xs[:latency_inputs]:
            t = time.perf_counter()
            model.predict([x], samples=samples)
            times.append(time.perf_counter() - t)
        out[f"p50_{name}_ms"], out[f"p95_{name}_ms"] = _percentiles(times)
    batches = [
        xs[i : i + THROUGHPUT_BATCH] for i in range(0, 4 * THROUGHPUT_BATCH, THROUGHPUT_BATCH)
    ]
    t = time.perf_counter()
    for batch in batches:
        model.predict(batch, samples=SAMPLES)
    out["throughput_per_s"] = sum(len(b) for b in batches) / (time.perf_counter() - t)
    if getattr(model, "early_exit", None) is not None:
        model.exit_log.clear()  # the mean exit layer over the test split's draws
    draws = model.sample(xs, SAMPLES, seed=0)  # (B, S, 1)
    if getattr(model, "early_exit", None) is not None:
        out["mean_exit_layer"] = model.mean_exit_layer()
    point = np.median(draws[:, :, 0], axis=1)
    truth = np.array([e.y[target] for e in rows])
    out["spearman"] = float(spearmanr(point, truth).statistic)
    out["valid_rate"] = float(np.isfinite(draws).mean())
    out["test_rows"] = len(rows)
    return out


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not ``ru_maxrss``: Linux carries that across
    exec, so a child started by a large parent would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def child(args: argparse.Namespace) -> None:
    from rlm.io import read_jsonl

    rows = read_jsonl(Path(args.rows))
    t = time.perf_counter()
    if args.runtime == "torch":
        from rlm import RegressionLM

        model: Any = RegressionLM.load(args.model).set_early_exit(args.early_exit)
    else:
        from rlm.deploy import OnnxRegressor

        model = OnnxRegressor.load(args.model, threads=args.threads)
    model.predict([rows[0].x], samples=SAMPLES)
    load_s = time.perf_counter() - t
    rss_load = peak_rss_mb()
    measured = measure(model, rows, args.target, args.latency_inputs)
    result = {"load_s": load_s, "rss_load_mb": rss_load, **measured}
    result["rss_peak_mb"] = peak_rss_mb()
    result["torch_imported"] = any(m == "torch" or m.startswith("torch.") for m in sys.modules)
    print(json.dumps(result))


def profile(args: argparse.Namespace) -> None:
    """Where one batch-1 greedy prediction's time goes in an ONNX deployment: the encoder graph,
    the decoder step graph (per step), and the rest (Python: encoding, decoding loop, codec)."""
    from rlm.deploy import OnnxRegressor
    from rlm.io import read_jsonl

    model = OnnxRegressor.load(args.profile, threads=1)
    xs = [e.x for e in read_jsonl(Path(args.rows))][:LATENCY_INPUTS]
    net = model._runtime()  # one network, its graphs' run methods wrapped in timers
    spent: dict[str, list[float]] = {"encoder": [], "decoder": []}
    for part in spent:
        run = getattr(net, part).run

        def timed(*a: Any, _run: Any = run, _part: str = part) -> Any:
            t = time.perf_counter()
            out = _run(*a)
            spent[_part].append(time.perf_counter() - t)
            return out

        getattr(net, part).run = timed
    model._runtime = lambda: net  # type: ignore[method-assign]
    for x in xs[:10]:
        model.predict([x], samples=0)  # warm-up
    for v in spent.values():
        v.clear()
    t = time.perf_counter()
    for x in xs:
        model.predict([x], samples=0)
    total = (time.perf_counter() - t) / len(xs) * 1e3
    enc, dec = (sum(v) / len(xs) * 1e3 for v in spent.values())
    steps = len(spent["decoder"]) // len(xs)
    print(f"{args.profile}: {total:.3f} ms per input; encoder {enc:.3f} ms, {steps} decoder steps "
          f"{dec:.3f} ms ({dec / steps:.3f} each), the rest {total - enc - dec:.3f} ms")  # fmt: skip


# ----------------------------------------------------------------------------------------------
# the parent: train, export, run every variant in its own process


def model_bytes(d: Path) -> int:
    """What a deployment ships: weights or graphs, tokenizer and config (no training logs), and
    a blend's member in its subdirectory."""
    keep = {".safetensors", ".onnx", ".json"}
    skip = {"metrics.jsonl", "cli.json", "train_state.safetensors"}
    return sum(f.stat().st_size for f in d.rglob("*") if f.suffix in keep and f.name not in skip)


def prepare(
    task_name: str, budget: float, recovery: float, work: Path, quick: bool = False
) -> tuple[Path, Path, str]:
    """Every checkpoint and deployment the variants run, in ``work/<task>/`` (kept and reused):
    ``model`` (trained), ``pruned30`` / ``pruned50`` (pruned from it, then fine-tuned for
    ``recovery`` seconds), ``shared`` (trained with shared layers), and their ONNX exports.
    Returns that directory, the test rows (JSONL) and the target."""
    import accuracy as acc

    from rlm import RegressionLM
    from rlm.deploy import export_onnx
    from rlm.inputs.vocab import VocabConfig
    from rlm.io import write_jsonl
    from rlm.nn.config import TrainConfig, auto_model, preset

    task = next(t for t in acc.all_tasks(acc.DATA) if t.name == task_name)
    # quick: 500 rows, where "auto" still makes the models it makes at 1,000 (its choice)
    quick_args = ["--quick", "--max-test", str(QUICK_TEST)] if quick else []
    s = acc.settings_for(acc.parse_args(["--budget", str(budget), "--preset", "auto", *quick_args]))
    split = acc.load_split(acc.read_task(task), 500 if quick else 1000, s)
    d = work / task_name.replace("/", "_")
    vocab = VocabConfig(pattern=acc.EDGE_PATTERN) if task.kind == "nas" else VocabConfig()
    train_cfg = acc.rlm_train_config(s, budget, task.kind)

    def fitted(name: str, share: bool, head: str = "digits") -> RegressionLM:
        if not (d / name / "model.safetensors").is_file():
            # the digit decoder: for text the demo's model ("small"), for fields what "auto"
            # builds when it does not choose; shared: the same with one block per stack; mse:
            # with one MSE head (below 500 rows "auto" makes an ensemble of them)
            cfg = preset("small") if task.kind == "nas" else auto_model(len(split.train), True, 256)
            cfg = replace(cfg, share_layers=share, head=head, members=1)
            if quick:  # the same layers, narrow: a smoke run exercises paths, not the model
                cfg = replace(cfg, d_model=64, dec_d_model=64, mlp_ratio=2)
            model = RegressionLM(model=cfg, targets=[task.target], vocab=vocab, train=train_cfg)
            model.fit(split.train, valid=split.valid).save(d / name)
        return RegressionLM.load(d / name)

    base = fitted("model", share=False)
    fitted("shared", share=True)
    mse = fitted("mse", share=False, head="mse")
    if not (d / "default" / "model.safetensors").is_file():
        # as a user gets it: on these rows "auto" chooses its MSE ensemble or the digit decoder
        # on the valid rows, and may blend the two
        acc.rlm_estimator(task, split, s).fit(split.train, valid=split.valid).save(d / "default")
    if not (d / "default-primary" / "model.safetensors").is_file():
        default = RegressionLM.load(d / "default")
        if default.blend is not None:
            # what `rlm export --primary-only` deploys: the blend's primary network alone
            default.unblend().save(d / "default-primary")
    short = TrainConfig(**{**train_cfg.to_dict(), "time_budget_s": recovery})
    exits = tuple(range(1, base.model_config.enc_layers))  # every layer below the last
    for name, source in (("exits", base), ("mse-exits", mse)):
        # early exit needs two exits below the last layer: a 2-layer encoder has no variant
        if len(exits) >= 2 and not (d / name / "model.safetensors").is_file():
            source.add_exits(split.train, exits=exits, valid=split.valid, train=short).save(
                d / name
            )
    for amount in PRUNE:
        name = f"pruned{round(amount * 100)}"
        if not (d / name / "model.safetensors").is_file():
            base.prune(split.train, amount=amount, valid=split.valid, train=short).save(d / name)
    for source, precision in EXPORTS:
        out = d / f"{source}-{precision}"
        if (d / source).is_dir() and not (out / "config.json").is_file():
            export_onnx(RegressionLM.load(d / source), out, precision=precision)
    rows = d / "test.jsonl"
    write_jsonl(rows, [{"x": e.x, "y": e.y} for e in split.test])
    return d, rows, task.target


def run_variant(
    d: Path, rows: Path, target: str, variant: tuple, latency_inputs: int = LATENCY_INPUTS
) -> dict[str, Any]:
    name, source, runtime, precision, threads = variant
    model_dir = d / source if runtime == "torch" else d / f"{source}-{precision}"
    cmd = [sys.executable, __file__, "--child", "--runtime", runtime, "--model", str(model_dir)]
    cmd += ["--rows", str(rows), "--target", target, "--latency-inputs", str(latency_inputs)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    if name in EARLY_EXIT:
        cmd += ["--early-exit", str(EARLY_EXIT[name])]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed: {out.stderr[-3000:]}")
    result = json.loads(out.stdout.splitlines()[-1])
    params = json.loads((model_dir / "config.json").read_text())
    return {"variant": name, "source": source, "runtime": runtime, "precision": precision,
            "threads": threads, "file_mb": model_bytes(model_dir) / 1e6,
            "params": _params(model_dir, params), **result}  # fmt: skip


def _params(model_dir: Path, meta: dict[str, Any]) -> int:
    """The model's parameters, a blend's member's included (``file_mb`` counts its files)."""
    from rlm.checkpoint import safetensors_params

    own = (
        int(meta["runtime"]["params"])
        if "runtime" in meta
        else safetensors_params(model_dir / "model.safetensors")
    )
    blend = meta.get("blend")
    if blend:
        member = model_dir / blend["member"]
        own += _params(member, json.loads((member / "config.json").read_text()))
    return own


COLUMNS = (
    ("p50_greedy_ms", "p50 greedy ms", 2),
    ("p95_greedy_ms", "p95 greedy ms", 2),
    ("p50_s16_ms", "p50 16 samples ms", 2),
    ("p95_s16_ms", "p95 16 samples ms", 2),
    ("throughput_per_s", "inputs/s (64 x 16)", 0),
    ("rss_load_mb", "RSS loaded MB", 0),
    ("rss_peak_mb", "peak RSS MB", 0),
    ("file_mb", "file MB", 2),
    ("spearman", "test Spearman", 3),
    ("valid_rate", "valid", 3),
    ("mean_exit_layer", "mean exit layer", 2),
)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Edge deployment",
        "",
        f"One run of `benchmarks/edge.py` on {report['machine']}; each row its own process. "
        f"Batch-1 latency over {report['latency_inputs']} test inputs one at a time; Spearman of "
        f"the median of {SAMPLES} samples on the test split. Speed-ups are against `eager fp32`.",
        "",
    ]
    for task, rows in report["tasks"].items():
        base = rows[0]
        lines += [f"## {task}", ""]
        head = [
            "variant",
            "params",
            *(h for _, h, _ in COLUMNS),
            "x faster greedy",
            "x faster 16",
            "x smaller",
        ]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rows:
            cells = [r["variant"], f"{r['params']:,}"]
            cells += [f"{r[k]:.{n}f}" if k in r else "" for k, _, n in COLUMNS]
            cells += [
                f"{base['p50_greedy_ms'] / r['p50_greedy_ms']:.1f}",
                f"{base['p50_s16_ms'] / r['p50_s16_ms']:.1f}",
                f"{base['file_mb'] / r['file_mb']:.1f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, help="training seconds per model (120; quick 2)")
    ap.add_argument("--recovery", type=float, help="fine-tune seconds after pruning (30; quick 1)")
    ap.add_argument("--work", type=Path, help="keep models here (reused when present)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: tiny budgets and rows")
    ap.add_argument("--out", type=Path, help="the JSON to write (the Markdown goes beside it)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--runtime", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--rows", help=argparse.SUPPRESS)
    ap.add_argument("--target", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--early-exit", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--latency-inputs", type=int, default=LATENCY_INPUTS, help=argparse.SUPPRESS)
    ap.add_argument(
        "--profile", type=Path, help="an exported deployment: time its parts (needs --rows)"
    )
    args = ap.parse_args(argv)
    if args.profile:
        profile(args)
        return {}
    if args.child:
        child(args)
        return {}
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    work = args.work or Path(tempfile.mkdtemp(prefix="rlm-edge-"))
    budget = args.budget or (QUICK_BUDGET if args.quick else 120.0)
    recovery = args.recovery or (QUICK_BUDGET / 2 if args.quick else 30.0)
    latency = QUICK_LATENCY if args.quick else LATENCY_INPUTS
    out = args.out or RESULTS / ("edge_quick.json" if args.quick else "edge.json")
    report: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{len(__import__('os').sched_getaffinity(0))} cores",
        "quick": args.quick,
        "budget_s": budget,
        "latency_inputs": latency,
        "tasks": {},
    }
    for task in TASKS:
        d, rows, target = prepare(task, budget, recovery, work, args.quick)
        # a variant whose model was not made (early exit on a 2-layer encoder) is left out
        variants = [v for v in VARIANTS if (d / v[1]).is_dir()]
        if args.quick:  # each path once: the same graphs on other thread counts are left out
            variants = [v for v in variants if v[0] not in QUICK_SKIP]
        results = [run_variant(d, rows, target, v, latency) for v in variants]
        report["tasks"][task] = results
        for r in results:
            print(
                task, r["variant"], {k: round(r[k], 3) for k, _, _ in COLUMNS if k in r}, flush=True
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
