"""Transfer: pretraining on a mixture of tasks, and fine-tuning that grows a model for a new task,
new option keys and new targets while keeping what it learnt (``rlm.transfer``, ``rlm.nn.grow``,
``rlm.nn.adapters``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlm import RegressionLM
from rlm.inputs.fields import VALUE_SPECIALS, FieldEncoder
from rlm.io import Example
from rlm.nn.batches import length_batches
from rlm.nn.config import TrainConfig, preset
from rlm.nn.grow import grow_objectives, grown_rows
from rlm.numbers.scaling import TaskScaling
from rlm.transfer import extend_model, mixture, row_weights

QUICK = TrainConfig(max_epochs=3, batch_size=16, seed=0, progress=False)


def system_rows(n: int, keys: tuple[str, ...], seed: int) -> list[Example]:
    """A configurable system: boolean options and a numeric one; y grows with the options on."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        x = {k: bool(rng.integers(2)) for k in keys[:-1]}
        x[keys[-1]] = int(rng.integers(1, 9))
        y = 10.0 + sum(x[k] for k in keys[:-1]) * 3.0 + x[keys[-1]]
        rows.append(Example(x=x, y={"y": y * (1 + 0.01 * rng.normal())}, id=str(i)))
    return rows


A, B, NEW = ("a1", "a2", "a3"), ("b1", "b2", "bn"), ("n1", "n2", "n3", "nn")


@pytest.fixture(scope="module")
def pretrained() -> RegressionLM:
    model = RegressionLM(model=preset("tiny", head="mse"), task_key="system", train=QUICK)
    datasets = {"A": system_rows(60, A, 0), "B": system_rows(60, B, 1)}
    valid = {"A": system_rows(20, A, 2), "B": system_rows(20, B, 3)}
    return model.pretrain(datasets, weights={"A": 1, "B": 3}, valid=valid)


# -- the mixture ------------------------------------------------------------------------------
def test_mixture_names_each_rows_task() -> None:
    rows = mixture({"A": system_rows(2, A, 0), "B": system_rows(1, B, 0)}, "system")
    assert [e.x["system"] for e in rows] == ["A", "A", "B"]
    assert rows[0].x == {"system": "A", **system_rows(2, A, 0)[0].x}
    # a row that names its task already keeps it, however it spells it (7 names task "7")
    (row,) = mixture({"7": [Example(x={"system": 7, "a": 1}, y={"y": 1.0})]}, "system")
    assert row.x == {"system": 7, "a": 1}


def test_a_dataset_without_the_targets_is_refused() -> None:
    from rlm.transfer import check_targets

    other = [Example(x={"a": 1}, y={"perf": 1.0})]
    with pytest.raises(ValueError, match=r"dataset 'B' has none of the model's targets \['y'\]"):
        check_targets({"A": system_rows(2, A, 0), "B": other}, ["y"])
    check_targets({"B": other}, None)  # targets taken from the rows: nothing to check


@pytest.mark.parametrize(
    ("datasets", "key", "match"),
    [
        ({}, "system", "no datasets"),
        ({"A": []}, "system", "has no rows"),
        ({"A": [Example(x="text", y={"y": 1.0})]}, "system", "pass mappings"),
        ({"A": [Example(x={"system": "B"}, y={"y": 1.0})]}, "system", "names task 'B'"),
        ({"A": system_rows(1, A, 0)}, None, "task_key='task'"),
    ],
)
def test_mixture_refuses(datasets, key, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        mixture(datasets, key)


@pytest.mark.parametrize(
    ("tasks", "weights", "want"),
    [
        (["a", "a", "b"], None, None),
        (["a", "a", "b"], {"a": 1, "b": 1}, [0.25, 0.25, 0.5]),
        (["a", "b", "b", "b"], {"a": 3, "b": 1}, [0.75, 1 / 12, 1 / 12, 1 / 12]),
        (["a", "b"], {"a": 1, "b": 0}, [1.0, 0.0]),
    ],
)
def test_row_weights(tasks, weights, want) -> None:
    got = row_weights(tasks, weights)
    assert (got is None) if want is None else np.allclose(got, want)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ({"a": 1}, r"no weight for tasks \['b'\]"),
        ({"a": 1, "b": 1, "c": 1}, r"unknown tasks \['c'\]"),
        ({"a": -1, "b": 1}, "finite, >= 0"),
        ({"a": 0, "b": 0}, "not all 0"),
        ({"a": float("nan"), "b": 1}, "finite"),
    ],
)
def test_row_weights_refuse(weights, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        row_weights(["a", "b"], weights)


def test_weighted_epochs_draw_tasks_by_weight() -> None:
    p = row_weights(["a"] * 10 + ["b"] * 90, {"a": 1, "b": 1})
    rng = np.random.default_rng(0)
    drawn = np.concatenate(
        [np.concatenate(length_batches([1] * 100, 8, rng, p)) for _ in range(50)]
    )
    assert abs((drawn < 10).mean() - 0.5) < 0.03  # 10 rows drawn as often as the other 90


def test_pretrain_needs_a_task_key() -> None:
    with pytest.raises(ValueError, match="task key"):
        RegressionLM(model="tiny", train=QUICK).pretrain({"A": system_rows(4, A, 0)})


def test_pretrained_model_scales_each_task(pretrained: RegressionLM) -> None:
    assert pretrained.task_scaling is not None
    assert set(pretrained.task_scaling.scalers) == {"A", "B"}
    assert pretrained.predict([{"system": "A", **system_rows(1, A, 5)[0].x}]).shape == (1, 1)


# -- growing the field encoder and the network ------------------------------------------------
def test_field_encoder_extend_keeps_known_ids() -> None:
    old = FieldEncoder.fit([{"a": True, "s": "x"}, {"a": False, "s": "y z"}])
    grown, source = old.extend([{"a": True, "b": 3, "c": "new"}, {"b": 4, "c": "new"}])
    assert grown.keys == ["a", "s", "b", "c"]  # known first, then the new ones, sorted
    assert grown.categories == [*old.categories, "b=3", "b=4", "c=new"]
    assert set(grown.stats) == {"b"} and grown.stats["b"].mean == 3.5
    n_cat = len(VALUE_SPECIALS) + len(old.categories)
    assert list(source[:n_cat]) == list(range(n_cat))  # specials and known categories
    assert list(source[n_cat : n_cat + 3]) == [-1, -1, -1]  # the new categories
    assert list(source[n_cat + 3 :]) == list(range(n_cat, old.vocab_size))  # pieces moved up
    x = {"a": True, "s": "y z"}  # a known row encodes to the same ids, pieces remapped
    before, after = old.encode(x), grown.encode(x)
    assert np.array_equal(source[after.ids], before.ids) and np.array_equal(after.keys, before.keys)


def test_grown_rows_copy_known_and_take_fresh() -> None:
    old = torch.nn.Embedding(3, 2)
    fresh = torch.tensor([[9.0, 9.0]])
    new = grown_rows(old, np.array([2, -1, 0]), fresh)
    assert torch.equal(new.weight[0], old.weight[2]) and torch.equal(new.weight[2], old.weight[0])
    assert torch.equal(new.weight[1], fresh[0])
    with pytest.raises(ValueError, match="fresh rows"):
        grown_rows(old, np.array([-1, -1]), fresh)
    with pytest.raises(ValueError, match="source ids"):
        grown_rows(old, np.array([3]), fresh[:0])


def test_task_scaling_extend_keeps_known_tasks() -> None:
    rows = [{"y": 1.0}, {"y": 3.0}, {"y": 100.0}, {"y": 300.0}]
    known = TaskScaling.fit(rows[:2], ["y"], ["a", "a"], "system")
    grown = known.extend(rows, ["a", "a", "b", "b"])
    assert grown.scalers["a"] == known.scalers["a"] and set(grown.scalers) == {"a", "b"}
    assert grown.scalers["b"].mean == (200.0,)
    assert known.extend(rows[:2], ["a", "a"]) is known
    # an objective the new task's rows lack takes the known tasks' scale
    two = TaskScaling.fit([{"y": 1.0, "z": 5.0}, {"y": 3.0, "z": 7.0}], ["y", "z"], ["a"] * 2, "s")
    grown = two.extend([{"y": 10.0}, {"y": 30.0}], ["b", "b"])
    assert grown.scalers["b"].mean == (20.0, 6.0) and grown.scalers["b"].std[1] == 1.0


# -- fine-tuning ------------------------------------------------------------------------------
def tagged(rows: list[Example], system: str) -> list[Example]:
    return mixture({system: rows}, "system")


def test_finetune_grows_a_copy_for_a_new_system(pretrained: RegressionLM, tmp_path) -> None:
    assert pretrained.fields is not None and pretrained.net is not None
    keys_before = pretrained.fields.n_keys
    rows = tagged(system_rows(24, NEW, 7), "N")
    with pytest.raises(ValueError, match=r"'N' .* was not in the training data"):
        pretrained.predict([rows[0].x])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fine-tuning knows the new keys: no unknown-key warning
        tuned = pretrained.finetune(rows[:16], valid=rows[16:], train=QUICK)
        point = tuned.predict([e.x for e in rows[:4]], samples=4)
    assert point.shape == (4, 1) and np.isfinite(point).all()
    assert pretrained.fields.n_keys == keys_before  # the pretrained model is unchanged
    assert tuned.fields is not None and tuned.fields.n_keys == keys_before + len(NEW)
    assert tuned.task_scaling is not None and "N" in tuned.task_scaling.scalers
    tuned.save(tmp_path / "tuned")
    again = RegressionLM.load(tmp_path / "tuned")
    np.testing.assert_allclose(again.predict([e.x for e in rows[:4]], samples=4), point)


def test_growing_keeps_known_predictions(pretrained: RegressionLM) -> None:
    """Growth alone (before any training) leaves the known tasks' predictions as they were."""
    tuned = pretrained._copy()
    added = extend_model(tuned, tagged(system_rows(8, NEW, 7), "N"))
    assert added["tasks"] == ["N"] and added["keys"] == sorted(NEW) and added["categories"] > 0
    xs = [e.x for e in tagged(system_rows(6, A, 9), "A")]
    np.testing.assert_allclose(tuned.predict(xs), pretrained.predict(xs), rtol=1e-6)


@pytest.mark.parametrize("head", ["digits", "mse", "gaussian"])
def test_finetune_adds_a_target(head: str) -> None:
    """A new objective is written after the known ones; growth keeps the known ones' outputs."""
    rng = np.random.default_rng(0)
    xs = [f"cell {int(v)}" for v in rng.integers(0, 30, size=60)]
    value = np.array([int(x.split()[1]) for x in xs], dtype=float)
    rows = [Example(x=x, y={"acc": 50 + v}) for x, v in zip(xs, value, strict=True)]
    model = RegressionLM(model=preset("tiny", head=head), train=QUICK).fit(rows, calibrate=False)
    grown = model._copy()
    new = [Example(x=x, y={"acc10": 80 + v / 2}) for x, v in zip(xs[:20], value[:20], strict=True)]
    assert extend_model(grown, new)["targets"] == ["acc10"]
    assert grown.targets == ("acc", "acc10") and grown.codec is not None
    np.testing.assert_allclose(  # samples=0: greedy digits, or the value head's mean
        grown.predict(xs[:5], samples=0)[:, 0], model.predict(xs[:5], samples=0)[:, 0], rtol=1e-5
    )
    tuned = model.finetune(new, train=QUICK, calibrate=False)
    assert tuned.predict(xs[:5], samples=4).shape == (5, 2) and model.targets == ("acc",)


def test_new_targets_are_refused_with_a_task_key(pretrained: RegressionLM) -> None:
    rows = [
        Example(x=e.x, y={"other": 1.0 + i})
        for i, e in enumerate(tagged(system_rows(4, A, 0), "A"))
    ]
    with pytest.raises(ValueError, match="scaled per task"):
        pretrained.finetune(rows, train=QUICK)


def test_grow_objectives_checks_sizes() -> None:
    from rlm.nn.model import RegressionTransformer

    net = RegressionTransformer(preset("tiny", head="mse"), 10, 5, 4, objectives=2)
    with pytest.raises(ValueError, match="below the 2"):
        grow_objectives(net, 1, 4, (0, 4))


def test_lora_finetune_merges_into_plain_weights(pretrained: RegressionLM) -> None:
    pytest.importorskip("peft")
    from rlm.nn.config import LoraConfig

    rows = tagged(system_rows(24, NEW, 7), "N")
    tuned = pretrained.finetune(rows[:16], valid=rows[16:], train=QUICK, lora=LoraConfig(rank=2))
    assert tuned.net is not None and pretrained.net is not None
    names = set(tuned.net.state_dict())
    assert not any("lora" in n or "base_layer" in n for n in names)  # merged: plain Linear layers
    assert all(p.requires_grad for p in tuned.net.parameters())
    frozen = "encoder.0.attn.qkv.weight"  # changed only through the merged low-rank update
    delta = tuned.net.state_dict()[frozen] - pretrained.net.state_dict()[frozen]
    assert 0 < torch.linalg.matrix_rank(delta) <= 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"rank": 0}, "rank=0"), ({"alpha": 0.0}, "alpha=0.0"), ({"dropout": 1.0}, "dropout=1.0")],
)
def test_lora_config_refuses(kwargs, match: str) -> None:
    from rlm.nn.config import LoraConfig

    with pytest.raises(ValueError, match=match):
        LoraConfig(**kwargs)


# -- the command line -------------------------------------------------------------------------
def write_system(path, rows: list[Example], target: str) -> None:
    import json

    with open(path, "w") as f:
        for i, e in enumerate(rows):
            split = "valid" if i % 4 == 0 else "train"
            f.write(
                json.dumps({"id": str(i), "x": e.x, "y": {target: e.y["y"]}, "split": split}) + "\n"
            )


def test_cli_pretrain_then_finetune(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from rlm.cli import app

    runner = CliRunner(env={"COLUMNS": "400"})
    write_system(tmp_path / "a.jsonl", system_rows(40, A, 0), "perf")
    write_system(tmp_path / "b.jsonl", system_rows(40, B, 1), "time")
    write_system(tmp_path / "n.jsonl", system_rows(24, NEW, 2), "psnr")
    named_a = [Example({"system": "A", **e.x}, e.y) for e in system_rows(8, NEW, 2)]
    write_system(tmp_path / "named_a.jsonl", named_a, "psnr")  # rows that name their task
    manifest = {
        "datasets": [
            {"name": "A", "path": "a.jsonl", "target": "perf", "weight": 1},
            {"name": "B", "path": "b.jsonl", "target": "time", "weight": 2},
        ]
    }
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    dup = {"datasets": [manifest["datasets"][0], manifest["datasets"][0]]}
    (tmp_path / "dup.json").write_text(json.dumps(dup))
    pre, tuned = tmp_path / "pre", tmp_path / "tuned"
    args = ["--task-key", "system", "--preset", "tiny", "--epochs", "2", "--no-progress"]
    r = runner.invoke(app, ["pretrain", str(tmp_path / "m.json"), "--out", str(pre), *args])
    assert r.exit_code == 0, r.output
    assert "pretraining on 2 tasks" in r.output
    r = runner.invoke(
        app,
        ["finetune", str(pre), str(tmp_path / "n.jsonl"), "--out", str(tuned), "--task", "N",
         "-t", "psnr=y", "--epochs", "2"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    model = RegressionLM.load(tuned)
    assert model.task_scaling is not None and set(model.task_scaling.scalers) == {"A", "B", "N"}
    assert model.predict([{"system": "N", **system_rows(1, NEW, 3)[0].x}]).shape == (1, 1)
    # the new system's file, scored as fine-tuned: its psnr is the model's y, its rows task N
    score = ["eval", str(tuned), str(tmp_path / "n.jsonl"), "--split", "all", "--json"]
    r = runner.invoke(app, [*score, "--task", "N", "-t", "psnr=y"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["per_task"]["N"]["y"]["n"] == 24
    for bad, match in [
        ([*score, "--task", "N", "-t", "psnr=zzz"], "the model writes ['y'], not ['zzz']"),
        ([*score, "-t", "psnr=y"], "has no 'system'"),
        (["eval", str(tuned), str(tmp_path / "named_a.jsonl"), "--split", "all", "--task", "N",
          "-t", "psnr=y"], "names task 'A' under 'system', not 'N'"),
        (["pretrain", str(tmp_path / "a.jsonl"), str(tmp_path / "a.jsonl"), "--out", str(tmp_path / "p3")],
         "two datasets named"),
        (["pretrain", f"A={tmp_path / 'a.jsonl'}", "--weight", "A=x", "--out", str(tmp_path / "p2")],
         "--weight 'A=x'"),
        (["finetune", str(pre), str(tmp_path / "n.jsonl"), "--out", str(pre)], "--out is the"),
        (["pretrain", str(tmp_path / "a.jsonl"), "--weight", "a", "--out", str(tmp_path / "p4")],
         "--weight 'a': use NAME=NUMBER"),
        (["pretrain", str(tmp_path / "dup.json"), "--out", str(tmp_path / "p5")],
         "two datasets named 'A'"),
        (["pretrain", str(tmp_path / "a.jsonl"), "-t", "nope", "--out", str(tmp_path / "p6")],
         "nope"),
        (["finetune", str(pre), str(tmp_path / "n.jsonl"), "--out", str(tmp_path / "t2"),
          "-t", "psnr=y", "-t", "other=y"], "each learnt as its own AS"),
    ]:  # fmt: skip
        r = runner.invoke(app, bad)
        assert r.exit_code == 2 and match in r.output, r.output


def test_resume_fingerprint_names_the_mixture(pretrained: RegressionLM) -> None:
    """A run resumed with other task weights draws other batches: it must be refused."""
    from rlm.persist import run_fingerprint

    rows = mixture({"A": system_rows(4, A, 0), "B": system_rows(4, B, 1)}, "system")
    tasks = [e.x["system"] for e in rows]
    one, other = row_weights(tasks, {"A": 1, "B": 1}), row_weights(tasks, {"A": 1, "B": 3})
    base = run_fingerprint(pretrained, rows, None)
    assert run_fingerprint(pretrained, rows, None, one) not in (
        base,
        run_fingerprint(pretrained, rows, None, other),
    )
