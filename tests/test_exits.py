"""Early exit: exits are checked, trained on every exit's loss, and at prediction time each input
stops where its prediction settles, whatever the batch it rides in."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rlm import RegressionLM
from rlm.io import load_demo
from rlm.nn.config import ModelConfig, TrainConfig, preset
from rlm.nn.decoding import DecodeConfig, decode_memory
from rlm.nn.exits import agree
from rlm.nn.model import RegressionTransformer
from rlm.nn.source import collate

QUICK = TrainConfig(max_steps=40, batch_size=32, lr=3e-3, progress=False)
ROWS = load_demo("x264")[:150]
# rows of 5 to 16 fields: the batch pads, and retiring inputs leave padded rows behind
XS = [dict(list(e.x.items())[: 5 + i % 12]) for i, e in enumerate(ROWS[100:130])]
DEEP = preset("tiny", enc_layers=3)


@pytest.mark.parametrize(
    ("exits", "ok"),
    [((1, 2), True), ((2,), True), ((), True), ((np.int64(1),), True), ((0,), False),
     ((3,), False), ((2, 1), False), ((1, 1), False), ((1.5,), False), ((True,), False)],
)  # fmt: skip
def test_exits_are_layers_below_the_last(exits: tuple[int, ...], ok: bool) -> None:
    if ok:
        cfg = ModelConfig(**{**DEEP.to_dict(), "exits": list(exits)})
        assert cfg.exit_layers == (*(int(e) for e in exits), 3)
        assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    else:
        with pytest.raises(ValueError, match="exits="):
            ModelConfig(**{**DEEP.to_dict(), "exits": exits})


@pytest.mark.parametrize(
    ("a", "b", "tol", "expected"),
    [([[1.0]], [[1.0]], 0.0, [True]), ([[100.0]], [[101.0]], 0.01, [True]),
     ([[100.0]], [[102.0]], 0.01, [False]), ([[1.0, 5.0]], [[1.0, 6.0]], 0.1, [False]),
     ([[0.0]], [[0.0]], 0.0, [True]), ([[-2.0]], [[2.0]], 1.0, [False])],
)  # fmt: skip
def test_agreement_is_relative_on_every_objective(a, b, tol, expected) -> None:
    assert agree(np.array(a), np.array(b), tol).tolist() == expected


def test_every_exit_has_its_logits_and_the_last_is_the_plain_forward() -> None:
    torch.manual_seed(0)
    net = RegressionTransformer(ModelConfig(**{**DEEP.to_dict(), "exits": (1, 2)}), 50, 20, 7)
    src = collate([np.array([3, 4, 5]), np.array([6, 7])], 0)
    tgt = torch.randint(0, 20, (2, 7))
    logits = net.logits_per_exit(src, tgt)
    assert len(logits) == 3 and all(t.shape == (2, 7, 20) for t in logits)
    torch.testing.assert_close(logits[-1], net(src, tgt))
    assert not torch.allclose(logits[0], logits[-1])


@pytest.fixture(scope="module", params=["digits", "mse"])
def exits_model(request: pytest.FixtureRequest) -> tuple[RegressionLM, RegressionLM]:
    members = 2 if request.param == "mse" else 1  # the member-minor rows are walked too
    cfg = preset("tiny", enc_layers=3, head=request.param, members=members)
    base = RegressionLM(model=cfg, train=QUICK).fit(ROWS[:100], valid=ROWS[100:])
    return base, base.add_exits(ROWS[:100], exits=(1, 2), valid=ROWS[100:], train=QUICK)


def test_add_exits_copies_trains_and_saves(
    exits_model: tuple[RegressionLM, RegressionLM], tmp_path: Path
) -> None:
    base, model = exits_model
    assert base.model_config.exits == () and model.model_config.exits == (1, 2)
    assert model.num_params() == base.num_params()  # no weights added
    back = RegressionLM.load(model.save(tmp_path / "exits"))
    assert back.model_config.exits == (1, 2)
    np.testing.assert_array_equal(back.predict(XS, samples=0), model.predict(XS, samples=0))
    with pytest.raises(ValueError, match="no exits"):
        base.set_early_exit(0.01)
    with pytest.raises(ValueError, match="two or more exits"):
        base.add_exits(ROWS[:100], exits=(1,), train=QUICK)  # the first only sets the reference
    model.set_early_exit(0.01)
    tuned = model.finetune(ROWS[:100], valid=ROWS[100:], train=QUICK)
    assert tuned.early_exit is None and not tuned.exit_log  # copies train and calibrate in full
    assert model.early_exit == 0.01 and not model.exit_log
    model.set_early_exit(None)
    with pytest.raises(ValueError, match="tolerance"):
        model.set_early_exit(-1.0)


def test_each_input_exits_as_it_would_alone(exits_model: tuple[RegressionLM, RegressionLM]) -> None:
    _, model = exits_model
    model.set_early_exit(0.02)
    together = model.predict(XS, samples=0)
    layers = np.concatenate(model.exit_log)
    model.set_early_exit(0.02)
    alone = np.concatenate([model.predict([x], samples=0) for x in XS])
    np.testing.assert_allclose(together, alone, rtol=1e-5)
    assert sorted(np.concatenate(model.exit_log).tolist()) == sorted(layers.tolist())
    assert 2 <= model.mean_exit_layer() <= 3  # exit 1 has nothing to agree with
    assert np.isfinite(model.predict(XS, samples=8, seed=1)).all()
    model.set_early_exit(None)


def test_a_tolerance_of_two_stops_everyone_at_the_second_exit(
    exits_model: tuple[RegressionLM, RegressionLM],
) -> None:
    _, model = exits_model
    net, tok, codec = model.net, model.tokenizer, model.codec
    assert net is not None and tok is not None and codec is not None
    model.set_early_exit(2.0)  # |a - b| <= 2 max(|a|, |b|) always
    early = model.predict(XS, samples=0)
    assert model.mean_exit_layer() == 2
    model.set_early_exit(None)
    src = collate(model.encode_inputs(XS), tok.pad_id)
    if net.value_head is None:  # the decoder reading layer 2's memory, by hand
        memory = net.memories(net.embed(src), src.pad, (2,))[0]
        toks = decode_memory(net, memory, src.pad, codec.grammar, 1, DecodeConfig(greedy=True))
        direct = codec.decode(toks)[:, 0]  # (B, K)
    else:  # the value head at layer 2: the members' mean
        assert model.scaler is not None
        out = net.values_per_exit(src, (2,))[0].detach().numpy()  # (B, M, K, C)
        direct = model.scaler.inverse(out[..., 0].mean(1))
    np.testing.assert_allclose(early.reshape(direct.shape), direct, rtol=1e-5)


def test_cli_compress_exits_then_predict_with_early_exit(
    tmp_path: Path, x264_rows_file: Path
) -> None:
    from typer.testing import CliRunner

    from rlm.cli import app

    data = x264_rows_file
    runner = CliRunner(env={"COLUMNS": "400"})  # errors on one line
    run, fast = tmp_path / "run", tmp_path / "fast"
    args = ["train", data, "--out", run, "--preset", "small", "--epochs", "1", "--no-progress"]
    assert runner.invoke(app, [str(a) for a in args]).exit_code == 0
    r = runner.invoke(app, [str(a) for a in ["compress", run, data, "--out", fast]])
    assert r.exit_code == 2 and "--exits" in r.output
    r = runner.invoke(app, [str(a) for a in ["compress", run, data, "--out", fast, "--exits", "4"]])
    assert r.exit_code == 2 and "exits=" in r.output  # small has 4 layers: the last is implied
    r = runner.invoke(app, [str(a) for a in ["compress", run, data, "--out", fast, "--exits", "1"]])
    assert r.exit_code == 2 and "two or more" in r.output and not fast.exists()
    args = ["compress", run, data, "--out", fast, "--exits", "1,2,3", "--time-budget", "3"]
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0 and "exits after layers 1,2,3" in r.output, r.output
    r = runner.invoke(app, ["predict", str(fast), '{"crf": 23}', "--early-exit", "0.01"])
    assert r.exit_code == 0 and "mean exit layer" in r.output and "of 4" in r.output, r.output
    r = runner.invoke(app, ["eval", str(fast), str(data), "--split", "valid", "--early-exit", "0"])
    assert r.exit_code == 0 and "mean exit layer" in r.output, r.output
    r = runner.invoke(app, ["predict", str(run), '{"crf": 23}', "--early-exit", "0.01"])
    assert r.exit_code == 2 and "two or more exits" in " ".join(r.output.split())
