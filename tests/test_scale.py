"""Beyond one CPU process: devices and precision, data-parallel training on torchrun (2 CPU
ranks, gloo), training streamed from files larger than memory, and prediction in worker
processes. GPU tests skip cleanly without CUDA."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rlm import RegressionLM, TrainConfig
from rlm.cli import app
from rlm.io import Layout, write_jsonl
from rlm.io.rows import Shard
from rlm.io.stream import ExampleStream, StreamConfig
from rlm.nn.device import Placement, resolve_device

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
ROWS = [{"size": s, "mode": ["a", "b", "c"][s % 3]} for s in range(1, 99)]
Y = [float(x["size"] * (2 if x["mode"] == "a" else 1)) for x in ROWS]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"max_epochs": 3, "batch_size": 16, "progress": False, **kw})


def _rows_file(path: Path, n: int = 96, split: bool = True) -> Path:
    """n rows (every 6th a validation row when ``split``): 96 give 80 training rows."""
    rows = [
        {
            "id": i,
            "x": x,
            "y": {"t": y},
            **({"split": "valid" if i % 6 == 0 else "train"} if split else {}),
        }
        for i, (x, y) in enumerate(zip(ROWS[:n], Y[:n], strict=True))
    ]
    write_jsonl(path, rows)
    return path


# -- devices ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("device", "precision", "error"),
    [
        ("cpu", "fp32", None),
        ("cpu", "bf16", None),
        ("auto", "auto", None),
        ("gpu", "auto", "choose 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"),
        ("cuda:x", "auto", "choose"),
        ("cpu", "fp16", "precision='fp16': choose 'auto', 'fp32' or 'bf16'"),
    ],
)
def test_placement_table(device: str, precision: str, error: str | None) -> None:
    if error is None:
        p = Placement.of(device, precision)  # type: ignore[arg-type]
        assert p.bf16 == (precision == "bf16" or (p.device.type == "cuda" and precision == "auto"))
        return
    with pytest.raises(ValueError, match=error.replace("(", r"\(").replace(")", r"\)")):
        Placement.of(device, precision)  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_an_absent_cuda_device_is_refused_at_construction(device: str) -> None:
    with pytest.raises(ValueError, match="no CUDA device is usable here"):
        RegressionLM(device=device)
    assert resolve_device("auto").type in ("cpu", "mps")


def test_bf16_autocast_on_cpu_trains_and_predicts() -> None:
    m = RegressionLM(model="tiny", train=_cfg(), device="cpu", precision="bf16")
    m.fit(ROWS[:64], Y[:64])
    pred = m.predict(ROWS[64:70], samples=8)
    assert pred.shape == (6, 1) and np.isfinite(pred).all()


@CUDA
def test_cuda_training_sampling_and_loading_anywhere(tmp_path: Path) -> None:
    m = RegressionLM(model="tiny", train=_cfg(), device="cuda", precision="fp32")
    m.fit(ROWS[:64], Y[:64], valid=(ROWS[64:], Y[64:]))
    assert next(m.net.parameters()).is_cuda  # type: ignore[union-attr]
    a = m.sample(ROWS[:8], 16, seed=3)
    assert np.array_equal(a, m.sample(ROWS[:8], 16, seed=3))  # a seed, the same draws there
    m.save(tmp_path / "m")
    cpu = RegressionLM.load(tmp_path / "m", device="cpu")
    greedy = cpu.predict(ROWS[:8], samples=0)
    np.testing.assert_allclose(greedy, m.predict(ROWS[:8], samples=0), rtol=1e-3)
    bf16 = RegressionLM(model="tiny", train=_cfg(), device="cuda").fit(ROWS[:64], Y[:64])
    assert bf16.placement.bf16 == torch.cuda.is_bf16_supported()
    assert np.isfinite(bf16.predict(ROWS[:8], samples=4)).all()


# -- data-parallel training on torchrun --------------------------------------------------------
def _train_cmd(data: Path, out: Path) -> list[str]:
    return ["train", str(data), "--out", str(out), "--preset", "tiny", "--epochs", "3",
            "--batch-size", "16", "--no-progress", "--device", "cpu"]  # fmt: skip


def test_two_cpu_ranks_match_one_process(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    # 98 rows: 81 train, so each epoch's last global batch of 1 row leaves rank 1 nothing
    data = _rows_file(tmp_path / "rows.jsonl", 98)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, "-m", "rlm.cli", *_train_cmd(data, tmp_path / "one")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [*TORCHRUN, "2", "-m", "rlm.cli", *_train_cmd(data, tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr + two.stdout
    a, b = (
        load_file(str(tmp_path / "one/model.safetensors")),
        load_file(str(tmp_path / "two/model.safetensors")),
    )
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-4  # float rounding only
    rows = [json.loads(r) for r in (tmp_path / "two/metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # rank 0 alone wrote, once per epoch
    assert two.stdout.count("training run") == 1  # and alone printed


def test_two_ranks_stream_shards_of_different_lengths(tmp_path: Path) -> None:
    # 13 rows, global batch 4: rank 0 reads 7 rows (4 batches of 2), rank 1 reads 6 (3), so
    # rank 1 steps on with nothing in each epoch's last step
    data = _rows_file(tmp_path / "rows.jsonl.gz", 13, split=False)
    cmd = [*_train_cmd(data, tmp_path / "s"), "--stream", "--shuffle-buffer", "4"]
    cmd[cmd.index("--batch-size") + 1] = "4"
    out = subprocess.run(
        [*TORCHRUN, "2", "-m", "rlm.cli", *cmd], capture_output=True, text=True,
        timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr + out.stdout
    rows = [json.loads(r) for r in (tmp_path / "s/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 8, 12]


def _torchrun(tmp_path: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    """A Python script (its lines after the rlm import) run on 2 CPU ranks."""
    path = tmp_path / "fit.py"
    path.write_text("import hashlib, os\nfrom rlm import RegressionLM, TrainConfig\n" + script)
    return subprocess.run(
        [*TORCHRUN, "2", str(path), *args], capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def test_ranks_stay_identical_under_a_time_budget(tmp_path: Path) -> None:
    # the learning rate reads the clock under a time budget: every rank must read rank 0's
    out = _torchrun(
        tmp_path,
        f"rows, y = {ROWS[:64]!r}, {Y[:64]!r}\n"
        "cfg = TrainConfig(max_epochs=10000, batch_size=16, progress=False, time_budget_s=3.0,"
        " warmup_frac=0.0)\n"
        "m = RegressionLM(model='tiny', train=cfg, device='cpu').fit(rows, y, calibrate=False)\n"
        "w = b''.join(v.numpy().tobytes() for v in m.net.state_dict().values())\n"
        f"path = {str(tmp_path)!r} + '/w' + os.environ['RANK']\n"
        "open(path, 'w').write(f'{hashlib.sha256(w).hexdigest()} {m.result.steps}')\n",
    )
    assert out.returncode == 0, out.stderr
    weights = [(tmp_path / f"w{rank}").read_text() for rank in (0, 1)]
    assert weights[0] == weights[1], weights  # the same steps, the same weights


def test_ranks_with_different_rows_are_refused(tmp_path: Path) -> None:
    out = _torchrun(
        tmp_path,
        f"rows, y = {ROWS[:40]!r}, {Y[:40]!r}\n"
        "n = 40 - int(os.environ['RANK'])  # rank 1 lost a row\n"
        "RegressionLM(model='tiny', train=TrainConfig(max_epochs=1, progress=False),"
        " device='cpu').fit(rows[:n], y[:n])\n",
    )
    assert out.returncode != 0
    assert "hold different models or training rows" in out.stderr + out.stdout


# -- streaming ------------------------------------------------------------------------------------
def _ids(stream: ExampleStream, epoch: int, shard: Shard) -> list[str]:
    return [e.id for e in stream.epoch(epoch, shard)]  # type: ignore[misc]


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 60),
    shards=st.integers(1, 5),
    buffer=st.integers(0, 20),
    epoch=st.integers(0, 3),
)
def test_every_row_is_read_once_per_epoch_across_shards(
    tmp_path_factory: pytest.TempPathFactory, n: int, shards: int, buffer: int, epoch: int
) -> None:
    path = _rows_file(tmp_path_factory.mktemp("s") / "rows.jsonl.gz", n, split=False)
    stream = ExampleStream(path, config=StreamConfig(shuffle_buffer=buffer, seed=1))
    seen = [i for k in range(shards) for i in _ids(stream, epoch, Shard(k, shards))]
    assert Counter(seen) == Counter(str(i) for i in range(n))
    assert _ids(stream, epoch, Shard(0, shards)) == _ids(stream, epoch, Shard(0, shards))


def test_stream_equals_the_in_memory_reader(tmp_path: Path) -> None:
    from rlm.io import read_examples

    path = _rows_file(tmp_path / "rows.jsonl")
    whole = read_examples(path, split="train")
    stream = ExampleStream(path, split="train", config=StreamConfig(shuffle_buffer=0))
    assert list(stream.epoch(0)) == whole  # buffer 0: file order, the same Examples
    shuffled = list(stream.epoch(1, Shard()))
    assert sorted(e.id for e in shuffled) == sorted(e.id for e in whole)  # type: ignore[type-var]
    stream2 = ExampleStream(path, split="train", config=StreamConfig(shuffle_buffer=8))
    assert [e.id for e in stream2.epoch(0)] != [e.id for e in whole]
    assert stream2.skim() == whole[: StreamConfig.sample_rows] and stream2.rows == len(whole)
    small = ExampleStream(path, split="train", config=StreamConfig(sample_rows=10))
    assert len(small.skim()) == 10 and small.rows == len(whole)


@pytest.mark.parametrize("groups", [1, 7])  # fewer row groups than shards, and more
def test_parquet_and_csv_shards_partition_the_rows(tmp_path: Path, groups: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"size": list(range(40)), "t": [float(i) for i in range(40)]})
    pq.write_table(table, tmp_path / "rows.parquet", row_group_size=-(-40 // groups))
    (tmp_path / "rows.csv").write_text("size,t\n" + "".join(f"{i},{float(i)}\n" for i in range(40)))
    for name in ("rows.parquet", "rows.csv"):
        stream = ExampleStream(tmp_path / name, targets=["t"], y_key=None)
        got = [e.y["t"] for k in range(3) for e in stream.epoch(0, Shard(k, 3))]
        assert sorted(got) == [float(i) for i in range(40)], name


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"shuffle_buffer": -1}, "shuffle_buffer=-1"),
        ({"sample_rows": 0}, "sample_rows=0"),
        ({"workers": -2}, "workers=-2"),
    ],
)
def test_stream_config_errors(kwargs: dict, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        StreamConfig(**kwargs)


def test_stream_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        ExampleStream(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="at least one file"):
        ExampleStream([])
    with pytest.raises(ValueError, match="shard 3 of 2"):
        Shard(3, 2)


def test_fit_on_a_stream_saves_and_resumes_to_the_same_weights(tmp_path: Path, monkeypatch) -> None:
    from rlm.io import read_examples
    from rlm.nn import resume

    torch.set_num_threads(1)
    path = _rows_file(tmp_path / "rows.jsonl.gz")
    valid = read_examples(path, split="valid")
    how = StreamConfig(shuffle_buffer=16, sample_rows=40)
    cfg = _cfg(max_epochs=4, checkpoint_every_steps=3, patience=100)

    def fit(run: Path, resume_run: bool = False) -> RegressionLM:
        stream = ExampleStream(path, split="train", config=how)
        return RegressionLM(model="tiny", train=cfg).fit(
            stream, valid=valid, run_dir=run, resume=resume_run
        )

    reference = fit(tmp_path / "ref")
    assert reference.result.steps == 4 * 5  # type: ignore[union-attr]  # 80 rows, batch 16
    saves = {"n": 0}
    real = resume.Checkpoints.saved

    def crash_after_two(self) -> None:
        real(self)
        saves["n"] += 1
        if saves["n"] == 2:
            raise KeyboardInterrupt  # a crash right after the second checkpoint (step 6)

    monkeypatch.setattr(resume.Checkpoints, "saved", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "run")
    monkeypatch.setattr(resume.Checkpoints, "saved", real)
    resumed = fit(tmp_path / "run", resume_run=True)
    for k, v in reference.net.state_dict().items():  # type: ignore[union-attr]
        assert torch.equal(v, resumed.net.state_dict()[k]), k  # type: ignore[union-attr]
    loaded = RegressionLM.load(tmp_path / "run")
    assert loaded.predict(ROWS[:4], samples=4).shape == (4, 1)


def test_streamed_training_with_loader_workers(tmp_path: Path) -> None:
    path = _rows_file(tmp_path / "rows.jsonl")
    stream = ExampleStream(path, split="train", config=StreamConfig(workers=2, shuffle_buffer=8))
    m = RegressionLM(model="tiny", train=_cfg(max_epochs=2, batch_size=10)).fit(stream)
    # worker 0 reads the even rows (32 train: 4 batches of up to 10), worker 1 the odd ones
    # (48: 5 batches), so 9 steps an epoch, more than 80 / 10: each epoch still runs to its end
    # (the schedule's horizon is a bound, not a count)
    result = m.result
    assert result is not None and result.steps == 2 * 9 and result.stopped == "max_epochs"
    assert np.isfinite(m.predict(ROWS[:4], samples=4)).all()


def test_cli_train_stream(tmp_path: Path) -> None:
    data = _rows_file(tmp_path / "rows.jsonl")
    runner = CliRunner(env={"COLUMNS": "400"})
    cmd = [*_train_cmd(data, tmp_path / "s"), "--stream", "--shuffle-buffer", "8"]
    out = runner.invoke(app, cmd)
    assert out.exit_code == 0, out.output
    assert "80 rows (streamed)" in out.output and "valid rows │ 16" in out.output
    bad = runner.invoke(app, [*cmd[:3], str(tmp_path / "t"), *cmd[4:], "--limit", "5"])
    assert bad.exit_code == 2 and "--limit reads rows into memory" in bad.output


# -- prediction in worker processes -----------------------------------------------------------------
def test_predict_workers_write_what_one_process_writes(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from rlm.io import load_demo

    inputs = tmp_path / "in.jsonl.gz"
    with gzip.open(inputs, "wt") as f:
        for e in load_demo("nas201", "test")[:50]:
            f.write(json.dumps({"x": e.x}) + "\n")
    runner = CliRunner(env={"COLUMNS": "400"})
    outs = []
    for workers in (1, 2):
        dest = tmp_path / f"out{workers}.jsonl"
        cmd = ["predict", str(tiny_model_dir), "--file", str(inputs), "--output", str(dest)]
        cmd += ["--samples", "4", "--chunk-size", "16", "--workers", str(workers)]
        result = runner.invoke(app, cmd)
        assert result.exit_code == 0, result.output
        outs.append(dest.read_bytes())
    assert outs[0] == outs[1] and outs[0].count(b"\n") == 50
    bad = runner.invoke(app, [*cmd, "--early-exit", "0.01"])
    assert bad.exit_code == 2 and "--workers 1" in bad.output


def test_layout_keys_reach_the_stream(tmp_path: Path) -> None:
    path = _rows_file(tmp_path / "rows.jsonl")
    stream = ExampleStream(path, layout=Layout(x_columns=("size",)), split="train")
    assert all(set(e.x) == {"size"} for e in stream.epoch(0))  # type: ignore[arg-type]
