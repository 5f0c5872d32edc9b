"""``rlm serve``: serve one or several checkpoints over HTTP (needs the ``serve`` extra)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..checkpoint import check_checkpoint
from .app import app, err, user_errors
from .files import load_model, named_paths
from .options import Device, PrecisionKind, PrecisionOption, Runtime

if TYPE_CHECKING:
    from ..predictor import Predictor


def _named_checkpoints(specs: Sequence[str]) -> dict[str, Path]:
    """'DIR' or 'NAME=DIR' -> {name: directory}; a plain DIR is served under its folder name."""
    named = named_paths(specs, lambda d: d.resolve().name or "model", "model", "NAME=DIR")
    for directory in named.values():
        check_checkpoint(directory, deployment=True)
    return named


def _unit_labels(specs: Sequence[str] | None) -> dict[str, str]:
    units: dict[str, str] = {}
    for spec in specs or ():
        target, sep, unit = spec.partition("=")
        if not sep or not target or not unit:
            raise ValueError(f"--unit {spec!r}: write TARGET=UNIT, e.g. --unit latency_ms=ms")
        units[target] = unit
    return units


Directories = Annotated[
    list[str],
    typer.Argument(
        metavar="DIR",
        help="Checkpoint directories (rlm train --out). NAME=DIR serves one under NAME "
        "(default: the folder's name); the first is the default model.",
    ),
]
Host = Annotated[
    str, typer.Option(help="Address to listen on; the default keeps it on this machine.")
]
Port = Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")]
Units = Annotated[
    list[str] | None,
    typer.Option(
        "--unit",
        metavar="TARGET=UNIT",
        help="Unit label for a target, shown in responses and the playground; repeatable.",
    ),
]
DefaultSamples = Annotated[
    int, typer.Option(min=1, help="Samples per input when a request does not say.")
]
MaxSamples = Annotated[int, typer.Option(min=1, help="Most samples per input.")]
MaxInputs = Annotated[int, typer.Option(min=1, help="Most inputs in one request.")]
MaxInputChars = Annotated[
    int, typer.Option(min=1, help="Most characters in one input, once serialised.")
]
MaxBodyBytes = Annotated[int, typer.Option(min=1, help="Largest request body, in bytes.")]
MaxBatch = Annotated[
    int,
    typer.Option(min=1, help="Most inputs in one model call across requests (1: no batching)."),
]
BatchWaitMs = Annotated[
    float,
    typer.Option(min=0.0, help="How long a batch's first request may wait for others, in ms."),
]
MaxQueue = Annotated[
    int, typer.Option(min=1, help="Requests waiting per model before answering 503.")
]
Threads = Annotated[
    int | None,
    typer.Option(
        min=1, help="torch threads, or onnxruntime threads per graph (default: their choice)."
    ),
]


def _units_per_model(
    models: Mapping[str, Predictor], labels: Mapping[str, str]
) -> dict[str, dict[str, str]]:
    """--unit labels split by model; a label for a target no model has is an error."""
    known = {t for m in models.values() for t in m.targets or ()}
    unknown = sorted(set(labels) - known)
    if unknown:
        raise ValueError(f"--unit for {unknown}: the models' targets are {sorted(known)}")
    return {
        name: {t: u for t, u in labels.items() if t in (m.targets or ())}
        for name, m in models.items()
    }


@app.command()
def serve(
    directories: Directories,
    host: Host = "127.0.0.1",
    port: Port = 8000,
    unit: Units = None,
    samples: DefaultSamples = 64,
    max_samples: MaxSamples = 256,
    max_inputs: MaxInputs = 64,
    max_input_chars: MaxInputChars = 20_000,
    max_body_bytes: MaxBodyBytes = 1_000_000,
    max_batch: MaxBatch = 256,
    batch_wait_ms: BatchWaitMs = 5.0,
    max_queue: MaxQueue = 256,
    threads: Threads = None,
    runtime: Runtime = "auto",
    device: Device = "auto",
    precision: PrecisionOption = PrecisionKind.auto,
) -> None:
    """Serve models over HTTP: POST /predict (micro-batched), GET /health and /model, API docs
    at /docs, and a playground page at / that plots the predicted distribution of an input."""
    with user_errors():
        try:
            import uvicorn

            from ..serve import ServeConfig, create_app
        except ImportError as e:
            raise ValueError(
                f"rlm serve needs the serve extra ({e.name or e} is missing): "
                "pip install 'rlm[serve]'"
            ) from e
        config = ServeConfig(
            max_inputs=max_inputs,
            max_samples=max_samples,
            default_samples=samples,
            max_input_chars=max_input_chars,
            max_body_bytes=max_body_bytes,
            max_batch=max_batch,
            batch_wait_ms=batch_wait_ms,
            max_queue=max_queue,
        )
        named = _named_checkpoints(directories)
        models = {
            name: load_model(d, runtime, threads, None, device, precision.value)
            for name, d in named.items()
        }
        units = _units_per_model(models, _unit_labels(unit))
        if threads is not None and any(m.runtime_name == "torch" for m in models.values()):
            import torch

            torch.set_num_threads(threads)
        server_app = create_app(models, config, units=units, directories=named)
    shown = f"[{host}]" if ":" in host else host
    err.print(
        f"serving {', '.join(models)} on http://{shown}:{port}/ (playground at /, API docs at "
        "/docs); Ctrl+C stops",
        soft_wrap=True,
    )
    uvicorn.run(server_app, host=host, port=port, log_level="info")
