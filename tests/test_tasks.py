"""One model shared by tasks: task names from inputs, per-task (Mondrian) calibration, per-task
scores and selection, and a checkpoint that keeps all of it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlm import RegressionLM
from rlm.io import Example
from rlm.nn.config import TrainConfig
from rlm.numbers.scaling import TaskScaling
from rlm.predict.calibration import IntervalCalibration, fit_calibration
from rlm.predict.tasks import (
    TaskCalibration,
    calibrated_quantiles,
    calibration_from_dict,
    fit_task_calibration,
    mean_task_spearman,
    task_ids,
)


@pytest.mark.parametrize(
    ("xs", "match"),
    [
        (["a config as text"], "needs mapping inputs"),
        ([{"system": "a"}, {"other": 1}], "no 'system' field"),
        ([{"system": None}], "'system': null"),
    ],
)
def test_inputs_without_a_task_are_refused(xs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        task_ids(xs, "system")


POOLED = fit_calibration(np.random.default_rng(0).normal(size=(20, 8, 1)), np.zeros((20, 1)))


def test_task_names_are_strings() -> None:
    values = ["x264", 7, 7.0, "7.0", 2.5, True, "v1.0"]
    assert task_ids([{"system": v} for v in values], "system") == [
        *("x264", "7", "7", "7", "2.5", "True", "v1.0")
    ]
    # a checkpoint that spelled task 7 as "7.0" still knows it
    calibration = TaskCalibration.from_dict(
        {"key": "system", "pooled": POOLED.to_dict(), "tasks": {"7.0": POOLED.to_dict()}}
    )
    assert set(calibration.tasks) == {"7"}


def two_tasks(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Task "wide": the model is overconfident (draw spread 0.3, noise 1); task "narrow": it is
    underconfident (spread 3). One pooled margin cannot serve both."""
    rng = np.random.default_rng(seed)
    tasks = ["wide" if i % 2 else "narrow" for i in range(n)]
    spread = np.array([0.3 if t == "wide" else 3.0 for t in tasks])[:, None, None]
    mu = rng.uniform(-50, 50, size=(n, 1, 1))
    y = mu[:, 0, :] + rng.normal(size=(n, 1))
    return mu + spread * rng.normal(size=(n, 64, 1)), y, tasks


def coverage_by_task(cal, draws, y, tasks, level: float) -> dict[str, float]:
    a = (1 - level) / 2
    lo, hi = calibrated_quantiles(draws, [a, 1 - a], cal, tasks)
    inside = ((y >= lo) & (y <= hi))[:, 0]
    return {t: float(inside[np.array(tasks) == t].mean()) for t in ("wide", "narrow")}


def test_mondrian_calibration_covers_each_task() -> None:
    draws, y, tasks = two_tasks(800, seed=0)
    test = two_tasks(4000, seed=1)
    pooled = coverage_by_task(fit_calibration(draws, y), *test, level=0.8)
    per_task = coverage_by_task(fit_task_calibration(draws, y, tasks, "s"), *test, level=0.8)
    assert pooled["wide"] < 0.7 and pooled["narrow"] > 0.9  # the pooled margin fits neither
    assert all(abs(c - 0.8) < 0.04 for c in per_task.values()), per_task


def test_small_and_unseen_tasks_use_the_pooled_calibration() -> None:
    draws, y, tasks = two_tasks(200, seed=0)
    tasks[0] = "rare"  # one held-out row: too few for its own margins
    cal = fit_task_calibration(draws, y, tasks, "s")
    assert set(cal.tasks) == {"wide", "narrow"}
    assert cal.for_task("rare") is cal.pooled and cal.for_task("never seen") is cal.pooled
    q = calibrated_quantiles(draws[:1], [0.1, 0.9], cal, ["never seen"])
    np.testing.assert_allclose(q, cal.pooled.quantiles(draws[:1], [0.1, 0.9]))


def test_task_calibration_round_trips_through_json() -> None:
    draws, y, tasks = two_tasks(200, seed=0)
    cal = fit_task_calibration(draws, y, tasks, "system")
    back = calibration_from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back == cal
    plain = fit_calibration(draws, y)
    assert isinstance(calibration_from_dict(plain.to_dict()), IntervalCalibration)
    with pytest.raises(ValueError, match="unknown task calibration fields"):
        TaskCalibration.from_dict({**cal.to_dict(), "extra": 1})
    with pytest.raises(ValueError, match="needs each row's task"):
        calibrated_quantiles(draws, [0.1, 0.9], cal)


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ({"a": {"y": {"spearman": 0.5}}, "b": {"y": {"spearman": 1.0}}}, 0.75),
        ({"a": {"y": {"spearman": 0.5}}, "b": {"y": {"n": 3}}}, 0.5),  # b: constant predictions
        ({"a": {}}, -np.inf),
    ],
)
def test_mean_task_spearman(report, expected: float) -> None:
    assert mean_task_spearman(report) == expected


def shared_rows(n: int, seed: int) -> list[Example]:
    """Two systems with their own options and scales: y rises with "a" on one, falls on the other."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        a = float(rng.uniform(0, 10))
        if i % 2:
            rows.append(Example(x={"system": "up", "a": a}, y={"y": 100.0 + 10 * a}))
        else:
            rows.append(Example(x={"system": "down", "b": a}, y={"y": 5.0 - 0.1 * a}))
    return rows


@pytest.fixture(scope="module")
def shared() -> RegressionLM:
    cfg = TrainConfig(max_epochs=3, batch_size=16, select="spearman", seed=0, progress=False)
    m = RegressionLM(model="tiny", train=cfg, task_key="system")
    return m.fit(shared_rows(80, seed=0), valid=shared_rows(40, seed=1))


def test_shared_model_is_calibrated_and_scored_per_task(shared: RegressionLM, tmp_path) -> None:
    assert isinstance(shared.calibration, TaskCalibration)
    assert set(shared.calibration.tasks) == {"up", "down"}
    test = shared_rows(30, seed=2)
    report = shared.evaluate(test, samples=8, per_task=True)
    assert set(report) == {"up", "down"} and report["up"]["y"]["n"] == 15
    point = shared.predict(test, samples=0)[:, 0]  # learnt per task, answered in its units
    up = np.array([e.x["system"] == "up" for e in test])
    assert point[up].min() > 50 and point[~up].max() < 10
    back = RegressionLM.load(shared.save(tmp_path / "m"))
    assert back.task_key == "system" and back.calibration == shared.calibration
    np.testing.assert_allclose(
        back.predict_interval(test, samples=8)[0], shared.predict_interval(test, samples=8)[0]
    )


def test_shared_model_errors(shared: RegressionLM) -> None:
    with pytest.raises(ValueError, match="no 'system' field"):
        shared.predict_interval([{"a": 1.0}], samples=4)
    with pytest.raises(ValueError, match="no 'system' field"):
        RegressionLM(model="tiny", task_key="system").fit([{"a": 1}, {"a": 2}], [1.0, 2.0])
    plain = RegressionLM(model="tiny", train=TrainConfig(max_epochs=1, progress=False))
    plain.fit([{"a": 1}, {"a": 2}], [1.0, 2.0])
    with pytest.raises(ValueError, match="per_task=True needs"):
        plain.evaluate([{"a": 1}, {"a": 2}], [1.0, 2.0], samples=2, per_task=True)


def test_task_scaling_round_trips_and_names_unseen_tasks() -> None:
    rows = [{"t": 1.0}, {"t": 100.0}, {"t": 10.0}, {"t": 40.0}, {"t": 42.0}, {"t": 44.0}]
    tasks = ["log", "log", "log", "linear", "linear", "linear"]
    s = TaskScaling.fit(rows, ["t"], tasks, "system")
    assert s.scalers["log"].log == (True,) and s.scalers["linear"].log == (False,)
    z = s.transform(rows, tasks)
    for task in ("log", "linear"):  # each task on its own unit scale
        v = np.array([r["t"] for r, t in zip(z, tasks, strict=True) if t == task])
        np.testing.assert_allclose([v.mean(), v.std()], [0.0, 1.0], atol=1e-9)
    draws = np.array([[[r["t"]]] for r in z])  # (6, 1, 1)
    np.testing.assert_allclose(s.inverse(draws, tasks)[:, 0, 0], [r["t"] for r in rows])
    assert TaskScaling.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    with pytest.raises(ValueError, match=r"task 'new' .* was not in the training data"):
        s.inverse(draws[:1], ["new"])


def test_an_objective_a_task_lacks_uses_the_pooled_scale() -> None:
    rows = [{"a": 1.0, "b": 5.0}, {"a": 3.0, "b": 7.0}, {"a": 2.0}, {"a": 4.0}]
    s = TaskScaling.fit(rows, ["a", "b"], ["x", "x", "y", "y"], "k")
    assert s.scalers["y"].mean[1] == s.scalers["x"].mean[1] == 6.0
    assert s.transform(rows[2:3], ["y"]) == [{"a": -1.0}]  # b stays absent


def test_server_answers_a_shared_model_per_task(shared: RegressionLM) -> None:
    from fastapi.testclient import TestClient

    from rlm.serve import ServeConfig, create_app

    test = shared_rows(6, seed=3)
    xs = [e.x for e in test]
    with TestClient(create_app({"m": shared}, ServeConfig())) as c:
        r = c.post("/predict", json={"inputs": xs, "samples": 8, "seed": 1})
        assert r.status_code == 200, r.text
        bad = c.post("/predict", json={"inputs": [{"a": 1.0}], "samples": 8})
    assert bad.status_code == 422 and "no 'system' field" in bad.json()["detail"]
    pred = shared.distribution(xs, samples=8, seed=1)  # same draws, same per-task calibration
    got = [p["objectives"][0] for p in r.json()["predictions"]]
    np.testing.assert_allclose([g["point"] for g in got], pred.point[:, 0], rtol=1e-6)
    np.testing.assert_allclose([g["lower"] for g in got], pred.lower[:, 0], rtol=1e-6)


def test_finetune_specialises_a_copy(shared: RegressionLM) -> None:
    import torch

    assert shared.net is not None
    before = {k: v.clone() for k, v in shared.net.state_dict().items()}
    up = [e for e in shared_rows(80, seed=4) if e.x["system"] == "up"]
    cfg = TrainConfig(max_epochs=2, batch_size=8, select="spearman", seed=0, progress=False)
    tuned = shared.finetune(up[:30], valid=up[30:], train=cfg)
    assert tuned is not shared and tuned.train_config == cfg
    assert all(torch.equal(before[k], v) for k, v in shared.net.state_dict().items())
    assert tuned.net is not None and any(
        not torch.equal(before[k], v) for k, v in tuned.net.state_dict().items()
    )
    assert isinstance(tuned.calibration, TaskCalibration) and set(tuned.calibration.tasks) == {"up"}
    assert tuned.predict(up[:3], samples=4).shape == (3, 1)
    with pytest.raises(ValueError, match="not fitted"):
        RegressionLM(model="tiny").finetune(up, calibrate=False)


def test_server_refuses_an_unseen_task_before_batching(shared: RegressionLM) -> None:
    from fastapi.testclient import TestClient

    from rlm.serve import ServeConfig, create_app

    with TestClient(create_app({"m": shared}, ServeConfig())) as c:
        r = c.post("/predict", json={"inputs": [{"system": "sideways", "a": 1.0}], "samples": 4})
    assert r.status_code == 422 and "'sideways'" in r.json()["detail"]


def test_a_bad_target_names_its_row_and_task() -> None:
    s = TaskScaling.fit([{"t": 1.0}, {"t": 100.0}], ["t"], ["a", "a"], "k")
    with pytest.raises(ValueError, match=r"row 1 \(task 'a'\).*log space"):
        s.transform([{"t": 5.0}, {"t": -1.0}], ["a", "a"])
