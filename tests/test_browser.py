"""The playground page, end to end in headless Chromium: type an input, click Predict, and check
that the numbers shown are the ones ``POST /predict`` returns for the same request.

Needs Debian's ``chromium`` and the Python ``playwright`` package (which drives that browser; it
never downloads one). Without them the test is skipped locally, and fails in CI (CI=true), where
``.ci/run`` installs them.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rlm.io import load_demo

LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
QUANTILES = [0.05, 0.25, 0.5, 0.75, 0.95]  # what the page asks for


def _chromium() -> str | None:
    for candidate in (
        os.environ.get("RLM_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _missing() -> str | None:
    try:
        import fastapi  # noqa: F401
        import playwright.sync_api  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        return f"{e.name} is not installed (pip install -e '.[dev]')"
    if _chromium() is None:
        return "no chromium at /usr/bin/chromium (apt-get install chromium, or set RLM_CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def browser_ready() -> str:
    reason = _missing()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser test cannot run in CI: {reason}; .ci/run should install it")
        pytest.skip(reason)
    return _chromium() or ""


@pytest.fixture(scope="module")
def server_url(tiny_model, browser_ready: str) -> Iterator[str]:
    """uvicorn on a free loopback port, in a thread, for the module's tests."""
    import uvicorn

    from rlm.serve import ServeConfig, create_app

    app = create_app(
        {"nas201": tiny_model},
        ServeConfig(default_samples=32),
        units={"nas201": {"cifar10_test_acc": "%", "latency_ms_pixel3": "ms"}},
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def page(server_url: str, browser_ready: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_ready, headless=True, args=LAUNCH_ARGS)
        pg = browser.new_page(viewport={"width": 1100, "height": 760})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(server_url + "/")
        yield pg
        browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def test_typed_input_shows_the_numbers_predict_returns(page, server_url: str) -> None:
    cell = load_demo("nas201", "test")[3].x
    page.wait_for_selector("#model option", state="attached")  # the model list has loaded
    page.wait_for_function("!document.getElementById('model-info').textContent.includes('loading')")
    assert "cifar10_test_acc" in page.text_content("#model-info")
    page.fill("#input", cell)
    page.fill("#samples", "48")
    page.fill("#seed", "7")
    page.click("#predict")
    page.wait_for_selector("#results[data-ready='1']", timeout=20_000)

    expected = httpx.post(
        server_url + "/predict",
        json={
            "inputs": cell,
            "samples": 48,
            "seed": 7,
            "level": 0.8,
            "quantiles": QUANTILES,
            "return_samples": True,
        },
        timeout=30,
    ).json()
    objectives = expected["predictions"][0]["objectives"]
    cards = page.query_selector_all("#results .card")
    assert [c.get_attribute("data-objective") for c in cards] == [o["name"] for o in objectives]
    for card, o in zip(cards, objectives, strict=True):
        assert f"({o['unit']})" in card.query_selector("h2").text_content()
        for key in ("point", "lower", "upper", "mean"):
            el = card.query_selector(f"[data-testid={key}]")
            assert float(el.get_attribute("data-value")) == o[key]  # exactly the API's number
            shown = float(el.text_content())  # rounded to 4 significant digits for display
            assert shown == pytest.approx(o[key], rel=1e-3, abs=1e-12)
        shown_q = [
            float(el.get_attribute("data-value"))
            for el in card.query_selector_all("[data-testid=q]")
        ]
        assert shown_q == o["quantiles"]
        bars = card.query_selector_all("svg rect")
        assert len(bars) > 2  # interval band + histogram bars
    assert "48 samples" in page.text_content("#status")
    assert page.text_content("#error") == ""
    shot = os.environ.get("RLM_PLAYGROUND_SCREENSHOT")
    if shot:
        page.screenshot(path=shot, full_page=True)


def test_errors_are_shown_not_swallowed(page) -> None:
    page.fill("#input", "{not json")
    page.click("#predict")
    assert "not valid JSON" in page.text_content("#error")
    page.check("#plain")  # the same text sent as a plain string is a valid input
    page.fill("#samples", "100000")
    page.click("#predict")
    page.wait_for_function("document.getElementById('error').textContent.includes('HTTP 422')")
    assert "samples=100000: use 1..256" in page.text_content("#error")
    page.uncheck("#plain")
