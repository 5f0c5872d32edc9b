"""Targets as standardised floats, for the value heads (MSE, Gaussian) that regress them directly.

The digit decoder reads and writes numbers at any scale; a regression head outputs one float
per objective, so each objective is first put on a unit scale: logarithm when every training
value is positive and they span a decade or more (latencies, memory, run times are
heavy-tailed; least squares on the raw scale would be ruled by a few huge rows), then the
training mean and standard deviation. Narrow-range targets (accuracies, PSNR) stay linear,
where ``exp`` of an extrapolation cannot explode. The same rule picks the baselines' log
scale in ``benchmarks/baselines.py``. Torch-free; saved with the checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..strict import strict_from_dict


def wants_log(values: np.ndarray) -> bool:
    """All positive and spanning at least a decade: fit in log space."""
    return bool(values.size and np.all(values > 0) and values.max() >= 10.0 * values.min())


@dataclass(frozen=True)
class ScaledTargets:
    """What a value head trains on: (N, K) unit-scale targets and the (N, K) presence mask."""

    values: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class TargetScaler:
    """Per objective: log or not, then (value - mean) / std."""

    names: tuple[str, ...]
    log: tuple[bool, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, rows: Sequence[Mapping[str, float]], names: Sequence[str]) -> TargetScaler:
        logs, means, stds = [], [], []
        for name in names:
            v = np.array([r[name] for r in rows if name in r], dtype=float)
            if v.size == 0:
                raise ValueError(f"no training row has target {name!r}: drop it from targets")
            log = wants_log(v)
            z = np.log(v) if log else v
            logs.append(log)
            means.append(float(z.mean()))
            stds.append(float(z.std()) or 1.0)  # a constant target: unit scale, not 0
        return cls(tuple(names), tuple(logs), tuple(means), tuple(stds))

    def transform(self, rows: Sequence[Mapping[str, float]]) -> ScaledTargets:
        """Targets (N, K) on the unit scale, and a (N, K) mask of the objectives present."""
        out = np.zeros((len(rows), len(self.names)), dtype=np.float32)
        mask = np.zeros_like(out)
        for k, name in enumerate(self.names):
            for i, r in enumerate(rows):
                if name not in r:
                    continue
                if self.log[k] and r[name] <= 0:
                    raise ValueError(
                        f"row {i}: target {name!r} is {r[name]}, but this model fits {name!r} "
                        "in log space (every training value was positive): it cannot take <= 0"
                    )
                v = np.log(r[name]) if self.log[k] else r[name]
                out[i, k] = (v - self.mean[k]) / self.std[k]
                mask[i, k] = 1.0
        return ScaledTargets(out, mask)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """Unit-scale values (..., K) back to target units."""
        v = np.asarray(z, dtype=float) * np.array(self.std) + np.array(self.mean)
        log = np.array(self.log)
        return np.where(log, np.exp(np.where(log, v, 0.0)), v)

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "log": list(self.log),
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TargetScaler:
        return strict_from_dict(cls, d, tuples=("names", "log", "mean", "std"))
