"""Model, decoding and the RegressionLM API, on tiny seeded models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlm import RegressionLM
from rlm.inputs.padding import micro_batches
from rlm.io.examples import as_examples
from rlm.nn.config import ModelConfig, TrainConfig, preset
from rlm.nn.decoding import DecodeConfig, GrammarTable, decode
from rlm.nn.loss import batch_loss, grammar_loss, make_batch
from rlm.nn.model import RegressionTransformer
from rlm.nn.source import collate
from rlm.numbers import NumberConfig
from rlm.numbers.decoding import uniforms
from rlm.numbers.targets import TargetCodec

TINY = preset("tiny")


def _codec(config: NumberConfig, k: int = 2) -> TargetCodec:
    rows = [{f"t{j}": float(v + j) for j in range(k)} for v in (0.5, 3.0, 70.0)]
    return TargetCodec.fit(rows, [f"t{j}" for j in range(k)], config)


@pytest.mark.parametrize(
    "config",
    [
        NumberConfig(),
        NumberConfig(scheme="p10"),
        NumberConfig(scheme="normalized"),
        NumberConfig(base=2, exponent_digits=4, mantissa_digits=8),
    ],
)
def test_random_weights_always_decode_valid_numbers(config: NumberConfig) -> None:
    """The grammar alone guarantees validity, whatever the weights say."""
    codec = _codec(config)
    torch.manual_seed(0)
    net = RegressionTransformer(TINY, 50, len(codec.tokens), codec.length).eval()
    with torch.no_grad():  # large random head weights make the raw distribution wild
        net.head.weight.normal_(0, 5.0)
    src = collate([[2, 7, 9, 3], [2, 11, 3], [2, 3]], 0)
    for cfg in (
        DecodeConfig(),
        DecodeConfig(greedy=True),
        DecodeConfig(temperature=3.0, top_p=0.9),
    ):
        u = None if cfg.greedy else uniforms(1, (3 * 32, codec.length))
        ids = decode(net, src, codec.grammar, 32, cfg, uniforms=u)
        assert ids.shape == (3, 32, codec.length)
        for row in ids.reshape(-1, codec.length):
            assert codec.grammar.accepts(row.tolist())
        values = codec.decode(ids)
        assert values.shape == (3, 32, 2)
        assert np.isfinite(values).all()


def test_incremental_decoding_matches_teacher_forcing() -> None:
    """KV-cached step logits equal the full forward pass at every position (and every sample)."""
    codec = _codec(NumberConfig())
    torch.manual_seed(0)
    net = RegressionTransformer(TINY, 50, len(codec.tokens), codec.length).eval()
    src = collate([[2, 7, 9, 3], [2, 11, 3]], 0)
    tgt = torch.as_tensor(codec.encode([{"t0": 1.5, "t1": -2.0}, {"t0": 30.0, "t1": 0.01}]).ids)
    samples = 3
    with torch.no_grad():
        tgt_in = torch.cat([torch.full((2, 1), net.bos), tgt[:, :-1]], 1)
        full = net(src, tgt_in)  # (B, L, V)
        kv, mask = net.cross_kv(net.encode(src)), net.attn_mask(src.pad)
        cache = net.new_cache(2 * samples)
        for pos in range(codec.length):
            tok = tgt_in[:, pos].repeat_interleave(samples)
            step = net.decode_step(tok, pos, cache, kv, mask, samples).view(2, samples, -1)
            for s in range(samples):
                torch.testing.assert_close(step[:, s], full[:, pos], atol=1e-5, rtol=1e-4)


def test_padding_does_not_change_predictions() -> None:
    codec = _codec(NumberConfig())
    torch.manual_seed(0)
    net = RegressionTransformer(TINY, 50, len(codec.tokens), codec.length).eval()
    grammar = codec.grammar
    alone = decode(net, collate([[2, 5, 3]], 0), grammar, 1, DecodeConfig(greedy=True))
    padded = decode(
        net,
        collate([[2, 5, 3], [2, 5, 6, 7, 8, 9, 3]], 0),
        grammar,
        1,
        DecodeConfig(greedy=True),
    )
    np.testing.assert_array_equal(alone[0], padded[0])


def test_missing_objectives_are_masked_out_of_the_loss() -> None:
    codec = TargetCodec.fit([{"a": 1.0, "b": 2.0}, {"a": 3.0}], ["a", "b"], NumberConfig())
    tg = codec.encode([{"a": 1.0, "b": 2.0}, {"a": 3.0}])
    n = codec.tokenizers[0].length
    assert tg.weight[1, n:].sum() == 0 and tg.weight[1, :n].all()
    torch.manual_seed(0)
    net = RegressionTransformer(TINY, 20, len(codec.tokens), codec.length)
    batch = make_batch(np.arange(2), [[2, 5, 3], [2, 6, 3]], tg, 0)
    loss = grammar_loss(net, batch, GrammarTable(codec.grammar))
    assert math.isfinite(float(loss))


@pytest.mark.parametrize(
    ("lengths", "budget", "members", "expected"),
    [([5, 5, 5, 5], 10, 1, [[0, 1], [2, 3]]), ([5, 5, 5, 5], 100, 1, [[0, 1, 2, 3]]),
     ([5, 9, 2], 10, 1, [[0], [1], [2]]), ([5, 5, 5], 3, 1, [[0], [1], [2]]),
     ([5, 5, 5, 5], 20, 2, [[0, 1], [2, 3]])],
)  # fmt: skip
def test_micro_batches_bound_positions(lengths, budget, members, expected) -> None:
    parts = micro_batches(np.arange(len(lengths)), lengths, budget, members)
    assert [p.tolist() for p in parts] == expected


@pytest.mark.parametrize("head", ["digits", "mse"])
def test_micro_batches_add_up_to_the_whole_batch_gradient(head: str) -> None:
    """A batch run as micro-batches (max_positions) takes the same optimiser step."""
    xs, ys = _toy(24)
    model = RegressionLM(
        model=preset("tiny", head=head), train=TrainConfig(max_steps=1, progress=False)
    )
    model.fit(xs, ys)
    net, tok = model.net, model.tokenizer
    assert net is not None and tok is not None
    src, tg = model.encode_inputs(xs), model._targets(as_examples(xs, ys, model.targets))
    grads = []
    for budget in (10_000, 7):  # one pass; then rows one or two at a time
        net.zero_grad()
        parts = micro_batches(np.arange(24), [len(r) for r in src], budget)
        batch = [make_batch(part, src, tg, tok.pad_id) for part in parts]
        over = sum(b.weight_sum for b in batch)
        for b in batch:
            batch_loss(net, b, GrammarTable(model.codec.grammar), over=over).backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]))
        assert (len(parts) > 1) == (budget == 7)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def _toy(n: int, seed: int = 0) -> tuple[list[dict], np.ndarray]:
    """Configs whose target is a simple function of their options."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for _ in range(n):
        a, b = int(rng.integers(0, 10)), int(rng.integers(0, 4))
        xs.append({"threads": a, "cache": ["lru", "lfu", "fifo", "none"][b]})
        ys.append(10.0 + 7.5 * a + 20.0 * b)
    return xs, np.asarray(ys)


def test_tiny_model_overfits_64_examples() -> None:
    from rlm.predict.metrics import spearman

    xs, ys = _toy(64)
    model = RegressionLM(
        model=ModelConfig(
            d_model=64, n_heads=4, enc_layers=2, dec_d_model=64, dec_heads=4, dec_layers=1
        ),
        train=TrainConfig(max_epochs=80, lr=3e-3, batch_size=8, progress=False),
    )
    model.fit(xs, ys)
    pred = model.predict(xs, samples=16)[:, 0]
    assert spearman(ys, pred) > 0.95


@pytest.fixture(scope="module")
def fitted() -> RegressionLM:
    xs, ys = _toy(48, seed=1)
    y2 = np.stack([ys, ys / 10 + 1], axis=1)
    return RegressionLM(
        model="tiny", targets=["latency", "memory"], train=TrainConfig(max_epochs=3, progress=False)
    ).fit(xs, y2)


def test_shapes_and_intervals(fitted: RegressionLM) -> None:
    xs, _ = _toy(5, seed=2)
    assert fitted.sample(xs, 7).shape == (5, 7, 2)
    assert fitted.predict(xs).shape == (5, 2)
    assert fitted.predict(xs, samples=0).shape == (5, 2)  # greedy
    lo, hi = fitted.predict_interval(xs, 0.8)
    assert lo.shape == hi.shape == (5, 2) and (lo <= hi).all()
    # same seed, same samples; another seed, other samples
    assert np.array_equal(fitted.sample(xs, 4, seed=3), fitted.sample(xs, 4, seed=3))


def test_save_load_round_trip(fitted: RegressionLM, tmp_path) -> None:
    xs, _ = _toy(10, seed=3)
    fitted.save(tmp_path / "m")
    loaded = RegressionLM.load(tmp_path / "m")
    assert loaded.targets == fitted.targets
    np.testing.assert_array_equal(loaded.sample(xs, 8, seed=5), fitted.sample(xs, 8, seed=5))
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m.predict_interval(["x"], 1.5), "level"),
        (lambda m: m.sample(["x"], 0), "at least one sample"),
        (lambda m: m.predict(["x"], stat="mode"), "stat"),
    ],
)
def test_bad_arguments(fitted: RegressionLM, call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(fitted)


def test_unfitted_and_bad_checkpoint(tmp_path) -> None:
    with pytest.raises(ValueError, match="not fitted"):
        RegressionLM(model="tiny").predict(["x"])
    with pytest.raises(ValueError, match="not an rlm checkpoint"):
        RegressionLM.load(tmp_path)
    with pytest.raises(ValueError, match="unknown preset"):
        RegressionLM(model="huge")


def test_nan_target_rejected_with_row() -> None:
    with pytest.raises(ValueError, match="row '1': target 'y' is nan"):
        RegressionLM(model="tiny").fit(["a", {"x": 1}], [1.0, math.nan])


def test_training_is_deterministic_with_a_seed() -> None:
    xs, ys = _toy(24, seed=4)

    def fit(seed: int) -> RegressionLM:
        cfg = TrainConfig(max_epochs=2, seed=seed, progress=False)
        return RegressionLM(model="tiny", train=cfg).fit(xs, ys)

    a, b, c = fit(0), fit(0), fit(1)
    for (name, pa), pb in zip(a.net.state_dict().items(), b.net.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert np.array_equal(a.sample(xs, 4), b.sample(xs, 4))
    assert not torch.equal(a.net.head.weight, c.net.head.weight)


# the cosine 5 steps past a 5-step warm-up of 100 steps: from 1e-3 towards the 1e-4 floor
STEP_10 = 1e-4 + 9e-4 * 0.5 * (1 + math.cos(math.pi * 5 / 95))


@pytest.mark.parametrize(
    ("step", "elapsed", "budget", "clock", "expected"),
    [
        (0, 0.0, None, True, 1e-3 / 5),  # warm-up: 5 of 100 steps
        (4, 0.0, None, True, 1e-3),
        (100, 0.0, None, True, 1e-4),  # end of cosine: lr * min_lr_frac
        (10, 0.0, 60.0, True, STEP_10),
        (10, 60.0, 60.0, True, 1e-4),  # the clock ran out first: schedule ends anyway
        (10, 30.0, 60.0, False, STEP_10),  # clock_schedule=False: steps only, however slow
        (10, 60.0, 60.0, False, STEP_10),
    ],
)
def test_lr_schedule(
    step: int, elapsed: float, budget: float | None, clock: bool, expected: float
) -> None:
    from rlm.nn.schedule import lr_at

    cfg = TrainConfig(
        lr=1e-3, warmup_frac=0.05, min_lr_frac=0.1, time_budget_s=budget, clock_schedule=clock
    )
    assert lr_at(step, 100, cfg, elapsed) == pytest.approx(expected)
    with pytest.raises(ValueError, match="clock_schedule"):
        TrainConfig(clock_schedule="no")  # type: ignore[arg-type]


def test_sampling_inputs_encoded_beforehand_draws_the_same(fitted: RegressionLM) -> None:
    """``encoded=``: what training's validation passes every epoch instead of reading again."""
    xs, _ = _toy(5, seed=9)
    rows = fitted.encode_inputs(xs)
    np.testing.assert_array_equal(
        fitted.sample(xs, 4, seed=2, encoded=rows), fitted.sample(xs, 4, seed=2)
    )
    assert fitted.distribution(xs, samples=4, encoded=rows).point.shape == (5, 2)
    with pytest.raises(ValueError, match="give encode_inputs"):
        fitted.sample(xs, 4, encoded=rows[:3])


def test_spearman_selection_survives_constant_early_predictions() -> None:
    """Early in training every prediction can be equal: no Spearman yet, and no crash."""
    xs, ys = _toy(24, seed=5)
    vx, vy = _toy(8, seed=6)
    cfg = TrainConfig(max_epochs=2, select="spearman", eval_samples=4, progress=False)
    model = RegressionLM(model="tiny", train=cfg).fit(xs, ys, valid=(vx, vy))
    assert model.result is not None and len(model.result.history) == 2
    assert all("valid_spearman" in row for row in model.result.history)


def test_fit_with_valid_calibrates_and_checkpoints_keep_it(tmp_path) -> None:
    xs, ys = _toy(48, seed=1)
    vx, vy = _toy(30, seed=4)
    m = RegressionLM(model="tiny", train=TrainConfig(max_epochs=2, progress=False))
    m.fit(xs, ys, valid=(vx, vy))
    assert m.calibration is not None and m.calibration.rows == (30,)
    tx, _ = _toy(6, seed=5)
    cal = m.distribution(tx, samples=16, seed=1)
    raw = m.distribution(tx, samples=16, seed=1, calibrated=False)
    assert cal.calibrated and not raw.calibrated
    np.testing.assert_array_equal(cal.point, raw.point)  # medians never move
    m.save(tmp_path / "m")
    loaded = RegressionLM.load(tmp_path / "m")
    assert loaded.calibration == m.calibration
    np.testing.assert_array_equal(loaded.distribution(tx, samples=16, seed=1).lower, cal.lower)
    # without calibrate (or with too few validation rows) intervals stay raw
    m.fit(xs, ys, valid=(vx[:5], vy[:5]))
    assert m.calibration is None
    m.fit(xs, ys, valid=(vx, vy), calibrate=False)
    assert m.calibration is None


def test_cooldown_anneals_linearly_to_the_floor() -> None:
    from rlm.nn.schedule import Cooldown

    c = Cooldown(start=10, steps=4, lr0=1e-3)
    assert [c.lr(s, 1e-4) for s in (10, 12, 14, 20)] == pytest.approx([1e-3, 5.5e-4, 1e-4, 1e-4])
    assert not c.done(13) and c.done(14)


@pytest.mark.parametrize("cooldown_frac", [0.0, 0.5])
def test_early_stopping_cools_down_before_stopping(cooldown_frac: float) -> None:
    xs, ys = _toy(40, seed=1)
    vx, _ = _toy(12, seed=2)
    noise = np.random.default_rng(0).uniform(0, 1000, size=12)  # nothing to learn on valid
    cfg = TrainConfig(
        max_epochs=60, batch_size=8, patience=2, cooldown_frac=cooldown_frac, progress=False
    )
    m = RegressionLM(model="tiny", train=cfg).fit(xs, ys, valid=(vx, noise), calibrate=False)
    assert m.result is not None and m.result.stopped == "early_stopping"
    cooled = [r for r in m.result.history if r.get("cooldown")]
    if cooldown_frac == 0:
        assert not cooled
    else:
        assert cooled, "no cool-down epochs before stopping"
        before = m.result.history[m.result.history.index(cooled[0]) - 1]["lr"]
        assert cooled[-1]["lr"] < 0.5 * before  # annealed toward the floor, not stopped hot
        assert m.result.epochs < cfg.max_epochs


def test_cooldown_frac_is_validated() -> None:
    with pytest.raises(ValueError, match="cooldown_frac"):
        TrainConfig(cooldown_frac=1.5)


def test_refit_with_other_objectives_drops_the_old_calibration() -> None:
    # spearman selection samples valid rows during training: a stale 2-objective calibration
    # must not be applied to the new 1-objective model
    xs, ys = _toy(48, seed=1)
    vx, vy = _toy(30, seed=4)
    m = RegressionLM(model="tiny", train=TrainConfig(max_epochs=1, progress=False))
    m.fit(xs, np.stack([ys, ys / 10], axis=1), valid=(vx, np.stack([vy, vy / 10], axis=1)))
    assert m.calibration is not None and m.calibration.objectives == 2
    m.targets = None
    m.train_config = TrainConfig(max_epochs=1, select="spearman", progress=False)
    m.fit(xs, ys, valid=(vx, vy))
    assert m.calibration is not None and m.calibration.objectives == 1


def test_weight_average_tracks_and_swaps_in_for_validation() -> None:
    from torch import nn

    from rlm.nn.averaging import WeightAverage

    net = nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.fill_(0.0)
    ema = WeightAverage(net, decay=0.9)
    with torch.no_grad():
        net.weight.fill_(1.0)  # the weights jump; the average follows step by step
    for _ in range(200):
        ema.update(net)
    assert ema.avg["weight"].sum().item() == pytest.approx(2.0, abs=1e-6)
    with torch.no_grad():
        net.weight.fill_(5.0)
    with ema.applied(net):
        assert net.weight.sum().item() == pytest.approx(2.0, abs=1e-6)
    assert net.weight.sum().item() == 10.0  # the raw weights are back
    with pytest.raises(ValueError, match=r"ema=1\.0"):
        TrainConfig(ema=1.0)


def test_training_with_weight_averaging_keeps_the_selected_average() -> None:
    xs, ys = [f"row {i}" for i in range(24)], [float(i) for i in range(24)]
    cfg = TrainConfig(max_epochs=3, batch_size=8, ema=0.9, seed=0, progress=False)
    m = RegressionLM(model="tiny", train=cfg).fit(xs[:16], ys[:16], valid=(xs[16:], ys[16:]))
    assert m.result is not None and m.result.best_epoch >= 1
    assert np.isfinite(m.predict(xs[16:], samples=4)).all()
