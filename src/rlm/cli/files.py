"""How the commands read data files and checkpoints.

``rlm train`` saves how it took inputs from rows (``--x-key`` / ``--x-columns`` / ``--x-column``)
in ``DIR/cli.json``, and ``predict`` / ``eval`` use it by default, so a flat CSV is turned into
the same model input at every step. Rows are read with ``rlm.io`` (the same readers as the API).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..checkpoint import check_checkpoint, is_deployment
from ..io import Example, Layout, file_kind, iter_rows, read_examples, target_names
from ..io.stream import ExampleStream, StreamConfig

if TYPE_CHECKING:
    from ..predictor import Predictor

LAYOUT_FILE = "cli.json"  # how `rlm train` took inputs from rows; read by predict / eval


def columns_option(values: Sequence[str] | None) -> tuple[str, ...] | None:
    """--x-columns may be repeated and/or comma-separated: 'a,b' --x-columns c -> (a, b, c)."""
    if not values:
        return None
    cols = tuple(c.strip() for v in values for c in v.split(",") if c.strip())
    return cols or None


def read_layout_meta(directory: Path) -> dict[str, Any] | None:
    """What ``rlm train`` saved in ``DIR/cli.json`` (layout, data, row counts), if it did."""
    path = directory / LAYOUT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def saved_layout(
    directory: Path | None,
    x_key: str | None,
    x_columns: Sequence[str] | None,
    x_column: str | None,
) -> Layout:
    """Options given on this command line win over the layout saved by ``rlm train``."""
    meta = None if directory is None else read_layout_meta(directory)
    saved = Layout() if meta is None else Layout.from_dict(meta["layout"])
    cols = columns_option(x_columns)
    if cols is not None or x_column is not None:  # a new flat choice replaces the saved one
        return Layout(x_key or saved.x_key, cols, x_column)
    return Layout(x_key or saved.x_key, saved.x_columns, saved.x_column)


def named_paths(
    specs: Sequence[str], default: Callable[[Path], str], what: str, form: str
) -> dict[str, Path]:
    """'PATH' or 'NAME=PATH' -> {name: path}, a plain PATH named ``default(path)``; ``what``
    (e.g. "model") and ``form`` (e.g. "NAME=DIR") word the errors."""
    named: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        p = Path(path) if sep else Path(spec)
        add_named(named, default(p) if not sep else name, p, what, form)
    return named


def add_named(named: dict[str, Any], name: str, value: Any, what: str, form: str) -> None:
    """``named[name] = value``, refusing a name that is not a plain word or is taken."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"{what} name {name!r}: use letters, digits, '_', '.' or '-' ({form})")
    if name in named:
        raise ValueError(f"two {what}s named {name!r}: name them with {form}")
    named[name] = value


def write_layout(directory: Path, layout: Layout, data: str, n_train: int, n_valid: int) -> None:
    meta = {
        "layout": asdict(layout),
        "data": str(data),
        "train_rows": n_train,
        "valid_rows": n_valid,
    }
    (directory / LAYOUT_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def read_labeled(
    path: Path, targets: Sequence[str] | None, layout: Layout, *, any_target: bool = False
) -> list[Example]:
    """Every labeled row of ``path``; ``targets=None`` keeps all targets of a nested file.

    A requested target that the file lacks is an error naming the targets it has. With
    ``any_target`` (scoring a multi-target model on a file with fewer targets) the requested
    targets that the file has are kept instead, and only none at all is an error.
    """
    rec, nested = _first_row(path, targets, layout)
    names = list(targets or ())
    if not nested:
        names = _present(
            names,
            set(rec),
            any_target,
            f"{path} has no target column(s)",
            f"its columns: {list(rec)}",
        )
        return read_examples(
            path,
            targets=names,
            y_key=None,
            x_columns=layout.x_columns,
            x_column=layout.x_column,
        )
    # Nested: read every target, then check the requested ones against what the rows have,
    # so that a typo is reported with the real names instead of as "row 0 has no targets".
    rows = read_examples(path, x_key=layout.x_key, x_columns=layout.x_columns)
    if not names:
        return rows
    have = set(target_names(rows))
    names = _present(
        names, have, any_target, f"{path}: no row has target(s)", f"the rows have {sorted(have)}"
    )
    # like a flat file's columns: only the requested targets (a caller that grows a model for
    # the targets it is given must not meet others)
    keep = [replace(e, y={t: e.y[t] for t in names if t in e.y}) for e in rows]
    return [e for e in keep if e.y]


def _present(
    names: list[str], have: set[str], any_target: bool, lacks: str, instead: str
) -> list[str]:
    """The requested targets that the file has: all of them, or with ``any_target`` at least one;
    otherwise an error naming what is missing and what there is."""
    missing = [t for t in names if t not in have]
    if any_target:
        names = [t for t in names if t in have]
    if missing and (not any_target or not names):
        raise ValueError(f"{lacks} {missing}; {instead}: fix --target")
    return names


def _first_row(
    path: Path, targets: Sequence[str] | None, layout: Layout
) -> tuple[dict[str, Any], bool]:
    """A data file's first row, and whether the file is nested (``{x, y}`` rows); a flat file
    must be given its target columns."""
    if not path.is_file():
        raise ValueError(f"{path} does not exist or is not a file")
    first = next(iter_rows(path), None)
    if first is None:
        raise ValueError(f"{path} has no rows")
    rec = first[1]
    nested = file_kind(path) == "jsonl" and layout.is_nested(rec, list(targets or ()))
    if not nested and not targets:
        raise ValueError(
            f"{path} is a flat file (no {layout.x_key!r} key with a 'y' object): "
            "name its target column(s) with --target"
        )
    return rec, nested


def labeled_stream(
    path: Path,
    targets: Sequence[str] | None,
    layout: Layout,
    train_split: str,
    config: StreamConfig,
) -> tuple[ExampleStream, bool]:
    """``rlm train --stream``: the file's training rows read as training needs them, with the
    layout rules of ``read_labeled``; and whether the file has a split field (then only
    ``train_split`` rows train)."""
    rec, nested = _first_row(path, targets, layout)
    has_split = "split" in rec
    stream = ExampleStream(
        path, targets=targets or None, layout=layout, y_key="y" if nested else None,
        split=train_split if has_split else None, config=config,
    )  # fmt: skip
    return stream, has_split


def split_rows(rows: Sequence[Example], split: str, path: Path) -> list[Example] | None:
    """The rows of one split; None when the file has no split field at all."""
    splits = {e.split for e in rows}
    if splits == {None}:
        return None
    if None in splits:
        raise ValueError(
            f"{path}: some rows have a split and some do not: give every row a split, or none"
        )
    return [e for e in rows if e.split == split]


def splits_of(rows: Sequence[Example]) -> list[str]:
    return sorted({e.split for e in rows if e.split is not None})


def load_model(
    directory: Path,
    runtime: str = "auto",
    threads: int | None = None,
    early_exit: float | None = None,
    device: str = "auto",
    precision: str = "auto",
) -> Predictor:
    """The model in ``directory``: a checkpoint run by PyTorch (imported here, on first use), or
    an ONNX deployment (``rlm export``) run by onnxruntime without torch. ``runtime`` "auto"
    follows the directory; "torch" or "onnx" insist, with an error saying how to get one.
    ``early_exit``: the PyTorch model's ``set_early_exit`` tolerance; ``device`` and
    ``precision``: where PyTorch runs it (``rlm.nn.device``)."""
    check_checkpoint(directory, deployment=True)
    deployed = is_deployment(directory)
    if runtime not in ("auto", "torch", "onnx"):
        raise ValueError(f"--runtime {runtime}: choose auto, torch or onnx")
    if runtime == "onnx" and not deployed:
        raise ValueError(
            f"{directory} is a PyTorch checkpoint: export it first with "
            f"`rlm export {directory} --out DIR`, then pass DIR (or use --runtime torch)"
        )
    if runtime == "torch" and deployed:
        raise ValueError(
            f"{directory} is an ONNX deployment: pass the checkpoint it was exported from, or "
            "use --runtime onnx"
        )
    if deployed and early_exit is not None:
        raise ValueError(
            f"--early-exit runs on PyTorch: {directory} is an ONNX deployment (its encoder "
            "graph runs every layer); pass the checkpoint instead"
        )
    if deployed and (device not in ("auto", "cpu") or precision not in ("auto", "fp32")):
        raise ValueError(
            f"--device {device} --precision {precision}: an ONNX deployment runs on the CPU in "
            "fp32 (onnxruntime); pass the checkpoint it came from to run on PyTorch there"
        )
    if deployed:
        from ..deploy import OnnxRegressor

        return OnnxRegressor.load(directory, threads=threads)
    from ..api import RegressionLM

    model = RegressionLM.load(directory, device=device, precision=precision)  # type: ignore[arg-type]
    return model.set_early_exit(early_exit)


def exit_summary(model: Predictor) -> str | None:
    """The mean exit layer of an early-exit prediction, as a line for stderr (else None)."""
    if getattr(model, "early_exit", None) is None:
        return None
    layers = model.model_config.enc_layers
    return f"early exit: mean exit layer {model.mean_exit_layer():.2f} of {layers}"  # type: ignore[attr-defined]


def target_renames(specs: Sequence[str]) -> dict[str, str]:
    """--target NAME[=AS] options -> {NAME: AS or ""}: DATA's target NAME read as the model's
    AS; two NAMEs read as one AS are refused."""
    out = dict(t.partition("=")[::2] for t in specs)
    as_ = [a or n for n, a in out.items()]
    if len(set(as_)) != len(as_) or len(out) != len(specs):
        raise ValueError(f"--target {list(specs)}: each NAME once, and each learnt as its own AS")
    return out


def renamed(e: Example, names: dict[str, str]) -> Example:
    """The row with each target ``own`` named ``names[own]`` (kept as it is where that is "")."""
    return replace(e, y={names.get(k) or k: v for k, v in e.y.items()})


def tagged(model: Any, task: str, *parts: list[Example] | None) -> tuple[Any, ...]:
    """Each list of rows with ``task`` named under the model's task key (--task)."""
    from ..transfer import mixture

    if model.task_key is None:
        raise ValueError(f"--task {task}: this model has no task key; drop --task")
    return tuple(mixture({task: rows}, model.task_key) if rows else rows for rows in parts)
