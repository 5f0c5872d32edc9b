"""A short form of benchmarks/serve_stress.py: concurrent clients, bad requests and slow uploads
against a real server process on 127.0.0.1; no 5xx, slow bodies delay no one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_server_under_load_and_abuse(tmp_path: Path) -> None:
    pytest.importorskip("httpx")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import serve_stress

    from rlm.io import load_demo

    model = tmp_path / "model"
    serve_stress.train_model("tiny", model, seconds=2.0)
    cells = [e.x for e in load_demo("nas201", "test")]
    result = serve_stress.run(str(model), clients=8, seconds=4.0, slow=2, cells=cells)
    ok = result["ok"]
    assert ok["no_5xx"] and ok["every_answer_as_expected"], result["wrong"]
    assert ok["slow_clients_answered"], result["slow_clients"]
    assert ok["slow_clients_do_not_delay_others"], result
    assert result["requests"] > 20
    assert any(k.startswith("deep nesting: 4") for k in result["status"])
