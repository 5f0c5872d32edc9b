"""The baselines a practitioner would actually tune: LightGBM, CatBoost and TabM.

``benchmarks/baselines.py`` holds the cheap yardsticks (mean, TF-IDF + Ridge, scikit-learn's
default gradient-boosted tree). These are the strong ones the issue raised the bar to, each
fitted on the same rows, chosen on the same validation rows, in the same run:

* ``lightgbm``: a small grid (num_leaves 7-63, learning rate 0.03/0.1, 200/600 trees,
  min_child_samples 2/5/20), chosen on valid Spearman;
* ``catboost``: 1,000 iterations, early stopping on valid, native categorical features;
* ``tabm``: TabM (Gorishniy et al., ICLR 2025) with piecewise-linear embeddings: an MLP
  ensemble of k=32 members sharing most weights, AdamW 2e-3, batch 32, quantile-normalised
  inputs, standardised (log) target, early stopping on valid Spearman within the RLM's budget.

They need the optional ``bench`` extra (``pip install -e ".[bench]"``); a missing package is an
error that says so, never a silently skipped row. Code inputs have no parsed features: n/a.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from baselines import BaselineResult, Kind, _log_target, nas_edges, tree_features, valid_spearman

TUNED = ("lightgbm", "catboost", "tabm")
LGBM_GRID = {
    "num_leaves": (7, 15, 31, 63),
    "learning_rate": (0.03, 0.1),
    "n_estimators": (200, 600),
    "min_child_samples": (2, 5, 20),
}


def _need(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise SystemExit(
            f"the tuned baselines need {module!r}: pip install -e '.[bench]' (or pass --methods "
            "without lightgbm/catboost/tabm)"
        ) from e


def check_tuned(methods: Sequence[str]) -> None:
    """Import the packages of the requested tuned baselines (SystemExit naming the extra)."""
    need = {"lightgbm": ["lightgbm"], "catboost": ["catboost", "pandas"]}
    need["tabm"] = ["tabm", "rtdl_num_embeddings", "sklearn"]
    for m in TUNED:
        if m in methods:
            for module in need[m]:
                _need(module)


def fit_lightgbm(
    xtr: np.ndarray, ytr: np.ndarray, xva: np.ndarray, yva: np.ndarray, xte: np.ndarray, seed: int
) -> BaselineResult:
    lgb = _need("lightgbm")
    t = time.perf_counter()
    fit_y, scale = _log_target(ytr)
    best: tuple[float, Any] = (-math.inf, None)
    for values in itertools.product(*LGBM_GRID.values()):
        params = dict(zip(LGBM_GRID, values, strict=True))
        model = lgb.LGBMRegressor(**params, n_jobs=2, verbose=-1, random_state=seed)
        model.fit(xtr, fit_y)
        score = valid_spearman(yva, model.predict(xva))
        if score > best[0] or best[1] is None:
            best = (score, model)
    model = best[1]
    leaves = int(model.booster_.trees_to_dataframe().shape[0])
    return BaselineResult(scale.inverse(model.predict(xte)), time.perf_counter() - t, leaves)


def _frame(kind: Kind, rows: Sequence[Any], columns: list[str], cats: set[str]) -> Any:
    """CatBoost's table: numbers as floats (None -> NaN), strings and NAS edges as categories."""
    import pandas as pd

    if kind == "nas":
        return pd.DataFrame([nas_edges(s) for s in rows], columns=columns)
    data = {
        c: [
            str(x.get(c)) if c in cats else (np.nan if x.get(c) is None else float(x[c]))
            for x in rows
        ]
        for c in columns
    }
    return pd.DataFrame(data, columns=columns)


def fit_catboost(
    kind: Kind,
    train_x: Sequence[Any],
    ytr: np.ndarray,
    valid_x: Sequence[Any],
    yva: np.ndarray,
    test_x: Sequence[Any],
    seed: int,
) -> BaselineResult:
    cb = _need("catboost")
    t = time.perf_counter()
    if kind == "nas":
        columns, cats = [f"edge{i}" for i in range(6)], {f"edge{i}" for i in range(6)}
    else:
        rows: Sequence[Mapping[str, Any]] = train_x
        columns = sorted({k for x in rows for k in x})
        cats = {k for x in rows for k, v in x.items() if isinstance(v, str)}
    fit_y, scale = _log_target(ytr)
    model = cb.CatBoostRegressor(
        iterations=1000,
        early_stopping_rounds=100,
        use_best_model=True,
        thread_count=2,
        random_seed=seed,
        verbose=False,
        allow_writing_files=False,
        cat_features=sorted(cats),
    )
    model.fit(
        _frame(kind, train_x, columns, cats),
        fit_y,
        eval_set=(_frame(kind, valid_x, columns, cats), scale.forward(yva)),
    )
    pred = scale.inverse(model.predict(_frame(kind, test_x, columns, cats)))
    return BaselineResult(pred, time.perf_counter() - t, int(model.tree_count_ or 0))


def _tabm_inputs(
    xtr: np.ndarray, others: Sequence[np.ndarray], seed: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Drop columns constant on train, fill NaN with the train median, quantile-normalise."""
    from sklearn.preprocessing import QuantileTransformer

    keep = np.nanstd(xtr, axis=0) > 0
    median = np.nanmedian(xtr[:, keep], axis=0)

    def filled(x: np.ndarray) -> np.ndarray:
        x = x[:, keep].copy()
        nan = np.isnan(x)
        x[nan] = np.broadcast_to(median, x.shape)[nan]
        return x

    qt = QuantileTransformer(
        n_quantiles=min(1000, len(xtr)),
        output_distribution="normal",
        subsample=10**9,
        random_state=seed,
    ).fit(filled(xtr))
    return qt.transform(filled(xtr)), [qt.transform(filled(x)) for x in others]


def fit_tabm(
    xtr: np.ndarray,
    ytr: np.ndarray,
    xva: np.ndarray,
    yva: np.ndarray,
    xte: np.ndarray,
    seed: int,
    budget_s: float,
    patience: int = 16,
) -> BaselineResult:
    """TabM-packed (k=32) with piecewise-linear embeddings, trained like the paper's recipe."""
    tabm, rne = _need("tabm"), _need("rtdl_num_embeddings")
    import torch

    t = time.perf_counter()
    torch.manual_seed(seed)
    xq, (vq, teq) = _tabm_inputs(xtr, [xva, xte], seed)
    fit_y, scale = _log_target(ytr)
    mu, sd = float(fit_y.mean()), float(fit_y.std()) or 1.0
    x, xv, xt = (torch.as_tensor(a, dtype=torch.float32) for a in (xq, vq, teq))
    y = torch.as_tensor((fit_y - mu) / sd, dtype=torch.float32)
    with warnings.catch_warnings():  # binary options have one bin: expected, not a problem
        warnings.filterwarnings("ignore", message=".*just two bin edges.*")
        bins = rne.compute_bins(x, n_bins=min(48, len(x) - 1))
        embeddings = rne.PiecewiseLinearEmbeddings(bins, 16, activation=False, version="B")
    model = tabm.TabM.make(n_num_features=x.shape[1], d_out=1, num_embeddings=embeddings, k=32)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=3e-4)
    gen = torch.Generator().manual_seed(seed)

    def predict(inputs: torch.Tensor) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            out = model(inputs).squeeze(-1).mean(1)  # (N, k, 1) -> mean of the k members
        return out.numpy() * sd + mu

    best, best_state, bad = -math.inf, None, 0
    while bad < patience and time.perf_counter() - t < budget_s:
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(32):
            out = model(x[idx]).squeeze(-1)  # (B, k): every member learns every row
            loss = ((out - y[idx, None]) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        score = valid_spearman(yva, predict(xv))
        if score > best:
            best, bad = score, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
    if best_state is not None:
        model.load_state_dict(best_state)
    params = sum(p.numel() for p in model.parameters())
    return BaselineResult(scale.inverse(predict(xt)), time.perf_counter() - t, params)


def fit_tuned(
    kind: Kind,
    methods: Sequence[str],
    train_x: Sequence[Any],
    train_y: np.ndarray,
    valid_x: Sequence[Any],
    valid_y: np.ndarray,
    test_x: Sequence[Any],
    seed: int,
    budget_s: float,
) -> dict[str, BaselineResult | None]:
    """The requested tuned baselines (``None`` where n/a: code inputs)."""
    wanted = [m for m in TUNED if m in methods]
    if kind == "code":
        return dict.fromkeys(wanted)
    features = tree_features(kind, train_x, [valid_x, test_x])
    assert features is not None  # config or nas
    xtr, (xva, xte) = features
    out: dict[str, BaselineResult | None] = {}
    if "lightgbm" in wanted:
        out["lightgbm"] = fit_lightgbm(xtr, train_y, xva, valid_y, xte, seed)
    if "catboost" in wanted:
        out["catboost"] = fit_catboost(kind, train_x, train_y, valid_x, valid_y, test_x, seed)
    if "tabm" in wanted:
        out["tabm"] = fit_tabm(xtr, train_y, xva, valid_y, xte, seed, budget_s)
    return out
