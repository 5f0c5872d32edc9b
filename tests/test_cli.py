"""The ``rlm`` command line, end to end, on ~200 bundled NAS-Bench-201 rows and a tiny model.

One tiny model per data layout is trained once per module (seconds) and shared by the predict,
eval and info tests; sampling uses few samples to keep the whole file fast on 2 CPU cores.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from rlm.cli import app
from rlm.cli.demo import DEMO_PATTERN
from rlm.cli.options import Preset
from rlm.io import load_demo, write_csv, write_jsonl
from rlm.nn.config import PRESETS

TARGET = "cifar10_test_acc"
FAST = ["--samples", "4"]
runner = CliRunner()


def run(*args: str | Path, input: str | None = None) -> Result:
    return runner.invoke(app, [str(a) for a in args], input=input)


def text(result: Result) -> str:
    """Output with rich's panel borders and line wrapping removed, for substring checks."""
    return " ".join(result.output.replace("│", " ").split())


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 200 cells as nested JSONL (shared format), flat CSV and an unlabeled input file."""
    d = tmp_path_factory.mktemp("data")
    rows = load_demo("nas201")
    pick = (
        [e for e in rows if e.split == "train"][:140]
        + [e for e in rows if e.split == "valid"][:30]
        + [e for e in rows if e.split == "test"][:30]
    )
    write_jsonl(d / "nested.jsonl", [e.to_record() for e in pick])
    write_csv(d / "flat.csv", [{"cell": e.x, "acc": e.y[TARGET], "split": e.split} for e in pick])
    write_jsonl(d / "inputs.jsonl", [{"id": e.id, "x": e.x} for e in pick[-25:]])
    return {"nested": d / "nested.jsonl", "flat": d / "flat.csv", "inputs": d / "inputs.jsonl"}


def _train(data_path: Path, out: Path, *extra: str) -> Result:
    return run(
        "train", data_path, "--out", out, "--preset", "tiny", "--epochs", "2",
        "--batch-size", "32", "--no-progress", *FAST, *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "nested"
    result = ok(_train(data["nested"], out, "--target", TARGET, "--pattern", DEMO_PATTERN))
    assert "training run" in result.output and "Spearman" in result.output
    return out


@pytest.fixture(scope="module")
def flat_dir(data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "flat"
    ok(_train(data["flat"], out, "--target", "acc", "--x-column", "cell"))
    return out


# -- train ------------------------------------------------------------------------------------


def test_train_writes_checkpoint_metrics_and_layout(model_dir: Path) -> None:
    for name in ("config.json", "tokenizer.json", "model.safetensors", "metrics.jsonl", "cli.json"):
        assert (model_dir / name).is_file(), name
    epochs = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert all("valid_loss" in r for r in epochs)  # the file's 'valid' split validated
    meta = json.loads((model_dir / "config.json").read_text())
    assert meta["targets"]["names"] == [TARGET]
    assert json.loads((model_dir / "cli.json").read_text())["train_rows"] == 140


def test_train_clock_schedule_flag_reaches_the_saved_config(
    data: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "steps"
    ok(_train(data["nested"], out, "--target", TARGET, "--time-budget", "600",
              "--no-clock-schedule"))  # fmt: skip
    train = json.loads((out / "config.json").read_text())["train"]
    assert train["time_budget_s"] == 600 and train["clock_schedule"] is False


def test_train_refuses_to_mix_runs_without_overwrite(
    data: dict[str, Path], model_dir: Path
) -> None:
    result = _train(data["nested"], model_dir, "--target", TARGET)
    assert result.exit_code == 2
    assert "--overwrite" in text(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "nope"], "no row has target(s) ['nope']"),
        (["--scheme", "decimal"], "'decimal' is not one of"),
        (["--train-split", "everything"], "no rows of split 'everything'"),
        (["--target", TARGET, "--pattern", "("], "not a valid regex"),
    ],
)
def test_train_bad_options_fail_cleanly(
    data: dict[str, Path], tmp_path: Path, args: list[str], message: str
) -> None:
    result = _train(data["nested"], tmp_path / "run", *args)
    assert result.exit_code == 2, result.output
    assert message in text(result)
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_train_flat_file_needs_target_columns(data: dict[str, Path], tmp_path: Path) -> None:
    result = _train(data["flat"], tmp_path / "run")
    assert result.exit_code == 2
    assert "--target" in text(result)
    result = _train(data["flat"], tmp_path / "run", "--target", "accuracy")
    assert "no target column(s) ['accuracy']" in text(result)
    assert "'acc'" in text(result)  # names the columns that do exist


# -- predict ----------------------------------------------------------------------------------


def test_predict_literal_inputs_prints_a_table(model_dir: Path) -> None:
    cell = load_demo("nas201", "test")[0].x
    result = ok(run("predict", model_dir, cell, "--samples", "8", "--level", "0.9"))
    assert TARGET in result.output and "90% interval" in result.output


def test_predict_file_jsonl_streams_in_chunks(model_dir: Path, data: dict[str, Path]) -> None:
    dest = model_dir.parent / "pred.jsonl"
    ok(
        run(
            "predict",
            model_dir,
            "--file",
            data["inputs"],
            "--output",
            dest,
            "--chunk-size",
            "7",
            *FAST,
        )
    )
    rows = [json.loads(line) for line in dest.read_text().splitlines()]
    source = [json.loads(line) for line in data["inputs"].read_text().splitlines()]
    assert len(rows) == len(source) == 25
    for row, src in zip(rows, source, strict=True):
        assert row["id"] == src["id"] and row["x"] == src["x"]  # input columns kept, in order
        assert row[f"{TARGET}_lo"] <= row[f"{TARGET}_pred"] <= row[f"{TARGET}_hi"]


def test_predict_csv_uses_the_trained_layout(flat_dir: Path, data: dict[str, Path]) -> None:
    # no --x-column here: `rlm train` saved it in cli.json
    dest = flat_dir.parent / "pred.csv"
    ok(run("predict", flat_dir, "--file", data["flat"], "--output", dest, *FAST))
    with dest.open() as f:
        rows = list(csv.DictReader(f))
    with data["flat"].open() as f:
        source = list(csv.DictReader(f))
    assert list(rows[0]) == ["cell", "acc", "split", "acc_pred", "acc_lo", "acc_hi"]
    assert [r["acc"] for r in rows] == [r["acc"] for r in source]  # cells written back verbatim
    assert all(float(r["acc_lo"]) <= float(r["acc_pred"]) <= float(r["acc_hi"]) for r in rows)


def test_predict_stdin_to_stdout(model_dir: Path, data: dict[str, Path]) -> None:
    lines = data["inputs"].read_text().splitlines()[:3]
    result = ok(
        run("predict", model_dir, "--file", "-", "--output", "-", *FAST, input="\n".join(lines))
    )
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in out] == [json.loads(line)["id"] for line in lines]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give INPUT arguments or --file PATH"),
        (["a", "--file", "x.jsonl"], "give INPUT arguments or --file PATH"),
        (["{not json"], "looks like a JSON object"),
        (["a", "--level", "80"], "--level 80.0: use a fraction"),
        (["--file", "missing.jsonl"], "does not exist"),
        (["a", "--output", "out.txt"], "unknown file type"),
    ],
)
def test_predict_bad_inputs_fail_cleanly(model_dir: Path, args: list[str], message: str) -> None:
    result = run("predict", model_dir, *args)
    assert result.exit_code == 2, result.output
    assert message in text(result)


def test_missing_checkpoint_is_a_clean_error(tmp_path: Path, data: dict[str, Path]) -> None:
    for args in (["predict", tmp_path / "nope", "a"], ["eval", tmp_path / "nope", data["nested"]]):
        result = run(*args)
        assert result.exit_code == 2
        assert "does not exist: train one with `rlm train" in text(result)
    result = run("info", tmp_path)  # exists, but is no checkpoint
    assert result.exit_code == 2 and "is not an rlm checkpoint" in text(result)


# -- eval -------------------------------------------------------------------------------------


def test_eval_json_scores_the_test_split(model_dir: Path, data: dict[str, Path]) -> None:
    result = ok(run("eval", model_dir, data["nested"], "--json", *FAST))
    metrics = json.loads(result.stdout)  # stdout holds only the JSON
    m = metrics[TARGET]
    assert m["n"] == 30
    assert {"spearman", "kendall", "mae", "mape", "r2", "coverage", "width"} <= set(m)
    assert 0.0 <= m["coverage"] <= 1.0


def test_eval_report_writes_markdown_and_plots(model_dir: Path, data: dict[str, Path]) -> None:
    report = model_dir.parent / "report" / "eval.md"
    result = ok(
        run("eval", model_dir, data["nested"], "--split", "valid", "--report", report, *FAST)
    )
    assert "Spearman" in result.output
    md = report.read_text()
    assert f"| {TARGET} | 30 |" in md
    for kind in ("scatter", "residuals", "calibration"):
        png = report.parent / f"eval_{TARGET}_{kind}.png"
        assert f"({png.name})" in md
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_flat_file_and_bad_split(flat_dir: Path, data: dict[str, Path]) -> None:
    ok(run("eval", flat_dir, data["flat"], "--split", "all", *FAST))
    result = run("eval", flat_dir, data["flat"], "--split", "holdout")
    assert result.exit_code == 2
    assert "no rows of split 'holdout'" in text(result) and "'test'" in text(result)


# -- info -------------------------------------------------------------------------------------


def test_info_shows_config_and_training(model_dir: Path) -> None:
    result = ok(run("info", model_dir))
    for piece in (TARGET, "params", "d_model", "training run", DEMO_PATTERN):
        assert piece in result.output, piece
    full = json.loads(ok(run("info", model_dir, "--json")).stdout)
    assert full["summary"]["epochs_logged"] == 2
    assert full["vocab"]["pattern"] == DEMO_PATTERN
    assert full["summary"]["params"] > 0


# -- demo and start-up ------------------------------------------------------------------------


def test_demo_quick_runs_end_to_end(tmp_path: Path) -> None:
    result = ok(run("demo", "--quick", "--out", tmp_path / "demo", "--no-progress"))
    assert "mean baseline" in result.output and "Spearman" in result.output
    assert "80% interval" in result.output
    assert (tmp_path / "demo" / "scatter.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "demo" / "model.safetensors").is_file()


def test_help_lists_commands_and_import_is_torch_free() -> None:
    result = ok(run("--help"))
    for command in ("train", "predict", "eval", "demo", "info"):
        assert command in result.output
    code = "import sys, rlm.cli; print(any(m.split('.')[0] == 'torch' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_preset_choices_match_the_config_presets() -> None:
    assert {p.value for p in Preset} == {*PRESETS, "auto"}


def test_a_shared_model_trains_evaluates_and_reports_per_task(tmp_path: Path) -> None:
    rows = []
    for i in range(120):
        system = ["up", "down"][i % 2]
        a = float(i % 13)
        y = 100.0 + 10 * a if system == "up" else 5.0 - 0.1 * a
        split = "train" if i < 80 else ("valid" if i < 100 else "test")
        rows.append({"x": {"system": system, "a": a}, "y": {"t": y}, "split": split})
    write_jsonl(tmp_path / "shared.jsonl", rows)
    out = tmp_path / "shared"
    ok(_train(tmp_path / "shared.jsonl", out, "--target", "t", "--task-key", "system"))
    body = json.loads(ok(run("eval", out, tmp_path / "shared.jsonl", "--json", *FAST)).stdout)
    assert set(body["per_task"]) == {"up", "down"} and body["all"]["t"]["n"] == 20
    assert "per task (system)" in ok(run("eval", out, tmp_path / "shared.jsonl", *FAST)).output
    info = json.loads(ok(run("info", out, "--json")).stdout)["summary"]
    assert info["task_key"] == "system" and set(info["calibrated_on_rows"]) == {"all", "up", "down"}
