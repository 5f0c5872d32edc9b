"""Compression that changes shapes: structured pruning (heads and neurons removed by measured
importance, smaller layers rebuilt) and cross-layer weight sharing; both save, load and export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rlm import RegressionLM
from rlm.io import load_demo
from rlm.nn.config import ModelConfig, TrainConfig, preset
from rlm.nn.model import RegressionTransformer
from rlm.nn.prune import prune_network

QUICK = TrainConfig(max_steps=30, batch_size=32, lr=3e-3, progress=False)
ROWS = load_demo("x264")[:150]
SMALL = preset("tiny", n_heads=4, dec_heads=4, enc_layers=2, dec_layers=2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"enc_widths": ((2, 10),)}, "1 entries for 2 blocks"),
        ({"enc_widths": ((5, 10), (1, 1))}, "each from 1 to"),
        ({"enc_widths": ((1, 0), (1, 1))}, "each from 1 to"),
        ({"dec_widths": ((1, 1), (1, 1))}, "need 3 values"),
        ({"share_layers": True, "enc_widths": ((1, 1), (1, 1))}, "2 entries for 1 blocks"),
    ],
)
def test_widths_are_checked(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**SMALL.to_dict(), **options})


def test_widths_round_trip_through_json_as_tuples() -> None:
    cfg = ModelConfig(**{**SMALL.to_dict(), "enc_widths": [[1, 7], [4, 64]]})
    assert cfg.enc_widths == ((1, 7), (4, 64))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_the_least_important_head_and_neurons_go() -> None:
    torch.manual_seed(0)
    net = RegressionTransformer(SMALL, 50, 20, 7)
    attn, mlp = net.encoder[0].attn, net.encoder[0].mlp
    scores = {m: torch.rand(m.h) + 1 for m in net.modules() if hasattr(m, "h")}
    scores |= {m: torch.rand(m.fc.out_features) + 1 for m in net.modules() if hasattr(m, "fc")}
    scores[attn] = torch.tensor([3.0, 0.1, 2.0, 1.0])  # head 1 matters least
    scores[mlp] = torch.arange(float(mlp.fc.out_features))  # the first neurons matter least
    small = prune_network(net, scores, 0.25)
    assert small.cfg.enc_widths[0] == (3, 48) and small.encoder[0].attn.h == 3
    dh = SMALL.d_model // SMALL.n_heads
    kept = torch.cat([torch.arange(0, dh), torch.arange(2 * dh, 4 * dh)])  # heads 0, 2, 3
    torch.testing.assert_close(small.encoder[0].attn.proj.weight, attn.proj.weight[:, kept])
    torch.testing.assert_close(small.encoder[0].mlp.fc.weight, mlp.fc.weight[16:])
    torch.testing.assert_close(small.tok_emb.weight, net.tok_emb.weight)
    assert small.num_params() < net.num_params()
    with pytest.raises(ValueError, match="amount"):
        prune_network(net, scores, 1.0)


@pytest.mark.parametrize("head", ["digits", "mse"])
def test_pruned_models_shrink_predict_save_and_export(head: str, tmp_path: Path) -> None:
    model = RegressionLM(model=preset("tiny", head=head), train=QUICK).fit(
        ROWS[:100], valid=ROWS[100:]
    )
    small = model.prune(ROWS[:100], amount=0.5, valid=ROWS[100:], train=QUICK)
    assert small.num_params() < model.num_params()  # tiny: the embeddings are most of it
    assert small.model_config.enc_widths == ((1, 32),)  # half of 2 heads, half of 64 neurons
    assert model.model_config.enc_widths == ()  # the original is unchanged
    xs = [e.x for e in ROWS[100:120]]
    assert np.isfinite(small.predict(xs, samples=4)).all()
    back = RegressionLM.load(small.save(tmp_path / "small"))
    np.testing.assert_array_equal(back.sample(xs, 4, seed=2), small.sample(xs, 4, seed=2))
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from rlm.deploy import OnnxRegressor, export_onnx

    onnx = OnnxRegressor.load(export_onnx(small, tmp_path / "onnx"))
    np.testing.assert_allclose(onnx.sample(xs, 4, seed=2), small.sample(xs, 4, seed=2), rtol=1e-4)


def test_shared_layers_hold_one_block_and_run_it_every_layer(tmp_path: Path) -> None:
    cfg = preset("tiny", enc_layers=3, dec_layers=2, share_layers=True)
    net = RegressionTransformer(cfg, 50, 20, 7)
    assert len(net.encoder) == 1 and len(net.encoder_layers) == 3
    assert (
        net.num_params()
        < RegressionTransformer(preset("tiny", enc_layers=3, dec_layers=2), 50, 20, 7).num_params()
    )
    model = RegressionLM(model=cfg, train=QUICK).fit(ROWS[:100], valid=ROWS[100:])
    xs = [e.x for e in ROWS[100:110]]
    back = RegressionLM.load(model.save(tmp_path / "shared"))
    np.testing.assert_array_equal(back.predict(xs, samples=0), model.predict(xs, samples=0))


def test_cli_compress(tmp_path: Path, x264_rows_file: Path) -> None:
    from typer.testing import CliRunner

    from rlm.cli import app

    data = x264_rows_file
    runner = CliRunner()
    run = tmp_path / "run"
    args = ["train", data, "--out", run, "--preset", "tiny", "--epochs", "2", "--no-progress"]
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    small = tmp_path / "small"
    args = ["compress", run, data, "--out", small, "--prune", "0.5", "--time-budget", "5"]
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    assert "parameters" in r.output
    r = runner.invoke(app, ["predict", str(small), '{"crf": 23}'])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app, [str(a) for a in ["compress", run, data, "--out", small, "--prune", "1"]]
    )
    assert r.exit_code == 2 and "--prune" in r.output
