"""The HTTP API with FastAPI's test client: valid, invalid, oversize and concurrent requests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
from fastapi.testclient import TestClient

from rlm.io import load_demo
from rlm.serve import ServeConfig, create_app

CONFIG = ServeConfig(
    max_inputs=8,
    max_samples=64,
    default_samples=16,
    max_input_chars=400,
    max_body_bytes=4000,
    max_quantiles=5,
    max_batch=64,
    batch_wait_ms=30.0,
    max_queue=64,
)
SERVE_TARGETS = ("cifar10_test_acc", "latency_ms_pixel3")  # as trained in conftest.py
UNITS = {"cifar10_test_acc": "%", "latency_ms_pixel3": "ms"}
CELLS = [e.x for e in load_demo("nas201", "test")[:6]]


@pytest.fixture(scope="module")
def client(tiny_model, tiny_model_dir: Path) -> Iterator[TestClient]:
    app = create_app(
        {"nas": tiny_model, "other": tiny_model},
        CONFIG,
        units={"nas": UNITS},
        directories={"nas": tiny_model_dir},
    )
    with TestClient(app) as c:
        yield c


def predict(client: TestClient, **body):
    return client.post("/predict", json=body)


def test_health_model_and_schema(client: TestClient) -> None:
    h = client.get("/health").json()
    assert h["status"] == "ok" and set(h["models"]) == {"nas", "other"}
    card = client.get("/model").json()
    assert card["name"] == "nas" and card["targets"] == list(SERVE_TARGETS)
    assert card["units"] == UNITS
    assert card["training"]["epochs"] == 2 and card["params"] > 0
    assert card["history"]["epochs_logged"] == 2 and card["limits"]["max_inputs"] == 8
    assert card["model_config"]["d_model"] == 32
    assert client.get("/model", params={"name": "other"}).json()["units"] == dict.fromkeys(
        SERVE_TARGETS
    )
    missing = client.get("/model", params={"name": "nope"})
    assert missing.status_code == 404 and "'nas', 'other'" in missing.json()["detail"]
    assert client.get("/models").json()["default"] == "nas"
    schema = client.get("/openapi.json").json()
    assert "/predict" in schema["paths"] and "PredictRequest" in schema["components"]["schemas"]
    page = client.get("/")
    assert page.status_code == 200 and "rlm playground" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # works offline


def test_one_input(client: TestClient) -> None:
    r = predict(client, inputs=CELLS[0], samples=32, quantiles=[0.1, 0.5, 0.9], return_samples=True)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "nas" and body["targets"] == list(SERVE_TARGETS)
    assert body["samples"] == 32 and body["level"] == 0.8 and len(body["predictions"]) == 1
    objectives = body["predictions"][0]["objectives"]
    assert [o["name"] for o in objectives] == list(SERVE_TARGETS)
    assert [o["unit"] for o in objectives] == ["%", "ms"]
    for o in objectives:
        draws = np.array(o["samples"])
        assert draws.shape == (32,)
        assert o["point"] == pytest.approx(np.median(draws))
        assert o["mean"] == pytest.approx(draws.mean())
        assert o["quantiles"] == pytest.approx(np.quantile(draws, [0.1, 0.5, 0.9]).tolist())
        assert o["lower"] == pytest.approx(np.quantile(draws, 0.1))
        assert o["lower"] <= o["point"] <= o["upper"]


def test_many_inputs_strings_and_objects(client: TestClient) -> None:
    r = predict(client, inputs=[CELLS[0], {"cell": CELLS[1], "note": 3}, CELLS[2]], samples=8)
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 3 and all("samples" not in o for p in preds for o in p["objectives"])
    single_object = predict(client, inputs={"cell": CELLS[1]}, samples=8)
    assert len(single_object.json()["predictions"]) == 1  # an object is one input
    assert predict(client, inputs=CELLS[0], model="other").json()["model"] == "other"


def test_same_seed_same_numbers(client: TestClient) -> None:
    a = predict(client, inputs=CELLS[:2], seed=5, return_samples=True).json()["predictions"]
    b = predict(client, inputs=CELLS[:2], seed=5, return_samples=True).json()["predictions"]
    c = predict(client, inputs=CELLS[:2], seed=6, return_samples=True).json()["predictions"]
    assert a == b
    assert a != c


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 422, "inputs: Field required"),
        ({"inputs": 5}, 422, "inputs is int; each input must be a string or a JSON object"),
        ({"inputs": []}, 422, "empty list"),
        ({"inputs": ["a", None]}, 422, "inputs[1] is null"),
        ({"inputs": [["a"]]}, 422, "inputs[0] is list"),
        ({"inputs": "a", "samples": 0}, 422, "samples=0: use 1..64"),
        ({"inputs": "a", "samples": 65}, 422, "samples=65: use 1..64"),
        ({"inputs": "a", "samples": "many"}, 422, "samples: Input should be a valid integer"),
        ({"inputs": "a", "level": 1.0}, 422, "level=1.0: must be in (0, 1)"),
        ({"inputs": "a", "quantiles": [0.5, 1.5]}, 422, "quantiles [1.5]: each must be in [0, 1]"),
        ({"inputs": "a", "seed": -1}, 422, "seed: Input should be greater than or equal to 0"),
        ({"inputs": "a", "sample": 3}, 422, "sample: Extra inputs are not permitted"),
        ({"inputs": "a", "model": "gpt"}, 404, "no model named 'gpt'"),
        (
            {"inputs": "a", "return_samples": "maybe"},
            422,
            "return_samples: Input should be a valid boolean",
        ),
        (b'["a", "b"]', 422, "Input should be a valid dictionary"),
    ],
)
def test_invalid_requests_get_clear_4xx(client: TestClient, body, status, message) -> None:
    if isinstance(body, bytes):
        r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    else:
        r = client.post("/predict", json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]


def test_malformed_json_and_wrong_method(client: TestClient) -> None:
    r = client.post(
        "/predict", content=b'{"inputs": ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]
    assert client.get("/predict").status_code == 405


def test_oversize_requests_are_refused_with_413(client: TestClient) -> None:
    big = client.post("/predict", json={"inputs": ["x" * 300] * 20})  # ~6 kB > 4000 bytes
    assert big.status_code == 413 and "max_body_bytes=4000" in big.json()["detail"]

    def chunks():  # no Content-Length: the limit still holds while streaming
        yield b'{"inputs": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    streamed = client.post(
        "/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    many = predict(client, inputs=["a"] * 9)
    assert many.status_code == 413 and "at most max_inputs=8" in many.json()["detail"]
    long = predict(client, inputs={"k": "z" * 500})
    assert long.status_code == 413 and "max_input_chars=400" in long.json()["detail"]
    quant = predict(client, inputs="a", quantiles=[0.5] * 6)
    assert quant.status_code == 422 and "at most 5" in quant.json()["detail"]
    assert predict(client, inputs=CELLS[0], samples=4).status_code == 200  # still serving


def test_concurrent_requests_are_batched_and_deterministic(client: TestClient) -> None:
    payloads = [
        {
            "inputs": CELLS[i % 3],
            "samples": 16 if i % 2 else 8,
            "seed": i % 4,
            "return_samples": True,
        }
        for i in range(24)
    ]
    reference = {}
    for p in payloads:  # one at a time: each request is a batch of its own
        key = (p["inputs"], p["samples"], p["seed"])
        if key not in reference:
            reference[key] = predict(client, **p).json()["predictions"]
    before = client.get("/health").json()["models"]["nas"]
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda p: predict(client, **p), payloads))
    after = client.get("/health").json()["models"]["nas"]
    assert all(r.status_code == 200 for r in responses)
    for p, r in zip(payloads, responses, strict=True):
        assert r.json()["predictions"] == reference[(p["inputs"], p["samples"], p["seed"])]
    requests = after["requests"] - before["requests"]
    batches = after["batches"] - before["batches"]
    assert requests == 24 and batches < requests  # requests shared model calls
    assert after["largest_batch"] > 1


def test_full_queue_gives_503_and_model_errors_500(tiny_model) -> None:
    app = create_app({"m": tiny_model}, ServeConfig(max_batch=1, batch_wait_ms=0, max_queue=1))
    batcher = app.state.served["m"].batcher
    real = batcher.run
    gate = __import__("threading").Event()

    def slow(jobs):
        gate.wait(5)
        return real(jobs)

    batcher.run = slow
    with TestClient(app) as c, ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(c.post, "/predict", json={"inputs": "a", "samples": 2})]
        for _ in range(3):
            futures.append(pool.submit(c.post, "/predict", json={"inputs": "a", "samples": 2}))
        import time

        deadline = time.time() + 5
        while batcher.stats.rejected < 2 and time.time() < deadline:
            time.sleep(0.01)
        gate.set()
        codes = sorted(f.result().status_code for f in futures)
        busy = next(f.result() for f in futures if f.result().status_code == 503)
        assert codes == [200, 200, 503, 503]
        assert busy.headers["retry-after"] == "1" and "busy" in busy.json()["detail"]

        def broken(jobs):
            raise RuntimeError("out of memory")

        batcher.run = broken
        r = c.post("/predict", json={"inputs": "a", "samples": 2})
        assert r.status_code == 500 and "out of memory" in r.json()["detail"]
        batcher.run = real
        assert c.post("/predict", json={"inputs": "a", "samples": 2}).status_code == 200


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="default_samples"):
        ServeConfig(default_samples=100, max_samples=10)
    with pytest.raises(ValueError, match="max_batch"):
        ServeConfig(max_batch=0)


def test_core_and_cli_import_without_fastapi() -> None:
    code = (
        "import sys, rlm, rlm.cli, rlm.serve.batching\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'uvicorn', 'torch')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
