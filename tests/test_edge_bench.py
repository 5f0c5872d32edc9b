"""The edge benchmark runs end to end on tiny settings (``--quick``): every model it makes, every
export and every variant's own process, for a text task and a field task."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (DATA / "nas201" / "nas201.jsonl.gz").exists(),
        reason=f"shared benchmark data not found at {DATA}",
    ),
]


def load_edge() -> ModuleType:
    # benchmarks/ is not a package: load the script by path, as `python benchmarks/...` would
    spec = importlib.util.spec_from_file_location("edge_bench", ROOT / "benchmarks" / "edge.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_quick_runs_every_variant_of_both_tasks(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    edge = load_edge()
    out = tmp_path / "edge.json"
    edge.main(["--quick", "--work", str(tmp_path / "work"), "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["quick"] is True and set(report["tasks"]) == set(edge.TASKS)
    assert out.with_suffix(".md").read_text().startswith("# Edge deployment")
    for task, rows in report["tasks"].items():
        names = [r["variant"] for r in rows]
        assert names[0] == "eager fp32"
        # every task has its default model; early exit only for encoders deeper than 2 layers
        assert "onnx int4 1t default (auto)" in names
        assert ("eager early exit 1%" in names) == task.startswith("nas201/")
        for r in rows:
            assert r["valid_rate"] == 1.0 and r["test_rows"] == edge.QUICK_TEST
            assert r["torch_imported"] == (r["runtime"] == "torch"), r["variant"]
        size = {r["variant"]: r["file_mb"] for r in rows}
        assert size["onnx int4 1t"] < size["onnx int8 1t"] < size["onnx fp32"]
