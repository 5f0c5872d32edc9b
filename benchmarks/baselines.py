"""Classical baselines for the accuracy benchmark: feature parsing and fitting.

Kept out of ``src/rlm`` on purpose: these are yardsticks for the benchmark, not part of the
library. Every baseline is fitted on the same training rows as the RLM and, where it has a
hyper-parameter worth choosing, chooses it on the same validation rows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from rlm.numbers.scaling import from_log, log_offset, to_log

Kind = Literal["config", "nas", "code"]
RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0)


@dataclass(frozen=True)
class BaselineResult:
    pred: np.ndarray  # (n_test,) point predictions on the original target scale
    train_s: float  # wall-clock seconds of fitting (and alpha selection), not prediction
    params: int  # fitted numbers (coefficients, tree nodes); -1 when not meaningful


def config_tokens(x: Mapping[str, Any]) -> list[str]:
    """``key=value`` tokens of a configuration: each option setting is one vocabulary item."""
    return [f"{k}={v}" for k, v in sorted(x.items())]


def _is_number(v: Any) -> bool:
    return v is not None and not isinstance(v, str)


def config_features(
    train_x: Sequence[Mapping[str, Any]], other_x: Sequence[Sequence[Mapping[str, Any]]]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Numeric matrix of configurations: numbers as-is, strings one-hot, ``None`` as NaN (a key
    null in every training row gets no column: scikit-learn's trees fail on all-NaN columns).

    Columns come from the training rows only, so a string value unseen in training maps to
    all-zero indicators (as a deployed model would see it). Trees handle NaN natively.
    """
    numeric: list[str] = []
    categorical: list[str] = []
    for x in train_x:
        for k, v in x.items():
            if isinstance(v, str):
                if f"{k}={v}" not in categorical:
                    categorical.append(f"{k}={v}")
            elif k not in numeric:
                numeric.append(k)
    # a key with no number in any training row (always null, or null or a string) gets no
    # numeric column (order otherwise unchanged)
    numeric = [k for k in numeric if any(_is_number(x.get(k)) for x in train_x)]
    num_idx = {k: i for i, k in enumerate(numeric)}
    cat_idx = {k: len(numeric) + i for i, k in enumerate(categorical)}

    def encode(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        out = np.zeros((len(rows), len(numeric) + len(categorical)))
        out[:, : len(numeric)] = np.nan
        for r, x in enumerate(rows):
            for k, v in x.items():
                if isinstance(v, str):
                    if f"{k}={v}" in cat_idx:
                        out[r, cat_idx[f"{k}={v}"]] = 1.0
                elif k in num_idx and v is not None:
                    out[r, num_idx[k]] = float(v)
        return out

    return encode(train_x), [encode(rows) for rows in other_x]


def nas_edges(s: str) -> list[str]:
    """The six edge operations of a NAS-Bench-201 cell, in order (the edge index is implied)."""
    return [e.split("~")[0] for e in s.strip("|").replace("|+|", "|").split("|")]


def tree_features(
    kind: Kind, train_x: Sequence[Any], others: Sequence[Sequence[Any]]
) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """Parsed features for the trees (and TabM): numeric options, or one-hot edge operations.
    Programs have no parse that is fair to every task here: None (n/a) for code."""
    if kind == "config":
        return config_features(train_x, others)
    if kind != "nas":
        return None
    from sklearn.preprocessing import OneHotEncoder

    enc = OneHotEncoder(handle_unknown="ignore")
    ftr = enc.fit_transform([nas_edges(s) for s in train_x]).toarray()
    return ftr, [enc.transform([nas_edges(s) for s in rows]).toarray() for rows in others]


def valid_spearman(y: np.ndarray, pred: np.ndarray) -> float:
    """Spearman for choosing on valid; -inf where undefined (constant predictions or targets)."""
    from rlm.predict.metrics import spearman

    if np.ptp(pred) == 0 or np.ptp(y) == 0:
        return -math.inf
    return spearman(y, pred)


@dataclass(frozen=True)
class LogTarget:
    """The scale the baselines fit: ``log(y + offset)``, or ``y`` itself (offset None)."""

    offset: float | None

    def forward(self, y: np.ndarray) -> np.ndarray:
        return y if self.offset is None else to_log(y, self.offset)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return z if self.offset is None else from_log(z, self.offset)


def _log_target(y: np.ndarray) -> tuple[np.ndarray, LogTarget]:
    """The training targets on the scale fitted, and that scale: log space by the rule of the
    RLM's value heads (``log_offset``): no negative target and the positive ones spanning a
    decade or more, ``log(y + c)`` where some are 0.

    Latencies, memory and run times are heavy-tailed; least squares on the raw scale would be
    dominated by a few huge rows, while the RLM's floating-point number tokens are
    scale-free. The log transform gives the baselines the same footing. Narrow-range targets
    (accuracies, PSNR) stay on their own scale, where exp() of an extrapolation cannot explode.
    """
    scale = LogTarget(log_offset(y))
    return scale.forward(y), scale


def _tree_nodes(model: Any) -> int:
    # scikit-learn keeps its fitted trees in a private list; count nodes when it is there
    predictors = getattr(model, "_predictors", None)
    if predictors is None:
        return -1
    return int(sum(len(tree.nodes) for stage in predictors for tree in stage))


def fit_baselines(
    kind: Kind,
    train_x: Sequence[Any],
    train_y: np.ndarray,
    valid_x: Sequence[Any],
    valid_y: np.ndarray,
    test_x: Sequence[Any],
    seed: int,
) -> dict[str, BaselineResult | None]:
    """Mean, TF-IDF + Ridge and gradient-boosted trees; ``None`` marks a baseline that is n/a."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge

    out: dict[str, BaselineResult | None] = {}
    t = time.perf_counter()
    mean_pred = np.full(len(test_x), float(np.mean(train_y)))
    out["mean"] = BaselineResult(mean_pred, time.perf_counter() - t, 1)

    fit_y, scale = _log_target(train_y)

    # TF-IDF: character n-grams for strings (cells, programs), option=value tokens for configs
    t = time.perf_counter()
    if kind == "config":
        tfidf = TfidfVectorizer(analyzer=config_tokens)
    else:
        tfidf = TfidfVectorizer(analyzer="char", ngram_range=(2, 5), max_features=50_000)
    xtr = tfidf.fit_transform(train_x)
    xva, xte = tfidf.transform(valid_x), tfidf.transform(test_x)
    best: tuple[float, Any] = (-math.inf, None)
    for alpha in RIDGE_ALPHAS:  # alpha chosen by validation Spearman, the headline metric
        ridge = Ridge(alpha=alpha).fit(xtr, fit_y)
        pv = ridge.predict(xva)
        score = valid_spearman(valid_y, pv)
        if score > best[0] or best[1] is None:
            best = (score, ridge)
    ridge = best[1]
    out["tfidf_ridge"] = BaselineResult(
        scale.inverse(ridge.predict(xte)), time.perf_counter() - t, int(ridge.coef_.size + 1)
    )

    t = time.perf_counter()
    features = tree_features(kind, train_x, [test_x])
    if features is None:
        out["gbt"] = None
        return out
    ftr, (fte,) = features
    gbt = HistGradientBoostingRegressor(random_state=seed).fit(ftr, fit_y)
    out["gbt"] = BaselineResult(
        scale.inverse(gbt.predict(fte)), time.perf_counter() - t, _tree_nodes(gbt)
    )
    return out
