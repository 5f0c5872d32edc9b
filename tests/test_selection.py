"""Model selection on the valid rows (``rlm.selection``): which candidates ``model="auto"`` fits,
how the time budget is shared, what the chosen model records, and resuming a selection."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rlm import RegressionLM, TrainConfig, selection
from rlm.io import Example
from rlm.nn.config import auto_candidates, preset
from rlm.selection import MIN_SHARE_S, budget_share, candidate_configs, candidate_name

CONFIGS = [{"size": s, "mode": ["a", "b"][s % 2]} for s in range(1, 61)]
TARGETS = [float(x["size"] * (3 if x["mode"] == "a" else 1)) for x in CONFIGS]
TRAIN = [Example(x, {"y": t}) for x, t in zip(CONFIGS[:40], TARGETS[:40], strict=True)]
VALID = [Example(x, {"y": t}) for x, t in zip(CONFIGS[40:], TARGETS[40:], strict=True)]
CANDIDATES = [preset("tiny"), preset("tiny", head="mse", members=2)]


SLOTS, DIGITS = ("mse", 4, "slots"), ("digits", 1, "attention")


@pytest.mark.parametrize(
    ("kind", "rows", "validated", "models"),
    [
        ("fields", 499, True, [("mse", 4, "attention")]),  # few rows: no choice
        ("fields", 500, True, [SLOTS, DIGITS]),
        ("fields", 5000, True, [SLOTS, DIGITS]),
        ("fields", 1000, False, [DIGITS]),  # nothing to choose on
        ("text", 499, True, [("mse", 4, "attention")]),
        ("text", 1000, True, [("mse", 4, "attention"), DIGITS]),
        ("text", 1000, False, [DIGITS]),
        ("backbone", 1000, True, [DIGITS]),  # the frozen encoder's fit is not chosen for
    ],
)
def test_auto_candidates_table(kind: str, rows: int, validated: bool, models: list) -> None:
    got = auto_candidates(kind, rows, validated, max_input_len=256)
    assert [(c.head, c.members, c.mixer) for c in got] == models


@pytest.mark.parametrize(
    ("budget", "spent", "left", "share"),
    [(120.0, 0.0, 2, 60.0), (120.0, 30.0, 1, 90.0), (120.0, 70.0, 1, 50.0),
     (90.0, 30.0, 2, 30.0), (120.0, 130.0, 1, MIN_SHARE_S)],
)  # fmt: skip
def test_budget_shares_follow_each_other(
    budget: float, spent: float, left: int, share: float
) -> None:
    assert budget_share(budget, spent, left) == share


@pytest.mark.parametrize(
    ("rows", "valid", "inputs", "budget", "n"),
    [
        (500, 10, "fields", None, 2),
        (499, 10, "fields", None, 1),
        (500, 9, "fields", None, 1),
        (500, 10, "text", None, 2),
        (499, 10, "text", None, 1),
        (500, 10, "fields", 120.0, 2),
    ],
)
def test_auto_chooses_only_with_enough_rows_and_valid_rows(
    rows: int, valid: int, inputs: str, budget: float | None, n: int
) -> None:
    ex = [Example({"a": i % 7, "b": i}, {"y": float(i)}) for i in range(rows + valid)]
    m = RegressionLM(inputs=inputs, train=TrainConfig(time_budget_s=budget))  # type: ignore[arg-type]
    assert len(candidate_configs(m, ex[:rows], ex[rows:])) == n


@pytest.mark.parametrize(
    ("model", "match"),
    [
        ([], "non-empty list"),
        (None, "non-empty list"),
        (["tiny", "huge"], "unknown preset"),
        (["tiny", {"d_model": 8}], "model list entry"),
        (["auto", "tiny"], "pass it alone"),
    ],
)
def test_bad_model_lists_are_refused(model: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RegressionLM(model=model)  # type: ignore[arg-type]


def test_candidate_list_needs_valid_rows() -> None:
    m = RegressionLM(model=CANDIDATES, train=TrainConfig(max_epochs=1, progress=False))
    with pytest.raises(ValueError, match="needs validation rows"):
        m.fit(TRAIN)
    assert m.net is None  # refused before any training


def test_selection_keeps_the_best_on_valid_and_records_every_candidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = TrainConfig(max_epochs=8, batch_size=8, lr=3e-3, time_budget_s=60.0, progress=False)
    m = RegressionLM(model=CANDIDATES, train=train)
    m.fit(TRAIN, valid=VALID, run_dir=tmp_path / "run")
    summary = m.training_summary
    assert summary is not None
    sel = summary["selection"]
    names = [candidate_name(i, c) for i, c in enumerate(CANDIDATES)]
    assert [c["name"] for c in sel["candidates"]] == names == ["0-digits", "1-mse2"]
    scores = [c["valid_spearman"] for c in sel["candidates"]]
    chosen = int(np.argmax(scores))
    assert sel["chosen"] == names[chosen]
    assert m.model_config == CANDIDATES[chosen]
    assert sel["budget_s"] == 60.0
    first, second = sel["candidates"]
    assert first["budget_s"] == 30.0  # half; the second gets what the first left
    assert second["budget_s"] == pytest.approx(max(60.0 - first["seconds"], MIN_SHARE_S))
    assert m.train_config == train  # the user's options, not a candidate's share
    # the runner-up was tried as a blend, kept only where it scored better (tests/test_blend.py)
    blend = sel["blend"]
    assert [t["weight"] for t in blend["tried"]] == [1.0, 0.75, 0.5, 0.25]
    assert (m.blend is not None) == (blend["weight"] < 1.0) == (blend["member"] is not None)
    assert m.candidates == tuple(CANDIDATES)  # a later fit chooses again
    assert m.predict(CONFIGS[:3], samples=4).shape == (3, 1)
    # every candidate ran in its own directory; the chosen model is the run's
    for name in names:
        assert (tmp_path / "run" / "candidates" / name / "model.safetensors").is_file()
    loaded = RegressionLM.load(tmp_path / "run")
    assert loaded.model_config == m.model_config
    assert loaded.training_summary["selection"] == sel  # type: ignore[index]
    np.testing.assert_array_equal(
        loaded.sample(CONFIGS[:3], 4, seed=1), m.sample(CONFIGS[:3], 4, seed=1)
    )
    # resuming a finished selection loads its candidates instead of training them again
    monkeypatch.setattr(RegressionLM, "_train", lambda *a, **k: pytest.fail("trained again"))
    again = RegressionLM(model=CANDIDATES, train=train)
    again.fit(TRAIN, valid=VALID, run_dir=tmp_path / "run", resume=True)
    assert again.training_summary["selection"]["chosen"] == sel["chosen"]  # type: ignore[index]
    monkeypatch.undo()
    # a selection stopped before its second candidate: the first is loaded, the second trained
    shutil.rmtree(tmp_path / "run" / "candidates" / "1-mse2")
    (tmp_path / "run" / "config.json").unlink()
    again = RegressionLM(model=CANDIDATES, train=train)
    again.fit(TRAIN, valid=VALID, run_dir=tmp_path / "run", resume=True)
    assert (tmp_path / "run" / "candidates" / "1-mse2" / "candidate.json").is_file()
    # a finished candidate is not taken for rows it was not trained on
    with pytest.raises(ValueError, match="other rows or options"):
        RegressionLM(model=CANDIDATES, train=train).fit(
            TRAIN[:-1], valid=VALID, run_dir=tmp_path / "run", resume=True
        )
    # rlm info shows the choice
    from rlm.cli import app

    out = CliRunner().invoke(app, ["info", str(tmp_path / "run")])
    assert out.exit_code == 0, out.output
    assert "model selection on the valid rows" in out.output and "1-mse2" in out.output


def test_auto_fits_both_candidates_each_reading_numbers_its_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 500 rows: auto's slots-or-digits pair, each twin settling numbers="auto" for its mixer
    ex = [Example({"a": i % 7, "b": i / 3}, {"y": float(i % 7 + i / 300)}) for i in range(520)]
    seen: list[tuple[str, str]] = []
    score = selection._score

    def spy(twin: RegressionLM, valid_ex: list[Example], draws: np.ndarray) -> float:
        assert twin.fields is not None
        seen.append((twin.model_config.mixer, twin.fields.config.numbers))
        return score(twin, valid_ex, draws)

    monkeypatch.setattr(selection, "_score", spy)
    m = RegressionLM(train=TrainConfig(max_epochs=1, batch_size=64, progress=False))
    m.fit(ex[:500], valid=ex[500:])
    assert seen == [("slots", "value"), ("attention", "both")]
    assert m.field_config.numbers == "auto"  # the user's option stays as given
    summary = m.training_summary
    assert summary is not None and len(summary["selection"]["candidates"]) == 2
