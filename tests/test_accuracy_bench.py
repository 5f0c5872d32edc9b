"""The accuracy benchmark runs end to end on tiny settings and writes the documented JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

pytestmark = pytest.mark.skipif(
    not (DATA / "nas201" / "nas201.jsonl.gz").exists(),
    reason=f"shared benchmark data not found at {DATA}",
)


BASE_METHODS = (
    *("mean", "tfidf_ridge", "gbt", "rlm", "rlm_mse"),
    *("rlm_multi", "rlm_multi_ft", "rlm_multi_blend"),
)


def load_bench() -> ModuleType:
    # benchmarks/ is not a package: load the script by path, as `python benchmarks/...` would
    spec = importlib.util.spec_from_file_location(
        "accuracy_bench", ROOT / "benchmarks" / "accuracy.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_quick_nas201_and_one_system(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    import torch

    torch.set_num_threads(1)
    bench = load_bench()
    out = tmp_path / "acc.json"
    report = bench.main(
        [
            "--quick",
            "--tasks", "nas201", "systems/LLVM",
            "--sizes", "60",
            "--budget", "2",
            "--multi-budget", "2",
            "--samples", "8",
            "--max-test", "40",
            "--out", str(out),
            # the tuned baselines need the optional bench extra, which CI does not install
            "--methods", *BASE_METHODS,
        ]
    )  # fmt: skip
    saved = json.loads(out.read_text())
    assert saved["quick"] is True and saved["methods"] == list(BASE_METHODS)
    nas = {f"nas201/{t}" for t in bench.NAS_OBJECTIVES}
    assert set(saved["tasks"]) == nas | {"systems/LLVM"}
    assert out.with_suffix(".md").read_text().startswith("# Accuracy benchmark (QUICK")
    for name, task in saved["tasks"].items():
        assert task["n_test"] == 40
        (block,) = task["sizes"].values()
        assert block["n_train"] == 60
        methods = block["methods"]
        config_only = {"rlm_mse"}  # the MSE-head ablation runs on configurations only
        want = set(BASE_METHODS) - (set() if name.startswith("systems/") else config_only)
        assert set(methods) == want
        for method in ("mean", "tfidf_ridge", "gbt", "rlm"):
            assert {"mae", "train_s", "params"} <= set(methods[method]), (name, method)
        assert {"spearman", "kendall", "mape", "r2", "coverage", "width"} <= set(methods["rlm"])
        assert 0.0 <= methods["rlm"]["coverage"] <= 1.0
        assert methods["rlm"]["calibrated"] == 1.0  # calibrated on its valid rows
        assert 0.0 <= methods["rlm"]["coverage_raw"] <= 1.0
        if name.startswith("systems/"):
            assert methods["rlm_multi"]["shared_train_rows"] == 60
            assert methods["rlm_multi_ft"]["calibrated"] == 1.0  # its own calibration
            blend = methods["rlm_multi_blend"]["blend"]  # fine-tuned shared + single-task
            assert blend["models"] == ["multi_ft", "single"] and 0.0 < blend["weight"] <= 1.0
            assert methods["rlm_multi_blend"]["calibrated"] == 1.0
            assert "spearman" in methods["rlm_mse"]
        else:  # the one multi-objective model, objectives in NAS_OBJECTIVES order
            k = bench.NAS_OBJECTIVES.index(name.split("/")[1])
            assert methods["rlm_multi"]["objective_index"] == k
            assert methods["rlm_multi"]["calibrated"] == 1.0
    assert not out.with_suffix(".partial.json").exists()
    md = out.with_suffix(".md").read_text()
    assert "## Summary" in md
    out.with_suffix(".md").unlink()
    bench.main(["--render", str(out)])  # the Markdown is a pure function of the JSON
    assert out.with_suffix(".md").read_text() == md
    assert report["tasks"].keys() == saved["tasks"].keys()


def test_ablation_runs_each_variant_on_the_same_rows(tmp_path: Path) -> None:
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import ablation

    out = tmp_path / "ablation.json"
    variants = ["pairs", "fields", "mse", "num"]
    args = ["--tasks", "systems/LLVM", "pie/memory", "--size", "20", "--budget", "0.5"]
    report = ablation.main(
        [*args, "--samples", "2", "--max-test", "10", "--variants", *variants, "--out", str(out)]
    )
    llvm, pie = report["tasks"]["systems/LLVM"], report["tasks"]["pie/memory_kb"]
    assert set(llvm) == {"n_train", "n_test", "pairs", "fields", "mse"}
    assert set(pie) == {"n_train", "n_test", "num", "mse"}  # text variants of code only
    assert llvm["n_train"] == 20 and llvm["fields"]["positions"] < llvm["pairs"]["positions"]
    md = out.with_suffix(".md").read_text()
    assert "| systems/LLVM | 20 |" in md and "## pie" in md


def _method(spearman: float | None, coverage: float | None = None, raw: float | None = None):
    r: dict = {"train_s": 1.0, "params": 1}
    if spearman is not None:
        r["spearman"] = spearman
    if coverage is not None:
        r["coverage"], r["coverage_raw"] = coverage, raw
    return r


def test_summary_counts_wins_shared_models_and_coverage() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import accuracy_summary as summary

    def task(sizes: dict) -> dict:
        return {"sizes": {k: {"methods": m} for k, m in sizes.items()}}

    report = {
        "tasks": {
            "a": task(
                {
                    "100": {
                        "mean": _method(None),
                        "tfidf_ridge": _method(0.5),
                        "gbt": _method(0.6),
                        "rlm": _method(0.4, 0.78, 0.5),
                        "rlm_multi": _method(0.55, 0.9, 0.6),
                    },
                    "1000": {
                        "mean": _method(None),
                        "tfidf_ridge": _method(0.7),
                        "gbt": _method(0.9),
                        "rlm": _method(0.95, 0.82, 0.7),
                        "rlm_multi": None,
                    },
                }
            ),
            "b": task(
                {
                    "196": {
                        "mean": _method(None),
                        "tfidf_ridge": _method(0.3),
                        "gbt": None,
                        "rlm": _method(0.2, 0.8, 0.99),
                        "rlm_multi": None,
                    }
                }
            ),
        }
    }
    vb = {r["task"]: r for r in summary.vs_baselines(report)}
    assert vb["a"]["n_train"] == 1000 and vb["a"]["best_baseline"] == "gbt"
    assert abs(vb["a"]["rlm_margin"] - 0.05) < 1e-12 and vb["a"]["rlm_multi_margin"] is None
    assert vb["b"]["best_baseline"] == "tfidf_ridge" and abs(vb["b"]["rlm_margin"] + 0.1) < 1e-12
    (sv,) = summary.shared_vs_single(report)
    assert sv["task"] == "a" and abs(sv["margin"] - 0.15) < 1e-12
    cov = summary.coverage(report)
    assert cov["rows"] == 4 and cov["calibrated_within_5pts"] == 3 and cov["raw_within_5pts"] == 0
    text = "\n".join(summary.summary_markdown(report))
    assert "beats the best baseline on 1 of 2 tasks" in text
    assert "better on 1 of 1 tasks" in text
