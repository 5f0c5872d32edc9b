"""`rlm serve`: options become the app's configuration; user errors are one clean message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from rlm.cli import app

runner = CliRunner()


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """uvicorn.run replaced by a recorder: the test talks to the app with a test client."""
    seen: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:
        seen["app"], seen["kwargs"] = app, kwargs

    monkeypatch.setattr(uvicorn, "run", fake_run)
    return seen


def test_serve_builds_the_app_from_options(tiny_model_dir: Path, captured) -> None:
    result = runner.invoke(
        app,
        [
            "serve", f"nas={tiny_model_dir}", str(tiny_model_dir), "--port", "8123",
            "--unit", "cifar10_test_acc=%", "--max-batch", "1", "--samples", "8",
            "--max-inputs", "2",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert captured["kwargs"]["host"] == "127.0.0.1" and captured["kwargs"]["port"] == 8123
    assert "serving nas" in result.output and "http://127.0.0.1:8123/" in result.output
    with TestClient(captured["app"]) as c:
        models = c.get("/models").json()
        assert [m["name"] for m in models["models"]] == ["nas", tiny_model_dir.name]
        card = c.get("/model").json()
        assert card["units"]["cifar10_test_acc"] == "%"
        assert card["limits"]["max_batch"] == 1 and card["limits"]["default_samples"] == 8
        assert card["history"]["epochs_logged"] == 2  # read from the checkpoint directory
        r = c.post("/predict", json={"inputs": "|none~0|+|"})
        assert r.status_code == 200 and r.json()["samples"] == 8
        assert c.post("/predict", json={"inputs": ["a", "b", "c"]}).status_code == 413


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing-dir"], "does not exist"),
        (["{dir}", "--unit", "cifar10_test_acc"], "write TARGET=UNIT"),
        (["{dir}", "--unit", "speed=m/s"], "--unit for ['speed']"),
        (["a={dir}", "a={dir}"], "two models named 'a'"),
        (["{dir}", "--samples", "500"], "default_samples=500 exceeds max_samples=256"),
        (["bad name={dir}"], "model name 'bad name'"),
    ],
)
def test_serve_user_errors(tiny_model_dir: Path, captured, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["serve", *(a.format(dir=tiny_model_dir) for a in args)])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.replace("│", " ").split())
    assert "app" not in captured  # nothing was served
