"""What must keep holding (issue 15): abusive requests get a 4xx from the server, bad training
data gets one clear error from ``rlm train``; never a 5xx, a traceback or a saved model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from rlm.cli import app
from rlm.serve import create_app

CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|"
DEEP = 100_000

REQUESTS: list[tuple[str, bytes, int]] = [
    ("malformed JSON", b'{"inputs": "abc', 422),
    ("100,000-deep nesting", ("[" * DEEP + "]" * DEEP).encode(), 400),
    ("invalid UTF-8", b'{"inputs": "\xff\xfe"}', 400),
    ("20 MB body", json.dumps({"inputs": "a" * 20_000_000}).encode(), 413),
    ("samples 10^9", json.dumps({"inputs": CELL, "samples": 10**9}).encode(), 422),
    ("samples -1", json.dumps({"inputs": CELL, "samples": -1}).encode(), 422),
    ("quantile 0", json.dumps({"inputs": CELL, "quantiles": [0.0, 1.01]}).encode(), 422),
    ("quantile -0.5", json.dumps({"inputs": CELL, "quantiles": [-0.5]}).encode(), 422),
]


@pytest.fixture(scope="module")
def client(tiny_model):
    with TestClient(create_app({"nas": tiny_model})) as c:
        yield c


@pytest.mark.parametrize(("case", "body", "status"), REQUESTS, ids=[c for c, _, _ in REQUESTS])
def test_abusive_requests_get_a_4xx(
    client: TestClient, case: str, body: bytes, status: int
) -> None:
    r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, (case, r.status_code, r.text[:200])
    assert r.json()["detail"]
    assert client.post("/predict", json={"inputs": CELL, "samples": 2}).status_code == 200


def _rows(ys: list) -> str:
    return "\n".join(json.dumps({"x": {"a": i, "b": "v"}, "y": {"t": y}}) for i, y in enumerate(ys))


DATA: list[tuple[str, str, str]] = [
    ("NaN target", _rows([1.0, float("nan"), 3.0]), "row 1"),
    ("string target", _rows([1.0, "fast", 3.0]), "row 1"),
    ("empty file", "", "no rows"),
    ("blank lines only", "\n\n  \n", "no rows"),
    ("constant target", _rows([2.0] * 20), "constant"),
    ("not JSON", '{"x": 1, "y": ', "line 1"),
    ("infinite input", _rows([1.0, 2.0]).replace('"a": 1', '"a": 1e999'), "not finite"),
]


@pytest.mark.parametrize(("case", "content", "message"), DATA, ids=[c for c, _, _ in DATA])
def test_bad_training_data_is_one_clear_error(tmp_path: Path, case, content, message) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text(content)
    out = tmp_path / "run"
    args = ["train", str(data), "--out", str(out), "--preset", "tiny", "--epochs", "1"]
    # wide enough that rich never wraps the message (its length follows tmp_path's)
    result = CliRunner().invoke(app, [*args, "--no-progress"], env={"COLUMNS": "400"})
    assert result.exit_code == 2, (case, result.output)
    said = " ".join(result.output.split())
    assert message in said, (case, said)
    assert "Traceback" not in result.output
    assert not (out / "model.safetensors").exists()
