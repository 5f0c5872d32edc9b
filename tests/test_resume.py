"""No lost training: checkpoints while training, SIGKILL then resume to the same weights, SIGTERM
from the CLI saves a usable model and says how to go on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rlm import RegressionLM, TrainConfig
from rlm.nn.resume import STATE_FILE

ROWS = [{"size": s, "mode": ["a", "b"][s % 2]} for s in range(1, 61)]
Y = [float(x["size"] * (2 if x["mode"] == "a" else 1)) for x in ROWS]
EPOCHS = 60

# The training a subprocess runs (and the test runs uninterrupted): 1 thread, so both take the
# same floating-point path; a checkpoint every 4 steps.
SCRIPT = f"""
import sys, torch
torch.set_num_threads(1)
from rlm import RegressionLM, TrainConfig
rows = {ROWS!r}
y = {Y!r}
cfg = TrainConfig(max_epochs={EPOCHS}, batch_size=8, progress=False, checkpoint_every_steps=4,
                  patience=1000, seed=0)
RegressionLM(model="tiny", train=cfg).fit(
    rows[:48], y[:48], valid=(rows[48:], y[48:]), run_dir=sys.argv[1], resume=len(sys.argv) > 2
)
"""


def _weights(d: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(d / "model.safetensors"))


def _wait_for(predicate, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"training ended before the test could stop it: {proc.returncode}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("training never reached the point to stop it")
        time.sleep(0.05)


def _steps_saved(d: Path) -> int:
    from safetensors import safe_open

    try:
        with safe_open(str(d / STATE_FILE), framework="np") as f:
            return json.loads(f.metadata()["rlm_train_state"])["position"]["step"]
    except Exception:  # not written yet, or being replaced this instant
        return 0


def test_sigkill_then_resume_reaches_the_uninterrupted_weights(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    run = lambda d, *extra: subprocess.run(  # noqa: E731
        [sys.executable, str(script), str(d), *extra], check=True, timeout=600
    )
    reference = tmp_path / "reference"
    run(reference)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(killed)])
    _wait_for(lambda: _steps_saved(killed) >= 40, 300, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # what the kill left is whole: the best model so far loads, the state is complete
    assert {STATE_FILE, "model.safetensors", "config.json"} <= {p.name for p in killed.iterdir()}
    RegressionLM.load(killed).predict(ROWS[:2], samples=2)
    run(killed, "--resume")

    want, got = _weights(reference), _weights(killed)
    assert want.keys() == got.keys()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-6, err_msg=k)
    assert not (killed / STATE_FILE).exists()  # a finished run leaves the model, not its state
    history = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == list(range(1, len(history) + 1))


def test_cli_sigterm_saves_a_usable_model_and_resumes(tmp_path: Path) -> None:
    rows = [{"x": x, "y": {"t": y}, "split": "train"} for x, y in zip(ROWS, Y, strict=True)]
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "rlm.cli", "train", str(data), "--out", str(out)]
    cmd += ["--preset", "tiny", "--epochs", "400", "--no-progress", "--patience", "1000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "300"}  # errors on one line
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    metrics = out / "metrics.jsonl"
    _wait_for(lambda: metrics.is_file() and metrics.read_text().count("\n") >= 3, 300, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    last = stderr.strip().splitlines()[-1]
    assert "stopped by SIGTERM" in last and "--resume" in last
    assert "Traceback" not in stderr
    RegressionLM.load(out).predict(ROWS[:2], samples=2)  # the best model so far, usable now
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 2 and "already holds a run" in again.stderr
    short = [*cmd[:-5], "--epochs", "8", "--no-progress", "--patience", "1000", "--resume"]
    with pytest.raises(subprocess.CalledProcessError) as info:  # other options: refused
        subprocess.run(short, check=True, capture_output=True, text=True, env=env, timeout=120)
    assert "other data or options" in info.value.stderr
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert not (out / STATE_FILE).exists()
    assert RegressionLM.load(out).training_summary["epochs"] == 400
    finished = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=env)
    assert finished.returncode == 2 and "holds a finished run" in finished.stderr


def test_resume_after_an_epoch_end_and_into_the_cooldown(tmp_path: Path, monkeypatch) -> None:
    """Checkpoints that land on epoch ends, a cool-down (whose start lr the resume must know):
    "crash" right after the 5th save, resume, and reach the uninterrupted weights."""
    import torch

    from rlm.nn import training

    torch.set_num_threads(1)
    cfg = TrainConfig(
        max_epochs=25, batch_size=8, lr=3e-3, progress=False, checkpoint_every_steps=6, patience=2
    )

    def fit(d: Path, resume: bool = False) -> RegressionLM:
        m = RegressionLM(model="tiny", train=cfg)
        return m.fit(ROWS[:48], Y[:48], valid=(ROWS[48:], Y[48:]), run_dir=d, resume=resume)

    reference = fit(tmp_path / "reference")
    assert any(r.get("cooldown") for r in reference.result.history)  # the case under test
    real, saves = training.save_state, []

    def save_then_crash(*args, **kwargs) -> None:
        real(*args, **kwargs)
        saves.append(1)
        if len(saves) == 5:
            raise KeyboardInterrupt  # as if killed the instant the state hit the disk

    monkeypatch.setattr(training, "save_state", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "killed")
    monkeypatch.undo()
    resumed = fit(tmp_path / "killed", resume=True)
    want, got = reference.net.state_dict(), resumed.net.state_dict()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6, msg=k)
    assert [r["lr"] for r in resumed.result.history] == [r["lr"] for r in reference.result.history]


def test_resume_errors(tmp_path: Path) -> None:
    m = RegressionLM(model="tiny", train=TrainConfig(max_epochs=1, progress=False))
    with pytest.raises(ValueError, match="holds no training state"):
        m.fit(ROWS, Y, run_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="needs the run_dir"):
        m.fit(ROWS, Y, resume=True)
    with pytest.raises(ValueError, match="checkpoint_every_s=-1"):
        TrainConfig(checkpoint_every_s=-1)
