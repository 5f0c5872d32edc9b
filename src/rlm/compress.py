"""Compression methods of a fitted ``RegressionLM`` (``rlm.api``), each returning a smaller or
faster copy trained briefly: structured pruning (``rlm.nn.prune``) and early-exit heads
(``rlm.nn.exits``), and the setting that predicts with those exits. ``rlm compress`` is their
command line; ``rlm.deploy`` exports the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .blend import check_single
from .io import Example
from .nn.config import TrainConfig
from .nn.decoding import GrammarTable
from .nn.exits import check_exits, check_tolerance
from .nn.prune import check_prunable, importance, prune_network

if TYPE_CHECKING:
    from .api import RegressionLM


class Compression:
    """Mixed into ``RegressionLM``: the methods below use its fitting machinery."""

    def prune(
        self: RegressionLM,
        X: Sequence[Any],
        y: Any = None,
        *,
        amount: float,
        valid: Sequence[Example] | tuple[Sequence[Any], Any] | None = None,
        train: TrainConfig | None = None,
        calibrate: bool = True,
    ) -> RegressionLM:
        """A copy of this model with ``amount`` (0..1) of every block's attention heads and MLP
        neurons removed (the least important on ``X``, ``rlm.nn.prune``): smaller matrices,
        file and compute, then a recovery fine-tune on ``X`` (``train``: how, usually a short
        budget) with its own selection on ``valid`` and calibration. This model is unchanged."""
        tok, codec, net = self._check_fitted()
        check_prunable(net.cfg)  # before the importance pass
        train_ex, valid_ex = self._examples(X, y, valid)
        scores = importance(
            net, self.encode_inputs(train_ex), self._targets(train_ex),
            GrammarTable(codec.grammar), tok.pad_id,
        )  # fmt: skip
        small = self._copy()
        small.net = prune_network(net, scores, amount)
        small.model_config = small.net.cfg
        small.train_config = train or self.train_config
        return small._train(train_ex, valid_ex, None, calibrate)

    def add_exits(
        self: RegressionLM,
        X: Sequence[Any],
        y: Any = None,
        *,
        exits: Sequence[int],
        valid: Sequence[Example] | tuple[Sequence[Any], Any] | None = None,
        train: TrainConfig | None = None,
        calibrate: bool = True,
    ) -> RegressionLM:
        """A copy of this model whose head also reads the encoder after the layers in ``exits``
        (1-based, below the last), fine-tuned on ``X`` on the mean of every exit's loss
        (``train``: how, usually a short budget), so ``set_early_exit`` can stop easy inputs
        early. No weights are added; this model is unchanged."""
        _, _, net = self._check_fitted()
        cfg = replace(net.cfg, exits=tuple(exits))  # validates the layers
        check_exits(cfg)
        train_ex, valid_ex = self._examples(X, y, valid)
        tuned = self._copy()
        assert tuned.net is not None
        tuned.net.cfg = tuned.model_config = cfg
        tuned.train_config = train or self.train_config
        return tuned._train(train_ex, valid_ex, None, calibrate)

    def set_early_exit(self: RegressionLM, tolerance: float | None) -> RegressionLM:
        """Predict with early exit (``rlm.nn.exits``): each input stops at the first exit whose
        greedy point agrees with the previous exit's within ``tolerance`` (relative, e.g. 0.01);
        None: every input runs every layer. Needs a model with exits (``add_exits``). Each
        prediction's exit layers are recorded in ``exit_log`` (cleared here)."""
        if tolerance is not None:
            check_single(self, "early exit")
            check_tolerance(tolerance)
            check_exits(self._check_fitted()[2].cfg)
            if self.task_key is not None:
                raise ValueError(
                    "early exit compares each input's predictions in the units the model "
                    "writes; a model with a task_key writes every task on its own standardised "
                    "scale, where a relative tolerance means nothing: predict at full depth"
                )
        self.early_exit = tolerance
        self.exit_log.clear()
        return self

    def mean_exit_layer(self: RegressionLM) -> float:
        """The mean encoder layer at which inputs exited since ``set_early_exit``."""
        if not self.exit_log:
            raise ValueError("no prediction with early exit yet: set_early_exit(0.01), predict")
        return float(np.concatenate(self.exit_log).mean())
