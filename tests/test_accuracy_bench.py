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
        ]
    )  # fmt: skip
    saved = json.loads(out.read_text())
    assert saved["quick"] is True and saved["methods"] == list(bench.METHODS)
    nas = {f"nas201/{t}" for t in bench.NAS_OBJECTIVES}
    assert set(saved["tasks"]) == nas | {"systems/LLVM"}
    assert out.with_suffix(".md").read_text().startswith("# Accuracy benchmark (QUICK")
    for name, task in saved["tasks"].items():
        assert task["n_test"] == 40
        (block,) = task["sizes"].values()
        assert block["n_train"] == 60
        methods = block["methods"]
        assert set(methods) == set(bench.METHODS)
        for method in ("mean", "tfidf_ridge", "gbt", "rlm"):
            assert {"mae", "train_s", "params"} <= set(methods[method]), (name, method)
        assert {"spearman", "kendall", "mape", "r2", "coverage", "width"} <= set(methods["rlm"])
        assert 0.0 <= methods["rlm"]["coverage"] <= 1.0
        assert methods["rlm"]["calibrated"] == 1.0  # calibrated on its valid rows
        assert 0.0 <= methods["rlm"]["coverage_raw"] <= 1.0
        if name.startswith("systems/"):
            assert methods["rlm_multi"]["shared_train_rows"] == 60
        else:  # the one multi-objective model, objectives in NAS_OBJECTIVES order
            k = bench.NAS_OBJECTIVES.index(name.split("/")[1])
            assert methods["rlm_multi"]["objective_index"] == k
            assert methods["rlm_multi"]["calibrated"] == 1.0
    assert not out.with_suffix(".partial.json").exists()
    assert report["tasks"].keys() == saved["tasks"].keys()
