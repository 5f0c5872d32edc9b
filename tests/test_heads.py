"""Value heads (MSE, Gaussian) on the same encoder, and the target scaling they train on."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm import ModelConfig, RegressionLM, TrainConfig
from rlm.nn.config import preset
from rlm.numbers.scaling import TargetScaler, TaskScaling, log_offset, wants_log


@pytest.mark.parametrize(
    ("values", "log"),
    [([1.0, 5.0, 10.0], True), ([1.0, 5.0], False), ([-1.0, 100.0], False), ([], False)],
)
def test_log_scale_only_for_positive_targets_spanning_a_decade(values, log) -> None:
    assert wants_log(np.array(values)) is log


@pytest.mark.parametrize(
    ("values", "offset"),
    [
        ([1.0, 5.0, 10.0], 0.0),  # positive over a decade: plain log
        ([0.0, 1e-6, 0.5, 0.9], 1e-6),  # zeros among positives over decades (storm)
        ([0.0, 0.0, 2.0, 20.0], 2.0),
        ([0.0, 1.0, 5.0], None),  # the positive values span less than a decade
        ([-1.0, 0.0, 1.0, 100.0], None),  # a negative value: no log
        ([0.0, 0.0], None),
        ([1.0, 5.0], None),
        ([], None),
    ],
)
def test_log_offset_table(values: list[float], offset: float | None) -> None:
    assert log_offset(np.array(values)) == offset


def test_zero_targets_get_an_offset_log_that_round_trips() -> None:
    rows = [{"t": v} for v in (0.0, 1e-6, 3e-4, 0.02, 0.9)]
    scaler = TargetScaler.fit(rows, ["t"])
    assert scaler.log == (True,) and scaler.offset == (1e-6,)
    scaled = scaler.transform(rows).values
    # the spread is in log space: the rows below 1e-3 no longer sit at one point
    assert np.all(np.diff(scaled[:, 0]) > 0.1)
    np.testing.assert_allclose(scaler.inverse(scaled)[:, 0], [r["t"] for r in rows], atol=1e-9)
    for negative in (-0.5, -5e-7):  # inside (-c, 0) too: log(v + c) exists, but v < 0 never did
        with pytest.raises(ValueError, match="must be >= 0"):
            scaler.transform([{"t": negative}])
    assert scaler.inverse(np.array([[-50.0]]))[0, 0] == 0.0  # below the image of 0: 0
    # a checkpoint saved before the offset existed reads as plain logs
    legacy = {"names": ["t"], "log": [True], "mean": [1.0], "std": [2.0]}
    assert TargetScaler.from_dict(legacy).offset == (0.0,)
    assert TargetScaler.from_dict(scaler.to_dict()) == scaler
    tasks = TaskScaling.fit([*rows, {"t": 5.0}, {"t": 50.0}], ["t"], ["a"] * 5 + ["b"] * 2, "s")
    assert tasks.scalers["a"].offset == (1e-6,) and tasks.scalers["b"].offset == (0.0,)
    grown = tasks.extend([{"t": 1.0}, {"t": 0.0}, {"t": 30.0}], ["c"] * 3)
    assert grown.scalers["c"].offset == (1.0,)
    zero = grown.transform([{"t": 0.0}], ["c"])  # each row on its own task's scale
    np.testing.assert_allclose(grown.inverse(np.array([[zero[0]["t"]]]), ["c"]), [[0.0]], atol=1e-6)


@given(st.lists(st.floats(min_value=1e-3, max_value=1e6, allow_nan=False), min_size=2, max_size=20))
def test_scaler_round_trip(values: list[float]) -> None:
    rows = [{"a": v, "b": -v} for v in values]
    scaler = TargetScaler.fit(rows, ["a", "b"])
    scaled = scaler.transform(rows)
    assert scaled.mask.all()
    back = scaler.inverse(scaled.values)
    # float32 on the unit scale: exact to ~1e-7 of the targets' spread
    spread = max(values) - min(values)
    want = [[r["a"], r["b"]] for r in rows]
    np.testing.assert_allclose(back, want, rtol=1e-4, atol=1e-6 + 1e-6 * spread)
    assert TargetScaler.from_dict(scaler.to_dict()) == scaler


@given(
    st.lists(st.floats(min_value=1e-3, max_value=1e6, allow_nan=False), min_size=2, max_size=30),
    st.lists(st.floats(min_value=-1e7, max_value=1e7, allow_nan=False), max_size=10),
)
def test_rank_scaler_round_trips_and_keeps_the_order(values, others) -> None:
    rows = [{"a": v, "b": -v} for v in values]
    scaler = TargetScaler.fit(rows, ["a", "b"], scale="rank")
    assert TargetScaler.from_dict(scaler.to_dict()) == scaler
    # values outside the training range too: the ends extrapolate, strictly increasing
    probe = np.array(sorted({*values, *(abs(o) + 1e-3 for o in others)}))
    z = scaler.transform([{"a": v, "b": -v} for v in probe]).values.astype(float)
    assert np.all(np.diff(z[:, 0]) >= 0) and np.all(np.diff(z[:, 1]) <= 0)
    back = scaler.inverse(z)  # through float32 scores: ~1e-7 of the spread, more far outside
    tol = 1e-6 * (probe.max() - probe.min())
    np.testing.assert_allclose(back[:, 0], probe, rtol=1e-2, atol=tol)
    np.testing.assert_allclose(back[:, 1], -probe, rtol=1e-2, atol=tol)
    (q, _) = scaler.ranks  # the map itself, in float64, is exact
    assert (q is None) == (len(set(values)) == 1)  # one distinct value: nothing to spread
    u = np.log(probe) if scaler.log[0] else probe
    if q is not None:
        np.testing.assert_allclose(q.inverse(q.forward(u)), u, rtol=1e-9, atol=1e-9)


def test_rank_scale_spreads_tight_clusters() -> None:
    # HSQLDB's shape: clusters at 249, 262-264 and 517; standardised, the middle cluster's
    # rows sit a few hundredths apart; as rank scores, every rank step is the same size
    values = [249.0, 249.4, 262.2, 262.6, 263.0, 263.4, 263.8, 517.0, 519.6, 520.2]
    rows = [{"t": v} for v in values]
    middle = slice(2, 7)
    for scale in ("standard", "rank", "auto"):  # auto: these values (x3 rows) are clustered
        z = TargetScaler.fit(rows * 3, ["t"], scale).transform(rows).values[:, 0]
        steps = np.diff(z[middle])
        assert steps.max() < 0.02 if scale == "standard" else steps.min() > 0.2
    scaler = TargetScaler.fit(rows + [{"t": 263.0}] * 5, ["t"], scale="rank")
    (q,) = scaler.ranks
    assert q is not None and len(q.values) == len(set(values))  # tied rows share one knot
    assert TargetScaler.fit([{"t": 3.0}] * 4, ["t"], scale="rank").ranks == (None,)


@pytest.mark.parametrize(
    ("values", "want"),
    [
        ([*np.linspace(1, 1.3, 15), *np.linspace(9, 9.3, 15)], True),  # two clusters apart
        ([1.0, 1.1, 1.2, 1.3, 9.0, 9.1, 9.2, 9.3], False),  # the same with too few rows
        (list(range(40)), False),  # evenly spread
        ([*range(39), 100.0], False),  # a lone outlier beyond the gap: not a cluster
        ([*range(38), 100.0, 101.0], True),  # 2 of 40 rows (5%) beyond it: a cluster
        ([*np.linspace(0, 1, 96), 5.0, 5.1, 5.2, 5.3], True),  # PostgreSQL's 4 of 100 rows
        ([*np.linspace(0, 1, 99), 5.0], False),
        ([5.0, 5.0, 5.0], False),  # constant
        ([], False),
    ],
)
def test_clustered_table(values: list[float], want: bool) -> None:
    from rlm.numbers.scaling import clustered

    assert clustered(np.array(values, dtype=float)) is want


@pytest.mark.parametrize(
    ("knots", "match"),
    [
        ({"values": [1.0, 2.0], "scores": [0.0]}, "same length"),
        ({"values": [2.0, 1.0], "scores": [0.0, 1.0]}, "strictly increasing"),
        ({"values": [1.0, 2.0], "scores": [1.0, 1.0]}, "strictly increasing"),
        ({"values": [1.0], "scores": [1.0]}, ">= 2"),
        ({"values": [1.0, 2.0], "scores": [0.0, 1.0], "slope": 1}, "need"),
        ({"values": [1.0, 2.0]}, "need"),
        ([1.0, 2.0], "need"),
        ({"values": [1.0, float("nan")], "scores": [0.0, 1.0]}, "finite"),
        ({"values": [1.0, float("inf")], "scores": [0.0, 1.0]}, "finite"),
        ({"values": ["a", "b"], "scores": [0.0, 1.0]}, "must be numbers"),
    ],
)
def test_damaged_rank_knots_are_refused(knots, match) -> None:
    saved = TargetScaler.fit([{"t": 1.0}, {"t": 2.0}], ["t"], scale="rank").to_dict()
    with pytest.raises(ValueError, match=match):
        TargetScaler.from_dict({**saved, "ranks": [knots]})
    with pytest.raises(ValueError, match="list of 1"):
        TargetScaler.from_dict({**saved, "ranks": []})
    legacy = {k: v for k, v in saved.items() if k != "ranks"}
    assert TargetScaler.from_dict(legacy).ranks == (None,)  # saved before rank scores


def test_rank_task_scaling_per_task_and_its_checks() -> None:
    a = [*np.linspace(1, 2, 15), *np.linspace(50, 51, 15)]  # two clusters
    rows = [{"t": float(v)} for v in (*a, *np.linspace(5, 9, 30))]
    tasks = ["a"] * 30 + ["b"] * 30
    scaling = TaskScaling.fit(rows, ["t"], tasks, "s", scale="auto")
    # decided per task: a's values are two clusters, b's an even spread
    assert scaling.scalers["a"].ranks[0] is not None and scaling.scalers["b"].ranks == (None,)
    assert TaskScaling.from_dict(scaling.to_dict()) == scaling
    few = [{"t": v} for v in (3.0, 4.0, 90.0, 91.0)]  # a new task's few rows: not ranked
    grown = scaling.extend(few, ["c"] * 4)
    assert grown.scale == "auto" and grown.scalers["c"].ranks == (None,)
    ranked = TaskScaling.fit(rows, ["t"], tasks, "s", scale="rank").extend(few, ["c"] * 4)
    assert ranked.scalers["c"].ranks[0] is not None
    with pytest.raises(ValueError, match="target_scale='normal'"):
        TaskScaling.from_dict({**scaling.to_dict(), "scale": "normal"})
    z = scaling.transform(rows, tasks)
    steps = np.diff([r["t"] for r in z[:4]])  # task a's two clusters: a rank is a rank
    assert steps.min() > 0.5 * steps.max()
    # a shared digit decoder keeps every task on the standard scale under "auto"
    x = [{"s": "a", "k": i % 7} for i in range(30)]
    tiny = TrainConfig(max_epochs=1, progress=False)
    digits = RegressionLM(model=preset("tiny"), task_key="s", train=tiny).fit(x, a)
    assert digits.task_scaling is not None and digits.task_scaling.scalers["a"].ranks == (None,)
    with pytest.raises(ValueError, match="target_scale='normal'"):
        ModelConfig(head="mse", target_scale="normal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="the digit decoder alone"):
        RegressionLM(model=preset("tiny", target_scale="rank")).fit(CONFIGS, TARGETS)


def test_a_new_task_without_an_objective_takes_the_standard_scales_of_known_tasks() -> None:
    # task a ranks objective t (clustered), task b does not; new task c has no t at all: its t
    # scale is b's standard one, not a mean over a's rank-score statistics
    a = [*np.linspace(1, 2, 15), *np.linspace(50, 51, 15)]
    rows = [{"t": float(v), "u": 1.0 + i} for i, v in enumerate((*a, *np.linspace(5, 9, 30)))]
    scaling = TaskScaling.fit(rows, ["t", "u"], ["a"] * 30 + ["b"] * 30, "s", scale="auto")
    grown = scaling.extend([{"u": 2.0}, {"u": 5.0}], ["c", "c"])
    c, b = grown.scalers["c"], scaling.scalers["b"]
    assert c.ranks[0] is None and (c.mean[0], c.std[0], c.log[0]) == (b.mean[0], b.std[0], b.log[0])
    back = grown.inverse(np.array([[0.0, 0.0]]), ["c"])[0, 0]
    assert 5.0 <= back <= 9.0  # a value in b's units, not exp of a rank score


def test_the_pooled_fallback_scale_is_standard_even_where_tasks_together_cluster() -> None:
    # t of task a near 1, of task b near 1000: each task is plain, but pooled they form two
    # clusters; task c lacks t and must fall back to a standard scale, not to ranks of units
    rows = [{"t": 1.0 + i / 30, "u": float(i)} for i in range(30)]
    rows += [{"t": 1000.0 + i, "u": float(i)} for i in range(30)]
    rows += [{"u": float(i)} for i in range(30)]
    scaling = TaskScaling.fit(rows, ["t", "u"], ["a"] * 30 + ["b"] * 30 + ["c"] * 30, "s", "auto")
    assert all(s.ranks[0] is None for s in scaling.scalers.values())


def test_scaler_errors_and_missing_objectives() -> None:
    scaler = TargetScaler.fit([{"a": 1.0}, {"a": 100.0, "b": 2.0}], ["a", "b"])
    scaled = scaler.transform([{"a": 10.0}])
    assert scaled.mask.tolist() == [[1.0, 0.0]]
    with pytest.raises(ValueError, match="log space"):
        scaler.transform([{"a": -1.0}])
    with pytest.raises(ValueError, match="no training row"):
        TargetScaler.fit([{"a": 1.0}], ["a", "zz"])
    with pytest.raises(ValueError, match="head="):
        ModelConfig(head="tree")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ensembles a value head"):
        ModelConfig(members=4)
    with pytest.raises(ValueError, match="members=0"):
        ModelConfig(head="mse", members=0)


def test_ensemble_heads_mix_members_and_average_points() -> None:
    import torch

    from rlm.nn.heads import ValueHead, value_loss
    from rlm.predict.draws import value_draws

    head = ValueHead(8, objectives=2, gaussian=True, members=3)
    memory, pad = torch.randn(5 * 3, 4, 8), torch.zeros(5 * 3, 4, dtype=torch.bool)
    assert head(memory, pad).shape == (5, 3, 2, 2)  # (B, M, K, C)
    out = torch.zeros(1, 3, 1, 2)
    out[0, :, 0, 0] = torch.tensor([0.0, 10.0, 20.0])  # member means
    out[0, :, 0, 1] = -30.0  # softplus(-30) ~ 0: the floor variance, nearly no noise
    # the uniform picks the member (its third of [0, 1)), whatever the number of samples
    u = np.array([0.1, 0.5, 0.9, 0.2, 0.6])[None, :, None]  # (1, S=5, K=1)
    draws = value_draws(out.numpy(), u, 1.0)[0, :, 0]
    np.testing.assert_allclose(draws, [0, 10, 20, 0, 10], atol=0.05)
    grid = (np.arange(3000, dtype=np.float64)[None, :, None] + 0.5) / 3000
    mixture = value_draws(out.numpy(), grid, 1.0)[0, :, 0]
    assert [float(np.mean(np.abs(mixture - c) < 1)) for c in (0, 10, 20)] == [1 / 3] * 3
    np.testing.assert_allclose(value_draws(out[..., :1].numpy(), None), [[[10.0]]])
    # each member is scored on its own error: members at 0, 10 and 20 around a target of 10
    loss = value_loss(out[..., :1], torch.tensor([[10.0]]), torch.ones(1, 1))
    assert float(loss) == pytest.approx((100 + 0 + 100) / 3)


CONFIGS = [{"size": s, "mode": ["a", "b"][s % 2]} for s in range(1, 41)]
TARGETS = [float(x["size"] * (3 if x["mode"] == "a" else 1)) for x in CONFIGS]


@pytest.mark.parametrize(
    ("head", "members", "scale"),
    [("mse", 1, "standard"), ("gaussian", 1, "standard"), ("mse", 3, "standard"),
     ("gaussian", 1, "rank")],
)  # fmt: skip
def test_value_head_fits_samples_and_reloads(head: str, members: int, scale, tmp_path) -> None:
    m = RegressionLM(
        model=preset("tiny", head=head, members=members, target_scale=scale),
        train=TrainConfig(max_epochs=30, batch_size=8, lr=3e-3, progress=False),
    )
    m.fit(CONFIGS, TARGETS)
    assert m.scaler is not None and m.net is not None and m.net.value_head is not None
    assert not hasattr(m.net, "decoder")  # the value head replaces the digit decoder
    draws = m.sample(CONFIGS[:5], 16, seed=3)
    assert draws.shape == (5, 16, 1) and np.isfinite(draws).all()
    spread = draws.std(axis=1)
    assert (spread > 0).all() if head == "gaussian" else (spread == 0).all()
    np.testing.assert_array_equal(m.sample(CONFIGS[:5], 16, seed=3), draws)  # seeded
    pred = m.predict(CONFIGS, samples=16)[:, 0]
    assert np.corrcoef(pred, TARGETS)[0, 1] > 0.5  # it learned something in 30 epochs
    saved = m.save(tmp_path / f"{head}{members}")
    loaded = RegressionLM.load(saved)
    np.testing.assert_array_equal(loaded.sample(CONFIGS[:5], 16, seed=3), draws)
    if scale == "rank":  # rlm info says how the target was scaled
        import json

        from typer.testing import CliRunner

        from rlm.cli import app

        info = CliRunner().invoke(app, ["info", str(saved), "--json"])
        scales = json.loads(info.stdout)["summary"]["target_scales"]
        assert scales == {"y": "log(y), ranks (40 knots), standardised"}
        # a checkpoint saved before target scales existed keeps to the standard one
        meta = json.loads((saved / "config.json").read_text())
        del meta["model"]["target_scale"]
        (saved / "config.json").write_text(json.dumps(meta))
        assert RegressionLM.load(saved).model_config.target_scale == "standard"
    with pytest.raises(ValueError, match="top_p"):
        m.sample(CONFIGS[:1], 4, top_p=0.5)
    report = m.evaluate(CONFIGS[:20], TARGETS[:20], samples=8)
    assert "spearman" in report["y"]


def test_server_batches_give_a_value_head_the_same_draws() -> None:
    import asyncio

    from rlm.serve.batching import Job, sample_jobs

    m = RegressionLM(model=preset("tiny", head="gaussian"), train=TrainConfig(max_epochs=2))
    m.fit(CONFIGS, TARGETS)

    async def jobs() -> list[Job]:
        loop = asyncio.get_running_loop()
        return [
            Job(CONFIGS[:3], 8, 5, loop.create_future()),
            Job(CONFIGS[3:4], 4, 1, loop.create_future()),
        ]

    got = sample_jobs(m, asyncio.run(jobs()))
    np.testing.assert_array_equal(got[0], m.sample(CONFIGS[:3], 8, seed=5))
    np.testing.assert_array_equal(got[1], m.sample(CONFIGS[3:4], 4, seed=1))


@pytest.mark.parametrize(
    ("rows", "calibrated", "preset", "head", "members"),
    [
        (100, True, "compact", "mse", 4),  # held-out rows calibrate its intervals
        (100, False, "compact", "gaussian", 4),  # no held-out rows: its own spread
        (499, True, "compact", "mse", 4),
        (500, True, "compact", "digits", 1),
    ],
)
def test_auto_model_gives_small_data_a_value_head(rows, calibrated, preset, head, members):
    from rlm.nn.config import PRESETS, auto_model

    cfg = auto_model(rows, calibrated, max_input_len=256)
    assert (cfg.head, cfg.members) == (head, members)
    assert cfg.d_model == PRESETS[preset].d_model
