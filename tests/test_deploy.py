"""ONNX deployment: parity with the PyTorch model (greedy and seeded draws), int8, a process with
torch blocked from import, the CLI, the server, and damaged deployments."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
pytest.importorskip("onnxscript", reason="the onnx extra is not installed")

from rlm import RegressionLM
from rlm.blend import MEMBER_DIR, attach
from rlm.deploy import OnnxRegressor, export_onnx
from rlm.inputs.fields import FieldConfig
from rlm.inputs.vocab import VocabConfig
from rlm.io import load_demo
from rlm.nn.config import ModelConfig, TrainConfig, preset
from rlm.numbers.decoding import DecodeConfig, inverse_cdf, top_p_filter
from rlm.serve.batching import Job, sample_jobs

QUICK = TrainConfig(max_steps=20, batch_size=32, lr=3e-3, progress=False)
X264 = load_demo("x264")[:120]
NAS = load_demo("nas201", "train")[:120]

SLOTS = preset("tiny", head="mse", members=2, mixer="slots")
# name -> (rows, model options): every input path and output head the runtime must reproduce
KINDS = {
    "text_digits": (NAS, {"model": "tiny", "targets": ["cifar10_test_acc", "latency_ms_pixel3"]}),
    "text_numbers": (NAS, {"model": "tiny", "vocab": VocabConfig(numbers="both")}),
    "fields_digits": (X264, {"model": "tiny"}),
    "fields_mse": (X264, {"model": preset("tiny", head="mse")}),
    "fields_gaussian_ensemble": (X264, {"model": preset("tiny", head="gaussian", members=3)}),
    "fields_slots": (X264, {"model": SLOTS, "fields": FieldConfig(numbers="value")}),
}


def _fit(kind: str) -> RegressionLM:
    rows, options = KINDS[kind]
    return RegressionLM(train=QUICK, **options).fit(rows[:90], valid=rows[90:])


@pytest.fixture(scope="module", params=sorted(KINDS))
def deployed(request, tmp_path_factory) -> tuple[str, RegressionLM, OnnxRegressor]:
    model = _fit(request.param)
    out = export_onnx(model, tmp_path_factory.mktemp(request.param) / "onnx")
    return request.param, model, OnnxRegressor.load(out)


def test_onnx_draws_equal_the_torch_draws(deployed) -> None:
    kind, model, onnx = deployed
    xs = [e.x for e in KINDS[kind][0][90:110]]
    np.testing.assert_allclose(onnx.predict(xs, samples=0), model.predict(xs, samples=0), rtol=1e-5)
    # the same seed draws the same uniforms in both runtimes: the same tokens, the same numbers
    torch_draws, onnx_draws = model.sample(xs, 8, seed=5), onnx.sample(xs, 8, seed=5)
    if model.scaler is None:  # digits: decoded tokens, identical
        assert float(np.mean(torch_draws == onnx_draws)) > 0.99
    else:  # a value head: one forward pass, float rounding only
        np.testing.assert_allclose(onnx_draws, torch_draws, rtol=1e-4, atol=1e-6)
    got, want = onnx.evaluate(KINDS[kind][0][90:]), model.evaluate(KINDS[kind][0][90:])
    assert got.keys() == want.keys()
    assert onnx.calibration is not None or model.calibration is None
    assert repr(onnx).startswith("OnnxRegressor(")


def test_int8_is_smaller_and_still_decodes_valid_numbers(tmp_path: Path) -> None:
    model = RegressionLM(model=preset("compact"), train=QUICK, targets=["cifar10_test_acc"])
    model.fit(NAS[:90], valid=NAS[90:])
    fp32 = export_onnx(model, tmp_path / "fp32")
    int8 = export_onnx(model, tmp_path / "int8", precision="int8")

    def graphs(d: Path) -> int:
        return sum(f.stat().st_size for f in d.glob("*.onnx"))

    assert graphs(int8) < 0.35 * graphs(fp32)  # weights 4x smaller; scales and graph add some
    q, f = OnnxRegressor.load(int8), OnnxRegressor.load(fp32)
    xs = [e.x for e in NAS[90:]]
    draws = q.sample(xs, 4, seed=0)
    assert np.isfinite(draws).all() and draws.shape == (30, 4, 1)
    assert q.runtime_info["precision"] == "int8"
    close = np.isclose(q.predict(xs, samples=0), f.predict(xs, samples=0), rtol=0.05)
    assert close.mean() > 0.8
    int4 = export_onnx(model, tmp_path / "int4", precision="int4")
    assert graphs(int4) < 0.75 * graphs(int8)  # 4-bit blocks, a scale per 32 weights
    q4 = OnnxRegressor.load(int4)
    assert q4.runtime_info["precision"] == "int4"
    close = np.isclose(q4.predict(xs, samples=0), f.predict(xs, samples=0), rtol=0.05)
    assert close.mean() > 0.8


def test_int4_reads_the_slot_mlp_written_as_gemm(tmp_path: Path) -> None:
    """torch writes the slot MLP's layers as Gemm, which the 4-bit quantizer skips unless
    rewritten as MatMul: the file shrinks and the predictions stay close."""
    import onnx

    model = _fit("fields_slots")
    root = logging.getLogger()
    handlers = list(root.handlers)
    fp32 = export_onnx(model, tmp_path / "fp32")
    assert any(n.op_type == "Gemm" for n in onnx.load(str(fp32 / "values.onnx")).graph.node)
    int4 = export_onnx(model, tmp_path / "int4", precision="int4")
    assert root.handlers == handlers  # the quantizer's import configures no logging of ours
    ops = {n.op_type for n in onnx.load(str(int4 / "values.onnx")).graph.node}
    assert "Gemm" not in ops and "MatMulNBits" in ops
    assert (int4 / "values.onnx").stat().st_size < 0.25 * (fp32 / "values.onnx").stat().st_size
    xs = [e.x for e in X264[90:]]
    got, want = OnnxRegressor.load(int4).predict(xs, samples=0), model.predict(xs, samples=0)
    np.testing.assert_allclose(got, want, rtol=0.05)
    with pytest.raises(ValueError, match="choose one of"):
        export_onnx(model, tmp_path / "x", precision="int2")  # type: ignore[arg-type]


BLOCK_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this process")
sys.meta_path.insert(0, Block())
import json
from rlm.deploy import OnnxRegressor
m = OnnxRegressor.load(sys.argv[1])
xs = json.loads(sys.argv[2])
print(json.dumps({"predict": m.predict(xs, samples=4, seed=1).tolist(),
                  "torch": sorted(n for n in sys.modules if n.split(".")[0] == "torch")}))
"""


def _blended() -> RegressionLM:
    """The digit decoder with the slot ensemble blended in at 0.5 (``rlm.blend``)."""
    primary = _fit("fields_digits")
    attach(primary, _fit("fields_slots"), 0.5, X264[90:])
    return primary


def test_a_blend_deploys_with_its_member(tmp_path: Path) -> None:
    model = _blended()
    out = export_onnx(model, tmp_path / "onnx", precision="int8")
    assert json.loads((out / MEMBER_DIR / "config.json").read_text())["runtime"]["precision"] == (
        "int8"
    )
    onnx = OnnxRegressor.load(out)
    assert onnx.blend is not None and onnx.blend.weight == 0.5
    assert isinstance(onnx.blend.member, OnnxRegressor)
    assert onnx.calibration.to_dict() == model.calibration.to_dict()  # type: ignore[union-attr]
    fp32 = OnnxRegressor.load(export_onnx(model, tmp_path / "fp32"))
    xs = [e.x for e in X264[90:110]]
    torch_draws, onnx_draws = model.sample(xs, 8, seed=5), fp32.sample(xs, 8, seed=5)
    assert float(np.mean(np.isclose(onnx_draws, torch_draws, rtol=1e-4))) > 0.99
    # the server's batched sampling mixes the member in as sample does
    loop = asyncio.new_event_loop()
    try:
        jobs = [Job(xs[:3], 5, 1, loop.create_future()), Job(xs[3:4], 5, 2, loop.create_future())]
        for job, draws in zip(jobs, sample_jobs(fp32, jobs), strict=True):
            np.testing.assert_allclose(draws, fp32.sample(job.inputs, job.samples, seed=job.seed))
    finally:
        loop.close()
    # a damaged blend entry, or a missing member, is named with the fix
    meta = json.loads((out / "config.json").read_text())
    for entry, match in (({**meta["blend"], "member": "../elsewhere"}, "is damaged"),
                         ({**meta["blend"], "weight": "half"}, "weight 'half' is damaged")):  # fmt: skip
        (out / "config.json").write_text(json.dumps({**meta, "blend": entry}))
        with pytest.raises(ValueError, match=match):
            OnnxRegressor.load(out)
    (out / "config.json").write_text(json.dumps(meta))
    # a member from elsewhere is named; the primary alone, exported over it, leaves none behind
    cfg = json.loads((out / MEMBER_DIR / "config.json").read_text())
    cfg["training"] = {"seconds": 1.0}
    (out / MEMBER_DIR / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="is not the model"):
        OnnxRegressor.load(out)
    shutil.rmtree(out / MEMBER_DIR)
    with pytest.raises(ValueError, match="which is missing"):
        OnnxRegressor.load(out)
    model.blend = None
    export_onnx(model, out)
    assert not (out / MEMBER_DIR).exists() and OnnxRegressor.load(out).blend is None


def test_cli_exports_a_blended_checkpoint(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rlm.cli import app

    ckpt, out = _blended().save(tmp_path / "model"), tmp_path / "deployed"
    runner = CliRunner()
    r = runner.invoke(app, ["export", str(ckpt), "--out", str(out)])
    assert r.exit_code == 0, r.output
    x = json.dumps(X264[95].x)
    answers = []
    for d in (ckpt, out):
        r = runner.invoke(app, ["predict", str(d), x, "--samples", "8", "-o", "-"])
        assert r.exit_code == 0, r.output
        answers.append(json.loads(r.stdout.splitlines()[0]))

    def numbers(answer: object) -> list[float]:  # every number of an answer, in order
        if isinstance(answer, dict):
            return [v for k in sorted(answer) for v in numbers(answer[k])]
        return [float(answer)] if isinstance(answer, (int, float)) else []

    assert answers[0].keys() == answers[1].keys() and numbers(answers[0])
    # float rounding of the slot member's graph only
    np.testing.assert_allclose(numbers(answers[1]), numbers(answers[0]), rtol=1e-4)
    # --primary-only: one network, with the calibration it had on its own draws
    loaded = RegressionLM.load(ckpt)
    assert loaded.blend is not None and loaded.blend.alone is not None
    own = loaded.blend.alone.to_dict()
    assert own != loaded.calibration.to_dict()  # type: ignore[union-attr]
    alone = tmp_path / "alone"
    r = runner.invoke(app, ["export", str(ckpt), "--out", str(alone), "--primary-only"])
    assert r.exit_code == 0, r.output
    onnx = OnnxRegressor.load(alone)
    assert onnx.blend is None and not (alone / MEMBER_DIR).exists()
    assert onnx.calibration.to_dict() == own  # type: ignore[union-attr]
    xs = [e.x for e in X264[95:100]]
    member = loaded.blend.member
    assert loaded.unblend() is loaded and loaded.blend is None
    np.testing.assert_allclose(onnx.sample(xs, 6, seed=2), loaded.sample(xs, 6, seed=2), rtol=1e-4)
    assert member.blend is None  # the member itself is untouched
    single = loaded.save(tmp_path / "single")
    r = runner.invoke(app, ["export", str(single), "-o", str(tmp_path / "again"), "--primary-only"])
    assert r.exit_code == 0 and "not a blend" in r.output, r.output
    again = RegressionLM.load(ckpt)
    again.blend.alone = None  # type: ignore[union-attr]  # as a blend saved before 2026-12-02
    with pytest.warns(UserWarning, match="raw sample quantiles"):
        again.unblend()
    assert again.calibration is None


def test_a_deployment_runs_with_torch_blocked_from_import(tmp_path: Path) -> None:
    model = _blended()  # both graph kinds, and a blend's member read by the runtime
    out = export_onnx(model, tmp_path / "onnx")
    xs = [e.x for e in X264[90:95]]
    run = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, str(out), json.dumps(xs)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["torch"] == []
    np.testing.assert_allclose(got["predict"], model.predict(xs, samples=4, seed=1), rtol=1e-6)


def test_cli_export_then_predict_eval_and_refusals(tiny_model_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rlm.cli import app

    runner = CliRunner()
    out = tmp_path / "deployed"
    r = runner.invoke(app, ["export", str(tiny_model_dir), "--out", str(out)])
    assert r.exit_code == 0, r.output
    cell = load_demo("nas201", "test")[0].x
    answers = []
    for d in (tiny_model_dir, out):
        r = runner.invoke(app, ["predict", str(d), cell, "--samples", "8", "-o", "-"])
        assert r.exit_code == 0, r.output
        answers.append(json.loads(r.stdout.splitlines()[0]))
    assert answers[0] == answers[1]
    for args, message in (
        (["predict", str(tiny_model_dir), cell, "--runtime", "onnx"], "rlm export"),
        (["predict", str(out), cell, "--runtime", "torch"], "ONNX deployment"),
        (["export", str(out), "--out", str(tmp_path / "again")], "ONNX deployment"),
        (
            ["export", str(tiny_model_dir), "--out", str(tmp_path / "q"), "--int8", "--int4"],
            "choose one precision",
        ),
    ):
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and message in r.output, r.output
    with pytest.raises(ValueError, match=r"OnnxRegressor\.load"):
        RegressionLM.load(out)
    with pytest.raises(ValueError, match="PyTorch checkpoint"):
        OnnxRegressor.load(tiny_model_dir)


def test_a_damaged_graph_is_named(tmp_path: Path) -> None:
    out = export_onnx(_fit("fields_mse"), tmp_path / "onnx")
    graph = out / "values.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"values\.onnx does not match"):
        OnnxRegressor.load(out)
    graph.unlink()
    with pytest.raises(ValueError, match=r"values\.onnx is missing"):
        OnnxRegressor.load(out)


def test_the_server_runs_a_deployment(tiny_model, tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from rlm.serve import ServeConfig, create_app

    onnx = OnnxRegressor.load(export_onnx(tiny_model, tmp_path / "onnx"))
    app = create_app({"torch": tiny_model, "onnx": onnx}, ServeConfig())
    cells = [e.x for e in load_demo("nas201", "test")[:3]]
    with TestClient(app) as client:
        body = {"inputs": cells, "samples": 16, "seed": 3}
        answers = [
            client.post("/predict", json={**body, "model": m}).json() for m in ("torch", "onnx")
        ]
        card = client.get("/model", params={"name": "onnx"}).json()
    assert answers[0]["predictions"] == answers[1]["predictions"]
    assert card["runtime"] == "onnx" and card["params"] == tiny_model.num_params()


# golden cases of the shared sampling step: forbidden (zero) tokens are never drawn
@pytest.mark.parametrize(
    ("probs", "u", "token"),
    [
        ([0.2, 0.0, 0.8], 0.1, 0),
        ([0.2, 0.0, 0.8], 0.2, 2),  # the cdf reaches 0.2 at token 0 and stays there at token 1
        ([0.2, 0.0, 0.8], 0.999999, 2),
        ([0.0, 1.0, 0.0], 0.0, 1),
        ([0.5, 0.5, 0.0], 0.9999999999, 1),
    ],
)
def test_inverse_cdf(probs: list[float], u: float, token: int) -> None:
    assert inverse_cdf(np.array([probs], dtype=np.float32), np.array([u]))[0] == token


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], dtype=np.float32))
    kept = np.isfinite(top_p_filter(logits, 0.75))[0]
    assert kept.tolist() == [True, True, False, False]
    assert np.isfinite(top_p_filter(logits, 1e-9))[0].tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="top_p"):
        DecodeConfig(top_p=0.0)
    assert ModelConfig().head == "digits"
