"""``rlm info``: a checkpoint's configuration and training summary, read without torch."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.table import Table

from ..checkpoint import (
    best_valid_loss,
    check_checkpoint,
    read_history,
    read_meta,
    safetensors_params,
)
from .app import app, out, user_errors
from .files import read_layout_meta
from .format import fmt, kv_table
from .options import CheckpointDir


@app.command()
def info(
    directory: CheckpointDir,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print everything as one JSON object.")
    ] = False,
) -> None:
    """Show a checkpoint's configuration and training summary (fast: does not load torch)."""
    with user_errors():
        check_checkpoint(directory)
        from ..inputs.vocab import InputTokenizer

        meta = read_meta(directory)
        tok = InputTokenizer.load(directory / "tokenizer.json")
        params = safetensors_params(directory / "model.safetensors")
        history = read_history(directory)
        layout = read_layout_meta(directory)
        fields = _fields(meta, tok)
        summary = {
            "checkpoint": str(directory),
            "rlm_version": meta.get("rlm_version"),
            "params": params,
            "targets": meta["targets"]["names"],
            "inputs": (meta.get("inputs") or {}).get("kind", "text"),
            "backbone": ((meta.get("inputs") or {}).get("backbone") or {}).get("model"),
            "task_key": (meta.get("inputs") or {}).get("task_key"),
            "input_vocab_size": tok.vocab_size,
            "epochs_logged": len(history),
            # intervals are calibrated when train had validation rows (split-conformal)
            "calibrated_on_rows": _calibrated_rows(meta.get("calibration")),
        }
        scales = _target_scales(meta)
        if scales:
            summary["target_scales"] = scales
        blend = meta.get("blend")  # rlm.blend: a second model mixed into every draw
        if blend:
            member = directory / blend["member"] / "model.safetensors"
            summary["blend"] = f"{blend['member']}/, {1 - blend['weight']:g} of each draw"
            summary["blend_params"] = safetensors_params(member) if member.is_file() else None
        best = best_valid_loss(history)
        if best is not None:
            summary["best_valid_loss"] = best
        if as_json:
            full = {
                "summary": summary,
                "model": meta["model"],
                "vocab": tok.config.to_dict(),
                "fields": fields,
                "numbers": meta["numbers"],
                "targets": meta["targets"],
                "serializer": meta["serializer"],
                "train": meta["train"],
                "training": meta.get("training"),
                "calibration": meta.get("calibration"),
                "cli": layout,
            }
            typer.echo(json.dumps(full, indent=2))
            return
        shown = dict(summary)
        shown["params"] = fmt(params, "int")
        shown["targets"] = ", ".join(summary["targets"])
        shown.pop("target_scales", None)  # a table of its own below
        out.print(kv_table("checkpoint", {k: str(v) for k, v in shown.items()}))
        out.print(kv_table("model", meta["model"]))
        tgt = Table(title="targets (number codec)", title_justify="left")
        for col in ("target", "scheme", "digits", "range / bounds", "fill"):
            tgt.add_column(col)
        for name, num, fill in zip(
            meta["targets"]["names"],
            meta["targets"]["numbers"],
            meta["targets"]["fill"],
            strict=True,
        ):
            tgt.add_row(name, num["scheme"], _digits(num), _range(num), fmt(fill))
        out.print(tgt)
        if scales:
            out.print(kv_table("target scales (what the value head or each task learns)", scales))
        if fields is not None:
            out.print(kv_table("field encoding", {**fields["config"], "keys": fields["keys"]}))
            out.print(kv_table("fields (how each key is read)", fields["fields"]))
        out.print(kv_table("input vocabulary", tok.config.to_dict()))
        out.print(kv_table("serializer", meta["serializer"]))
        out.print(kv_table("training config", meta["train"]))
        training = meta.get("training")
        if training:
            selection = training.get("selection")
            out.print(
                kv_table("training run", {k: v for k, v in training.items() if k != "selection"})
            )
            if selection:
                out.print(_selection_table(selection))
        if layout:
            out.print(kv_table("data (rlm train)", layout))


def _target_scales(meta: Mapping[str, Any]) -> dict[str, str]:
    """How each target reaches its unit scale (``rlm.numbers.scaling``): per task with a
    task_key, then the value head's; e.g. ``log(y), ranks (87 knots), standardised``."""
    shown: dict[str, str] = {}
    tasks = meta.get("task_scaling")
    for task, scaler in ((tasks or {}).get("scalers") or {}).items():
        shown.update(_scale_lines(scaler, f"task {task}: "))
    if meta.get("scaler"):
        shown.update(_scale_lines(meta["scaler"], "value head: " if tasks else ""))
    return shown


def _scale_lines(scaler: Mapping[str, Any], prefix: str) -> dict[str, str]:
    names = scaler["names"]
    offsets = scaler.get("offset") or [0.0] * len(names)
    ranks = scaler.get("ranks") or [None] * len(names)
    lines = {}
    for name, log, c, rank in zip(names, scaler["log"], offsets, ranks, strict=True):
        steps = [f"log(y + {c:g})" if c else "log(y)"] if log else []
        steps += [f"ranks ({len(rank['values'])} knots)"] if rank else []
        lines[f"{prefix}{name}"] = ", ".join([*steps, "standardised"])
    return lines


def _selection_table(selection: Mapping[str, Any]) -> Table:
    """The candidates a fit chose between (``rlm.selection``), the chosen one marked."""
    budget = selection.get("budget_s")
    title = "model selection on the valid rows" + (f" ({fmt(budget)} s budget)" if budget else "")
    table = Table(title=title, title_justify="left")
    for col in ("candidate", "valid Spearman", "budget s", "train s", "chosen"):
        table.add_column(col)
    blend = selection.get("blend") or {}  # rlm.blend: the runner-up mixed in, or not
    weight = blend.get("weight", 1.0)
    if blend.get("tried"):  # the share of each draw: the chosen model's, the rest the other's
        table.caption = "the chosen model's share of each draw, tried on the valid rows: " + (
            ", ".join(f"{t['weight']:g} -> {fmt(t['valid_spearman'])}" for t in blend["tried"])
        )
    for c in selection["candidates"]:
        chosen = "yes" if c["name"] == selection["chosen"] else ""
        if blend.get("member") and chosen:
            chosen = f"yes, {weight:g} of each draw"
        elif c["name"] == blend.get("member"):
            chosen = f"blended, {1 - weight:g}"
        # a selection saved before the shares followed each other: one share for all
        share = c.get("budget_s", selection.get("budget_share_s"))
        table.add_row(c["name"], fmt(c["valid_spearman"]), fmt(share), fmt(c["seconds"]), chosen)
    return table


def _calibrated_rows(cal: Mapping[str, Any] | None) -> Any:
    """Held-out rows per objective; per task too when calibrated per task."""
    if cal is None:
        return None
    if "tasks" not in cal:
        return cal["rows"]
    return {"all": cal["pooled"]["rows"], **{t: c["rows"] for t, c in cal["tasks"].items()}}


def _fields(meta: Mapping[str, Any], tok: Any) -> dict[str, Any] | None:
    """The field encoder's description, or None for a text model (and every rlm 0.1 model)."""
    inputs = meta.get("inputs") or {}
    if inputs.get("kind") != "fields":
        return None
    from ..inputs.fields import FieldEncoder

    return FieldEncoder.from_dict(inputs["fields"], tok).describe()


def _digits(num: Mapping[str, Any]) -> str:
    if num["scheme"] == "ieee":
        return f"{num['mantissa_digits']} mantissa, {num['exponent_digits']} exponent (base {num['base']})"
    return f"{num['mantissa_digits']} (base {num['base']})"


def _range(num: Mapping[str, Any]) -> str:
    if num["scheme"] == "normalized":
        lo, hi = num["bounds"]
        return f"[{fmt(lo)}, {fmt(hi)}]"
    if num["scheme"] == "p10":
        return f"exponents {num['exponent_min']}..{num['exponent_max']}"
    # ieee: d.ddd x B^e with |e| <= B^E - 1, so nonzero magnitudes in [B^-emax, B^(emax+1))
    b, e = num["base"], num["base"] ** num["exponent_digits"] - 1
    return f"0 or |y| in [{b}^-{e}, {b}^{e + 1})"
