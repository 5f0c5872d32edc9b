"""Headline summary of an accuracy-benchmark report: the issue's three targets, task by task.

1. At the largest train size (1,000, or all rows when fewer), does the RLM beat the best
   baseline on Spearman? By how much?
2. At 100 rows per task, does the shared model (multi-task for systems, multi-objective for
   nas201) beat the single-task RLM?
3. Is the calibrated 80% interval's coverage within 5 points of nominal?

Pure functions of the report dict (``accuracy.json``), so the Markdown can be re-rendered from a
committed JSON without re-running anything (``accuracy.py --render``).
"""

from __future__ import annotations

from typing import Any

BASELINES = ("tfidf_ridge", "gbt", "lightgbm", "catboost", "tabm")
TREES = ("gbt", "lightgbm", "catboost")  # "the best tree": the best of these on test, per row
RLMS = (
    "rlm",
    "rlm_digits",
    "rlm_mse",
    "rlm_select",
    "rlm_multi",
    "rlm_multi_ft",
    "rlm_multi_blend",
    "rlm_backbone",
    "rlm_strip",
    "rlm_split",
    "rlm_backbone_align",
)  # every RLM variant a report may hold
# no method learns anything on redis at any size (best test Spearman 0.13): it counts nowhere
NO_SIGNAL = ("systems/redis",)
NOMINAL = 0.8
TOLERANCE = 0.05


def _spearman(r: dict[str, Any] | None) -> float | None:
    return None if r is None else r.get("spearman")


def _largest(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    key = max(result["sizes"], key=int)
    return key, result["sizes"][key]["methods"]


def vs_baselines(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per task at its largest size: best baseline, RLM, shared RLM, and the margins."""
    rows = []
    for name, result in report["tasks"].items():
        key, methods = _largest(result)
        scored = [(m, _spearman(methods.get(m))) for m in BASELINES]
        scored = [(m, v) for m, v in scored if v is not None]
        best_m, best_v = max(scored, key=lambda mv: mv[1]) if scored else (None, None)
        single, shared = _spearman(methods.get("rlm")), _spearman(methods.get("rlm_multi"))
        rows.append(
            {
                "task": name,
                "n_train": int(key),
                "best_baseline": best_m,
                "baseline_spearman": best_v,
                "rlm_spearman": single,
                "rlm_multi_spearman": shared,
                "rlm_margin": None if single is None or best_v is None else single - best_v,
                "rlm_multi_margin": None if shared is None or best_v is None else shared - best_v,
            }
        )
    return rows


def vs_tuned(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per task and size where the tuned baselines ran: the best tree (best test Spearman of
    gbt, LightGBM, CatBoost), TabM and every RLM variant that ran, Spearman and MAPE each."""
    rows = []
    for name, result in report["tasks"].items():
        for key, block in sorted(result["sizes"].items(), key=lambda kv: int(kv[0])):
            methods = block["methods"]
            trees = [(m, methods[m]) for m in TREES if _spearman(methods.get(m)) is not None]
            if not any(m in methods for m in ("lightgbm", "catboost", "tabm")) or not trees:
                continue
            best_m, best = max(trees, key=lambda mr: mr[1]["spearman"])
            tabm = methods.get("tabm") or {}
            rlms = {
                m: {"spearman": r.get("spearman"), "mape": r.get("mape"), "model": r.get("model")}
                for m in RLMS
                if (r := methods.get(m)) is not None
            }
            rows.append(
                {
                    "task": name,
                    "n_train": int(key),
                    "best_tree": best_m,
                    "tree_spearman": best["spearman"],
                    "tree_mape": best.get("mape"),
                    "tabm_spearman": tabm.get("spearman"),
                    "tabm_mape": tabm.get("mape"),
                    "rlms": rlms,
                }
            )
    return rows


def _at_least(rows: list[dict[str, Any]], variant: str, key: str) -> tuple[int, int]:
    """(rows where the variant's Spearman is >= the ``key`` baseline's, rows with both)."""
    pairs = [
        (r["rlms"][variant]["spearman"], r[key])
        for r in rows
        if variant in r["rlms"]
        and r["rlms"][variant]["spearman"] is not None
        and r[key] is not None
        and r["task"] not in NO_SIGNAL
    ]
    return sum(a >= b for a, b in pairs), len(pairs)


def _tuned_markdown(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []

    def pct(v: float | None) -> str:
        return "—" if v is None else f"{v:.2f}"

    variants = [m for m in RLMS if any(m in r["rlms"] for r in rows)]
    counts = "; ".join(
        f"`{v}` >= the best tree on {_at_least(rows, v, 'tree_spearman')[0]} of "
        f"{_at_least(rows, v, 'tree_spearman')[1]}, >= TabM on "
        f"{_at_least(rows, v, 'tabm_spearman')[0]} of {_at_least(rows, v, 'tabm_spearman')[1]}"
        for v in variants
    )
    head = "".join(f" {v} | MAPE % |" for v in variants)
    lines = [
        "",
        "**RLM vs the tuned baselines (best of gbt/LightGBM/CatBoost on test; TabM), Spearman "
        f"and MAPE.** {counts} ({', '.join(NO_SIGNAL)} not counted: no signal).",
        "",
        f"| task | n train | best tree | Spearman | MAPE % | tabm | MAPE % |{head}",
        "|---|---:|---|---:|---:|---:|---:|" + "---:|---:|" * len(variants),
    ]
    for r in rows:
        cells = "".join(
            f" {_f(r['rlms'].get(v, {}).get('spearman'))}{_model(r['rlms'].get(v, {}))} | "
            f"{pct(r['rlms'].get(v, {}).get('mape'))} |"
            for v in variants
        )
        lines.append(
            f"| {r['task']} | {r['n_train']} | {r['best_tree']} | {_f(r['tree_spearman'])} | "
            f"{pct(r['tree_mape'])} | {_f(r['tabm_spearman'])} | {pct(r['tabm_mape'])} |{cells}"
        )
    return lines


def _model(rlm: dict[str, Any]) -> str:
    """`` (mse4)``: the head (and members) of an RLM row that was not the digit decoder."""
    model = rlm.get("model")
    return "" if model in (None, "digits") else f" ({model})"


def shared_vs_single(report: dict[str, Any], size: str = "100") -> list[dict[str, Any]]:
    """Per task with a shared model at ``size`` rows: its Spearman against the single-task RLM."""
    rows = []
    for name, result in report["tasks"].items():
        block = result["sizes"].get(size)
        if block is None or block["methods"].get("rlm_multi") is None:
            continue
        single = _spearman(block["methods"].get("rlm"))
        shared = _spearman(block["methods"]["rlm_multi"])
        rows.append(
            {
                "task": name,
                "rlm_spearman": single,
                "rlm_multi_spearman": shared,
                "margin": None if single is None or shared is None else shared - single,
            }
        )
    return rows


def coverage(report: dict[str, Any]) -> dict[str, Any]:
    """Calibrated and raw 80% coverage over every RLM row (task x size x rlm/rlm_multi)."""
    cal, raw = [], []
    for result in report["tasks"].values():
        for block in result["sizes"].values():
            for m in RLMS:
                r = block["methods"].get(m)
                if r is not None and "coverage" in r:
                    cal.append(r["coverage"])
                    raw.append(r.get("coverage_raw"))

    def within(values: list[float]) -> int:
        return sum(abs(v - NOMINAL) <= TOLERANCE for v in values if v is not None)

    return {
        "rows": len(cal),
        "calibrated_within_5pts": within(cal),
        "raw_within_5pts": within(raw),
        "calibrated_mean_abs_error": _mean([abs(v - NOMINAL) for v in cal]),
        "raw_mean_abs_error": _mean([abs(v - NOMINAL) for v in raw if v is not None]),
        "calibrated_min": min(cal) if cal else None,
        "calibrated_max": max(cal) if cal else None,
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _f(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "—"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def summary_markdown(report: dict[str, Any]) -> list[str]:
    """The Markdown lines of the summary section."""
    vb = vs_baselines(report)
    wins = sum(1 for r in vb if r["rlm_margin"] is not None and r["rlm_margin"] > 0)
    wins_any = sum(
        1
        for r in vb
        if any(m is not None and m > 0 for m in (r["rlm_margin"], r["rlm_multi_margin"]))
    )
    lines = [
        "## Summary",
        "",
        f"**RLM vs the best baseline (Spearman, largest train size).** The single-task RLM beats "
        f"the best baseline on {wins} of {len(vb)} tasks; the single-task or the shared model "
        f"on {wins_any} of {len(vb)}.",
        "",
        "| task | n train | best baseline | its Spearman | rlm | margin | rlm_multi | margin |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in vb:
        lines.append(
            f"| {r['task']} | {r['n_train']} | {r['best_baseline'] or '—'} | "
            f"{_f(r['baseline_spearman'])} | {_f(r['rlm_spearman'])} | "
            f"{_f(r['rlm_margin'], True)} | {_f(r['rlm_multi_spearman'])} | "
            f"{_f(r['rlm_multi_margin'], True)} |"
        )
    lines += _tuned_markdown(vs_tuned(report))
    sv = shared_vs_single(report)
    if sv:
        better = sum(1 for r in sv if r["margin"] is not None and r["margin"] > 0)
        lines += [
            "",
            f"**Shared model vs single-task RLM at 100 train rows per task.** The shared model "
            f"(multi-task for systems, multi-objective for nas201) is better on {better} of "
            f"{len(sv)} tasks.",
            "",
            "| task | rlm | rlm_multi | margin |",
            "|---|---:|---:|---:|",
        ]
        lines += [
            f"| {r['task']} | {_f(r['rlm_spearman'])} | {_f(r['rlm_multi_spearman'])} | "
            f"{_f(r['margin'], True)} |"
            for r in sv
        ]
    c = coverage(report)
    if c["rows"]:
        lines += [
            "",
            f"**80% interval coverage.** Calibrated: {c['calibrated_within_5pts']} of {c['rows']} "
            f"RLM rows within 5 points of 80% (mean |error| "
            f"{100 * (c['calibrated_mean_abs_error'] or 0):.1f} points, range "
            f"{100 * c['calibrated_min']:.0f}-{100 * c['calibrated_max']:.0f}%). Raw sample "
            f"quantiles: {c['raw_within_5pts']} of {c['rows']} (mean |error| "
            f"{100 * (c['raw_mean_abs_error'] or 0):.1f} points).",
        ]
    return [*lines, ""]
