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

Requests are micro-batched per model (``rlm.batching``). Every limit (body bytes, inputs per
request, characters per input, samples, quantiles, queue length) is checked before any model
work and answered with a 4xx and a message that names the limit; a full queue is a 503.

fastapi is imported here, and this module is imported lazily (``rlm serve``), so the core
package stays importable without the ``serve`` extra.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .batching import MicroBatcher, QueueFull, sample_jobs
from .calibration import IntervalCalibration, quantile_table

try:
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, field_validator
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "serving needs the 'serve' extra: pip install 'rlm[serve]' (fastapi, uvicorn, httpx)"
    ) from e

if TYPE_CHECKING:
    from .api import RegressionLM

log = logging.getLogger("rlm.server")

DEFAULT_QUANTILES = (0.1, 0.5, 0.9)


@dataclass(frozen=True)
class ServeConfig:
    """Limits and batching of a server. Every limit is enforced before any model work."""

    max_inputs: int = 64  # inputs in one request
    max_samples: int = 256  # samples per input
    default_samples: int = 64
    max_input_chars: int = 20_000  # characters of one input once serialised
    max_body_bytes: int = 1_000_000  # request body
    max_quantiles: int = 32
    max_batch: int = 256  # inputs in one model call (across requests)
    batch_wait_ms: float = 5.0  # how long a batch's first request waits for company
    max_queue: int = 256  # requests waiting per model; beyond it: 503

    def __post_init__(self) -> None:
        for name in ("max_inputs", "max_samples", "default_samples", "max_input_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        for name in ("max_body_bytes", "max_quantiles", "max_batch", "max_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.default_samples > self.max_samples:
            raise ValueError(
                f"default_samples={self.default_samples} exceeds max_samples={self.max_samples}"
            )
        if not 0 <= self.batch_wait_ms <= 10_000:
            raise ValueError(f"batch_wait_ms={self.batch_wait_ms}: use 0..10000")

    @property
    def batching(self) -> bool:
        return self.max_batch > 1


class PredictRequest(BaseModel):
    """Body of ``POST /predict``."""

    model_config = ConfigDict(extra="forbid")

    inputs: str | dict[str, Any] | list[str | dict[str, Any]] = Field(
        description="One input (a string, or a JSON object such as a configuration) or a list "
        "of inputs. A list always means several inputs.",
        examples=["|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|"],
    )
    model: str | None = Field(
        None, description="Which served model; default: the first (or only) one."
    )
    samples: int | None = Field(
        None, description="Samples per input (default: the server's default_samples)."
    )
    quantiles: list[float] = Field(
        default=list(DEFAULT_QUANTILES), description="Quantiles to report, each in [0, 1]."
    )
    level: float = Field(0.8, description="Central interval level, in (0, 1).")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Same seed, same numbers.")
    return_samples: bool = Field(False, description="Include the raw draws per objective.")

    @field_validator("inputs", mode="before")
    @classmethod
    def _input_types(cls, v: Any) -> Any:
        # Checked before the union so that a mistake gets one plain message, not three.
        items = v if isinstance(v, list) else [v]
        for i, x in enumerate(items):
            if not isinstance(x, str | dict):
                where = f"inputs[{i}]" if isinstance(v, list) else "inputs"
                kind = "null" if x is None else type(x).__name__
                raise ValueError(f"{where} is {kind}; each input must be a string or a JSON object")
        if isinstance(v, list) and not v:
            raise ValueError("inputs is an empty list; send at least one input")
        return v


@dataclass
class Served:
    """A model as served: its batcher, units and (optionally) the checkpoint directory."""

    name: str
    model: RegressionLM
    batcher: MicroBatcher
    units: dict[str, str] = field(default_factory=dict)
    directory: Path | None = None


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


def _error_text(errors: Sequence[Mapping[str, Any]]) -> str:
    """Pydantic errors as one readable line: 'samples: Input should be a valid integer; ...'."""
    parts: list[str] = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        if e.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON ({e.get('ctx', {}).get('error', msg)})")
            continue
        where = ".".join(loc[:1] + [f"[{p}]" if p.isdigit() else p for p in loc[1:]])
        parts.append(f"{where}: {msg}" if where and not msg.startswith(loc[0]) else msg)
    return "; ".join(dict.fromkeys(parts)) or "invalid request"


def _read_history(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def model_card(served: Served, config: ServeConfig) -> dict[str, Any]:
    """What ``GET /model`` returns: configuration, targets, units, training summary, limits."""
    m = served.model
    tok, codec, net = m._check_fitted()
    card: dict[str, Any] = {
        "name": served.name,
        "targets": list(codec.names),
        "units": {t: served.units.get(t) for t in codec.names},
        "params": net.num_params(),
        "input_vocab_size": tok.vocab_size,
        "model_config": m.model_config.to_dict(),
        "train_config": m.train_config.to_dict(),
        "numbers": [c.to_dict() for c in codec.configs],
        "training": m.training_summary,
        "calibration": None if m.calibration is None else m.calibration.to_dict(),
        "limits": asdict(config),
        "defaults": {
            "samples": config.default_samples,
            "quantiles": list(DEFAULT_QUANTILES),
            "level": 0.8,
            "seed": 0,
        },
    }
    if served.directory is not None:
        history = _read_history(served.directory / "metrics.jsonl")
        losses = [r["valid_loss"] for r in history if "valid_loss" in r]
        card["checkpoint"] = str(served.directory)
        card["history"] = {
            "epochs_logged": len(history),
            "best_valid_loss": min(losses) if losses else None,
            "last": history[-1] if history else None,
        }
    return card


def summarise(
    draws: np.ndarray,
    names: Sequence[str],
    units: Mapping[str, str],
    quantiles: Sequence[float],
    level: float,
    return_samples: bool,
    calibration: IntervalCalibration | None = None,
) -> list[dict[str, Any]]:
    """Draws (n, S, K) -> per input, per objective: point, mean, std, interval, quantiles.

    Interval and quantiles are the model's calibrated ones when it has a calibration (the
    same ``quantile_table`` as ``RegressionLM.distribution``), so both answer alike.
    """
    a = (1.0 - level) / 2.0
    qs = [*quantiles, 0.5, a, 1.0 - a]
    table = quantile_table(draws, qs, calibration)  # (Q, n, K)
    mean, std = draws.mean(axis=1), draws.std(axis=1)
    nq = len(quantiles)
    out = []
    for i in range(draws.shape[0]):
        objectives = []
        for k, name in enumerate(names):
            o: dict[str, Any] = {
                "name": name,
                "unit": units.get(name),
                "point": float(table[nq, i, k]),
                "mean": float(mean[i, k]),
                "std": float(std[i, k]),
                "lower": float(table[nq + 1, i, k]),
                "upper": float(table[nq + 2, i, k]),
                "quantiles": [float(v) for v in table[:nq, i, k]],
            }
            if return_samples:
                o["samples"] = draws[i, :, k].tolist()
            objectives.append(o)
        out.append({"objectives": objectives})
    return out


def playground_html() -> str:
    return resources.files("rlm").joinpath("static/index.html").read_text(encoding="utf-8")


def create_app(
    models: Mapping[str, RegressionLM],
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
        raise ValueError("no models to serve: pass at least one {name: RegressionLM}")
    served: dict[str, Served] = {}
    for name, model in models.items():
        _, codec, _ = model._check_fitted()
        unit_map = dict((units or {}).get(name, {}))
        unknown = sorted(set(unit_map) - set(codec.names))
        if unknown:
            raise ValueError(f"units for {unknown}: model {name!r} has targets {codec.names}")
        batcher = MicroBatcher(
            partial(sample_jobs, model),
            max_batch=config.max_batch,
            max_wait_s=config.batch_wait_ms / 1000.0,
            max_queue=config.max_queue,
        )
        d = (directories or {}).get(name)
        served[name] = Served(name, model, batcher, unit_map, Path(d) if d else None)
    default = next(iter(served))
    page = playground_html()

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
            {"detail": _error_text(exc.errors()), "errors": json.loads(_safe_json(exc.errors()))},
            status_code=422,
        )

    def pick(name: str | None) -> Served:
        key = name or default
        if key not in served:
            raise HTTPException(404, f"no model named {key!r}; served models: {list(served)}")
        return served[key]

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
        return model_card(pick(name), config)

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
        s = pick(req.model)
        inputs = req.inputs if isinstance(req.inputs, list) else [req.inputs]
        if len(inputs) > config.max_inputs:
            raise HTTPException(
                413, f"{len(inputs)} inputs: at most max_inputs={config.max_inputs} per request"
            )
        samples = config.default_samples if req.samples is None else req.samples
        if not 1 <= samples <= config.max_samples:
            raise HTTPException(422, f"samples={samples}: use 1..{config.max_samples}")
        if not 0.0 < req.level < 1.0 or not math.isfinite(req.level):
            raise HTTPException(422, f"level={req.level}: must be in (0, 1), e.g. 0.8")
        if len(req.quantiles) > config.max_quantiles:
            raise HTTPException(
                422, f"{len(req.quantiles)} quantiles: at most {config.max_quantiles}"
            )
        bad = [q for q in req.quantiles if not 0.0 <= q <= 1.0]
        if bad:
            raise HTTPException(422, f"quantiles {bad}: each must be in [0, 1]")
        try:
            texts = s.model.texts(inputs)
        except (ValueError, TypeError) as e:
            raise HTTPException(422, f"cannot read an input: {e}") from e
        for i, t in enumerate(texts):
            if len(t) > config.max_input_chars:
                raise HTTPException(
                    413,
                    f"input {i} is {len(t):,} characters once serialised: at most "
                    f"max_input_chars={config.max_input_chars:,}",
                )
        try:
            draws = await s.batcher.submit(texts, samples, req.seed)
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
            ),
            "elapsed_ms": round(1000 * (time.perf_counter() - start), 3),
        }
        return JSONResponse(body)

    return app


def _safe_json(errors: Any) -> str:
    return json.dumps(errors, default=str)


def _version() -> str:
    from . import __version__

    return __version__
