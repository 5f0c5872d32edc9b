"""HTTP serving: ``create_app(models, config)`` builds a FastAPI app around trained models.

Endpoints (the OpenAPI schema is at ``/openapi.json``, interactive docs at ``/docs``):

* ``POST /predict``: one input (a string or a JSON object) or a list of them; per input and
  objective the median ``point``, ``mean``, ``std``, the central ``level`` interval, the requested
  ``quantiles`` and, with ``return_samples``, the draws. Deterministic given ``seed``.
* ``GET /health``: liveness plus batching counters per model.
* ``GET /model`` (``?name=`` for one of several models), ``GET /models``: configuration,
  targets, units, training summary and the server's limits.
* ``GET /``: the playground, a self-contained page (no CDN) that plots the predicted
  distribution of an input.

Requests are micro-batched per model (``rlm.serve.batching``). Every limit (body bytes, inputs per
request, characters per input, samples, quantiles, queue length) is checked before any model
work and answered with a 4xx and a message that names the limit; a full queue is a 503.

fastapi is imported here, and this package is imported lazily (``rlm serve``), so the core
package stays importable without the ``serve`` extra.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from contextlib import asynccontextmanager
from functools import partial
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "serving needs the 'serve' extra: pip install 'rlm[serve]' (fastapi, uvicorn, httpx)"
    ) from e

from .batching import MicroBatcher, QueueFull, sample_jobs
from .schema import (
    PredictRequest,
    ServeConfig,
    Served,
    error_text,
    model_card,
    summarise,
)

if TYPE_CHECKING:
    from ..predictor import Predictor

log = logging.getLogger("rlm.server")


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with a 413.

    Reads the body before the app does (so chunked uploads without Content-Length are bounded
    too) and replays it to the app.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._too_large(send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Any) -> None:
        payload = json.dumps(
            {
                "detail": f"request body is larger than max_body_bytes={self.limit}: "
                "send fewer or shorter inputs, or fewer requests at once"
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def playground_html() -> str:
    return resources.files("rlm.serve").joinpath("static/index.html").read_text(encoding="utf-8")


def create_app(
    models: Mapping[str, Predictor],
    config: ServeConfig | None = None,
    *,
    units: Mapping[str, Mapping[str, str]] | None = None,
    directories: Mapping[str, str | Path] | None = None,
) -> FastAPI:
    """A FastAPI app serving ``models`` by name (the first is the default).

    ``units`` maps model name -> target -> unit label (shown in responses and the playground);
    ``directories`` maps model name -> checkpoint directory, for training history in /model.
    """
    config = config or ServeConfig()
    if not models:
        raise ValueError(
            "no models to serve: pass at least one {name: RegressionLM or OnnxRegressor}"
        )
    served = {
        name: _serve(
            name, model, config, (units or {}).get(name, {}), (directories or {}).get(name)
        )
        for name, model in models.items()
    }

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        for s in served.values():
            await s.batcher.close()

    app = FastAPI(
        title="rlm",
        summary="Regression language models: text or JSON configs in, predicted distributions out.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.served = served
    app.state.config = config
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Any, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {"detail": error_text(exc.errors()), "errors": json.loads(_safe_json(exc.errors()))},
            status_code=422,
        )

    _info_routes(app, served, config)
    _predict_route(app, served, config)
    return app


def _pick(served: Mapping[str, Served], name: str | None) -> Served:
    """The model a request names; the first served model by default."""
    key = name or next(iter(served))
    if key not in served:
        raise HTTPException(404, f"no model named {key!r}; served models: {list(served)}")
    return served[key]


def _info_routes(app: FastAPI, served: Mapping[str, Served], config: ServeConfig) -> None:
    """GET /, /health, /models and /model."""
    page, default = playground_html(), next(iter(served))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, and per model the waiting requests and batching counters."""
        return {
            "status": "ok",
            "models": {
                n: {"pending": s.batcher.pending, **s.batcher.stats.to_dict()}
                for n, s in served.items()
            },
            "batching": {"max_batch": config.max_batch, "batch_wait_ms": config.batch_wait_ms},
        }

    @app.get("/models")
    async def list_models() -> dict[str, Any]:
        """Names and targets of the served models; the first is the default."""
        return {
            "default": default,
            "models": [
                {"name": n, "targets": list(s.model.targets or ()), "units": s.units}
                for n, s in served.items()
            ],
        }

    @app.get("/model")
    async def model_info(
        name: str | None = Query(None, description="A served model; default: the first."),
    ) -> dict[str, Any]:
        """Configuration, targets, units, training summary and limits of one model."""
        return model_card(_pick(served, name), config)


def _predict_route(app: FastAPI, served: Mapping[str, Served], config: ServeConfig) -> None:
    """POST /predict: every limit is checked before the request joins a batch."""

    @app.post(
        "/predict",
        responses={
            404: {"description": "No such model"},
            413: {"description": "Body, inputs or an input over the server's limits"},
            422: {"description": "Invalid request (message names the field)"},
            503: {"description": "Queue full: retry shortly"},
        },
    )
    async def predict(req: PredictRequest) -> JSONResponse:
        """Predicted distribution per input and objective (median, interval, quantiles)."""
        start = time.perf_counter()
        s = _pick(served, req.model)
        inputs = req.inputs if isinstance(req.inputs, list) else [req.inputs]
        samples = _checked_request(req, len(inputs), config)
        _checked_texts(s.model, inputs, config)
        tasks = _checked_tasks(s.model, inputs)
        try:
            draws = await s.batcher.submit(inputs, samples, req.seed)
        except QueueFull as e:
            raise HTTPException(503, str(e), headers={"Retry-After": "1"}) from e
        except Exception as e:
            log.exception("prediction failed")
            raise HTTPException(500, f"prediction failed: {type(e).__name__}: {e}") from e
        names = list(s.model.targets or ())
        body = {
            "model": s.name,
            "targets": names,
            "units": {t: s.units.get(t) for t in names},
            "samples": samples,
            "seed": req.seed,
            "level": req.level,
            "quantiles": req.quantiles,
            "predictions": summarise(
                draws,
                names,
                s.units,
                req.quantiles,
                req.level,
                req.return_samples,
                s.model.calibration,
                tasks,
            ),
            "elapsed_ms": round(1000 * (time.perf_counter() - start), 3),
        }
        return JSONResponse(body)


def _checked_tasks(model: Predictor, inputs: list[Any]) -> list[str] | None:
    """Each input's task, for a model shared by tasks (422 when an input names none)."""
    if model.task_key is None:
        return None
    try:
        tasks = model.tasks_of(inputs)
        if model.task_scaling is not None:  # here, not inside a batch it would fail as a whole
            model.task_scaling.check_known(tasks)
    except ValueError as e:
        raise HTTPException(422, str(e)) from e
    return tasks


def _checked_request(req: PredictRequest, n_inputs: int, config: ServeConfig) -> int:
    """The request's sample count, once its counts and levels are within the limits."""
    if n_inputs > config.max_inputs:
        raise HTTPException(
            413, f"{n_inputs} inputs: at most max_inputs={config.max_inputs} per request"
        )
    samples = config.default_samples if req.samples is None else req.samples
    if not 1 <= samples <= config.max_samples:
        raise HTTPException(422, f"samples={samples}: use 1..{config.max_samples}")
    if not 0.0 < req.level < 1.0 or not math.isfinite(req.level):
        raise HTTPException(422, f"level={req.level}: must be in (0, 1), e.g. 0.8")
    if len(req.quantiles) > config.max_quantiles:
        raise HTTPException(422, f"{len(req.quantiles)} quantiles: at most {config.max_quantiles}")
    bad = [q for q in req.quantiles if not 0.0 <= q <= 1.0]
    if bad:
        raise HTTPException(422, f"quantiles {bad}: each must be in [0, 1]")
    return samples


def _checked_texts(model: Predictor, inputs: list[Any], config: ServeConfig) -> list[str]:
    """The inputs as the model reads them, each within max_input_chars."""
    try:
        texts = model.texts(inputs)
    except (ValueError, TypeError) as e:
        raise HTTPException(422, f"cannot read an input: {e}") from e
    for i, t in enumerate(texts):
        if len(t) > config.max_input_chars:
            raise HTTPException(
                413,
                f"input {i} is {len(t):,} characters once serialised: at most "
                f"max_input_chars={config.max_input_chars:,}",
            )
    return texts


def _serve(
    name: str,
    model: Predictor,
    config: ServeConfig,
    units: Mapping[str, str],
    directory: str | Path | None,
) -> Served:
    """One model with its own micro-batcher; units must name its targets."""
    _, codec = model._pipeline()
    unknown = sorted(set(units) - set(codec.names))
    if unknown:
        raise ValueError(f"units for {unknown}: model {name!r} has targets {codec.names}")
    batcher = MicroBatcher(
        partial(sample_jobs, model),
        max_batch=config.max_batch,
        max_wait_s=config.batch_wait_ms / 1000.0,
        max_queue=config.max_queue,
    )
    return Served(name, model, batcher, dict(units), Path(directory) if directory else None)


def _safe_json(errors: Any) -> str:
    return json.dumps(errors, default=str)


def _version() -> str:
    from .. import __version__

    return __version__
