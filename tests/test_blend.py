"""Blending two fitted models (``rlm.blend``): the weight chosen on valid draws, the blended
draws, and a blended model's file, its refusals and what ``rlm info`` shows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rlm import RegressionLM, TrainConfig, selection
from rlm.blend import MEMBER_DIR, Blend, attach, blend_on_valid, choose_weight, mix
from rlm.io import Example
from rlm.nn.config import preset
from rlm.selection import fitted_label

CONFIGS = [{"size": s, "mode": ["a", "b"][s % 2]} for s in range(1, 61)]
TARGETS = [float(x["size"] * (3 if x["mode"] == "a" else 1)) for x in CONFIGS]
TRAIN = [Example(x, {"y": t}) for x, t in zip(CONFIGS[:40], TARGETS[:40], strict=True)]
VALID = [Example(x, {"y": t}) for x, t in zip(CONFIGS[40:], TARGETS[40:], strict=True)]
CANDIDATES = [preset("tiny"), preset("tiny", head="mse", members=2)]
TRUTH = np.arange(8.0)


def spearman_to_truth(draws: np.ndarray) -> float:
    """A stand-in scorer: Spearman of the medians against ``TRUTH``."""
    from scipy.stats import spearmanr

    point = np.median(draws, axis=1)[:, 0]
    return -math.inf if np.ptp(point) == 0 else float(spearmanr(point, TRUTH).statistic)


def draws(values: list[float]) -> np.ndarray:
    return np.repeat(np.array(values, dtype=float)[:, None, None], 3, axis=1)  # (8, 3, 1)


# primary, member -> the primary's weight kept
@pytest.mark.parametrize(
    ("primary", "member", "weight"),
    [
        ([0, 1, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2, 1, 0], 1.0),  # perfect alone: kept alone
        ([0, 1, 2, 3, 4, 5, 7, 6], [0, 1, 2, 3, 4, 5, 7, 6], 1.0),  # equal scores: no blend
        # each misorders a pair the other gets right: only the even mix gets both
        ([0, 1.9, 1.1, 3, 4, 5, 6, 7], [0, 1, 2, 3, 4, 5, 6.9, 6.1], 0.5),
        ([0, 1, 2, 3, 4, 5, 7, 6], [0, 1, 2, 3, 4, 5, 6, 7], 0.25),  # the member must lead
        ([0, 1, 2, 3, 4, 5, 6, 6], [0, 1, 2, 3, 4, 5, 6, 7], 0.75),  # a tie the member breaks
        ([3, 3, 3, 3, 3, 3, 3, 3], [0, 1, 2, 3, 4, 5, 6, 7], 0.75),  # constant: -inf alone
    ],
)
def test_choose_weight_table(primary: list[float], member: list[float], weight: float) -> None:
    got, tried = choose_weight(draws(primary), draws(member), spearman_to_truth)
    assert got == weight
    assert [t["weight"] for t in tried] == [1.0, 0.75, 0.5, 0.25]
    assert all(t["valid_spearman"] is None or -1 <= t["valid_spearman"] <= 1 for t in tried)
    json.dumps(tried)  # -inf is recorded as null


@pytest.mark.parametrize("weight", [0.0, 1.0, -0.5, 1.5, math.nan])
def test_blend_weight_outside_0_1_is_refused(weight: float) -> None:
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        Blend(member=RegressionLM(), weight=weight)


def test_mix_is_sample_by_sample_and_needs_the_same_shape() -> None:
    a, b = np.full((2, 4, 1), 10.0), np.full((2, 4, 1), 20.0)
    np.testing.assert_allclose(mix(a, b, 0.25), np.full((2, 4, 1), 17.5))
    with pytest.raises(ValueError, match="same targets for the same inputs"):
        mix(a, b[:, :3], 0.5)


@pytest.fixture(scope="module")
def blended(tmp_path_factory: pytest.TempPathFactory) -> tuple[RegressionLM, Path]:
    """A selection whose blend weight is forced to 0.5, saved in its run directory."""
    run = tmp_path_factory.mktemp("blend") / "run"
    forced = pytest.MonkeyPatch()
    tried = [{"weight": 1.0, "valid_spearman": 0.5}, {"weight": 0.5, "valid_spearman": 0.9}]
    forced.setattr(selection, "choose_weight", lambda *a: (0.5, tried))
    train = TrainConfig(max_epochs=6, batch_size=8, lr=3e-3, progress=False)
    m = RegressionLM(model=CANDIDATES, train=train)
    try:
        m.fit(TRAIN, valid=VALID, run_dir=run)
    finally:
        forced.undo()
    return m, run


def test_a_blend_mixes_each_draw_and_is_calibrated_on_its_own_draws(
    blended: tuple[RegressionLM, Path],
) -> None:
    m, _ = blended
    assert m.blend is not None and m.blend.weight == 0.5
    sel = m.training_summary["selection"]  # type: ignore[index]
    member_cfg = CANDIDATES[1] if sel["chosen"] == "0-digits" else CANDIDATES[0]
    assert m.blend.member.model_config == member_cfg
    parts = ("mse2", "digits") if sel["chosen"] == "1-mse2" else ("digits", "mse2")
    assert fitted_label(m) == "{}+{}(0.5)".format(*parts)
    assert sel["blend"]["member"] == ("1-mse2" if sel["chosen"] == "0-digits" else "0-digits")
    got = m.sample(CONFIGS[:5], 6, seed=3)
    member, m.blend = m.blend, None
    try:
        alone = m.sample(CONFIGS[:5], 6, seed=3)
    finally:
        m.blend = member
    np.testing.assert_allclose(
        got, 0.5 * alone + 0.5 * member.member.sample(CONFIGS[:5], 6, seed=3)
    )
    assert m.distribution(CONFIGS[:5], samples=6).calibrated


def test_a_blend_saves_and_loads_with_its_member(
    blended: tuple[RegressionLM, Path], tmp_path: Path
) -> None:
    m, run = blended
    assert (run / MEMBER_DIR / "config.json").is_file()  # the run's final model is the blend
    loaded = RegressionLM.load(run)
    assert loaded.blend is not None and loaded.blend.weight == 0.5
    np.testing.assert_array_equal(
        loaded.sample(CONFIGS[:4], 5, seed=2), m.sample(CONFIGS[:4], 5, seed=2)
    )
    assert loaded.calibration is not None
    assert loaded.calibration.to_dict() == m.calibration.to_dict()  # type: ignore[union-attr]
    # a member from elsewhere, or none, is refused and named
    d = m.save(tmp_path / "model")
    other = tmp_path / "other"
    loaded.blend.member.save(other)  # type: ignore[attr-defined]
    cfg = json.loads((other / "config.json").read_text())
    cfg["training"]["seconds"] = 1.0
    (d / MEMBER_DIR / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="is not the model"):
        RegressionLM.load(d)
    m.save(d)  # repaired by saving again
    RegressionLM.load(d)
    import shutil

    shutil.rmtree(d / MEMBER_DIR)
    with pytest.raises(ValueError, match="which is missing"):
        RegressionLM.load(d)
    # the primary alone, saved over it: no stale member left behind
    m.save(d)
    alone = RegressionLM.load(d)
    alone.blend = None
    alone.save(d)
    assert not (d / MEMBER_DIR).exists()
    assert RegressionLM.load(d).blend is None


def test_network_surgery_on_a_blend_is_refused(blended: tuple[RegressionLM, Path]) -> None:
    m, _ = blended
    with pytest.raises(ValueError, match=r"model\.unblend\(\)"):
        m.finetune(TRAIN[:10], valid=VALID)
    with pytest.raises(ValueError, match="this model blends two"):
        m.prune(TRAIN[:10], amount=0.5)
    with pytest.raises(ValueError, match="early exit changes one network"):
        m.set_early_exit(0.01)


def test_info_shows_the_blend(blended: tuple[RegressionLM, Path]) -> None:
    from rlm.cli import app

    _, run = blended
    out = CliRunner().invoke(app, ["info", str(run)], terminal_width=200)
    assert out.exit_code == 0, out.output
    assert "blended, 0.5" in out.output
    assert "yes, 0.5 of each draw" in out.output
    assert "blend/, 0.5 of each draw" in out.output  # the checkpoint's summary names it
    full = CliRunner().invoke(app, ["info", str(run), "--json"])
    summary = json.loads(full.output)["summary"]
    assert summary["blend"] == "blend/, 0.5 of each draw" and summary["blend_params"] > 0


def test_blend_on_valid_takes_two_models_fitted_apart() -> None:
    train = TrainConfig(max_epochs=4, batch_size=8, lr=3e-3, progress=False)
    a, b = (RegressionLM(model=c, train=train).fit(TRAIN, valid=VALID) for c in CANDIDATES)
    chosen, info = blend_on_valid(a, b, VALID, samples=8)
    lead = info["primary"]
    assert chosen is (a, b)[lead]
    assert info["scores"][lead] >= info["scores"][1 - lead]  # type: ignore[operator]
    assert [t["weight"] for t in info["tried"]] == [1.0, 0.75, 0.5, 0.25]
    assert (chosen.blend is not None) == (info["weight"] < 1.0)
    assert chosen.calibration is not None  # refitted on what it now draws
    # a blend is not blended again; models of other targets are not blended at all
    attach(a, b, 0.5, VALID)
    with pytest.raises(ValueError, match="one of these is a blend"):
        blend_on_valid(a, b, VALID)
    other = RegressionLM(model=CANDIDATES[1], targets=["z"], train=train)
    other.fit([Example(e.x, {"z": e.y["y"]}) for e in TRAIN])
    with pytest.raises(ValueError, match="the member"):
        attach(b, other, 0.5, VALID)


def test_the_server_draws_a_blend_as_sample_does(blended: tuple[RegressionLM, Path]) -> None:
    import asyncio
    import copy

    from rlm.serve.batching import Job, sample_jobs

    m, _ = blended
    assert m.blend is not None
    alone = copy.copy(m)  # shares the network
    alone.blend = None
    digits, mse = (alone, m.blend.member) if m.scaler is None else (m.blend.member, alone)
    digits_first = copy.copy(digits)  # the server batches a digit decoder's jobs: mixed there
    digits_first.blend = Blend(mse, 0.5)
    loop = asyncio.new_event_loop()
    try:
        for model in (m, digits_first):
            jobs = [Job(CONFIGS[:3], 5, 1, loop.create_future()),
                    Job(CONFIGS[3:4], 5, 2, loop.create_future())]  # fmt: skip
            got = sample_jobs(model, jobs)  # type: ignore[arg-type]
            for job, draws in zip(jobs, got, strict=True):
                want = model.sample(job.inputs, job.samples, seed=job.seed)  # type: ignore[attr-defined]
                np.testing.assert_allclose(draws, want)
    finally:
        loop.close()
