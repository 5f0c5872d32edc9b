"""``rlm demo``: learn NAS-Bench-201 cell -> CIFAR-10 accuracy from the bundled data, score it
beside a predict-the-mean baseline, plot it, and predict one unseen cell."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.table import Table

from ..inputs.vocab import VocabConfig
from ..io import Example, Layout
from .app import app, out, stopped_training, user_errors
from .files import write_layout
from .format import fmt
from .options import NoProgress

if TYPE_CHECKING:
    from ..api import Predictions, RegressionLM

DEMO_PATTERN = r"[a-z_0-9]+~\d|\+"  # one token per NAS-Bench-201 edge, plus the node separator
DEMO_TARGET = "cifar10_test_acc"
DEMO_TRAIN_ROWS = 1000


@dataclass(frozen=True)
class DemoPlan:
    """What `rlm demo` trains; --quick swaps in a tiny model for tests and smoke runs."""

    preset: str
    time_budget_s: float
    max_epochs: int
    batch_size: int
    lr: float
    samples: int


DEMO_FULL = DemoPlan(
    preset="small", time_budget_s=140.0, max_epochs=30, batch_size=32, lr=1e-3, samples=64
)
DEMO_QUICK = DemoPlan(
    preset="tiny", time_budget_s=8.0, max_epochs=15, batch_size=32, lr=3e-3, samples=16
)


@app.command()
def demo(
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Where the model, metrics and scatter.png go.")
    ] = Path("runs/demo"),
    quick: Annotated[
        bool, typer.Option("--quick", help="Tiny model, ~20 s: a smoke test of the whole path.")
    ] = False,
    time_budget: Annotated[
        float | None,
        typer.Option(min=1.0, help="Override the training time budget, in seconds."),
    ] = None,
    no_progress: NoProgress = False,
) -> None:
    """Learn NAS-Bench-201 cell -> CIFAR-10 accuracy from 1,000 examples, compare with a baseline.

    Trains a small model (each cell edge is one input token) with early stopping on the demo
    valid split, scores it on the test split next to a predict-the-mean baseline, writes
    DIR/scatter.png and the checkpoint to DIR, and predicts one unseen cell with its interval.
    """
    with user_errors():
        from ..predict.plots import require_matplotlib

        require_matplotlib()  # the demo ends with a plot: say so before training, not after
        _run_demo(out_dir, DEMO_QUICK if quick else DEMO_FULL, time_budget, not no_progress)


def _run_demo(out_dir: Path, plan: DemoPlan, budget: float | None, progress: bool) -> None:
    from ..io import load_demo, subset
    from ..predict import plots

    start = time.perf_counter()
    train_rows = subset(load_demo("nas201", "train"), DEMO_TRAIN_ROWS, seed=0)
    valid_rows = load_demo("nas201", "valid")
    test_rows = load_demo("nas201", "test")
    out.rule("rlm demo: NAS-Bench-201 cell -> CIFAR-10 test accuracy (%)")
    out.print(
        f"{len(train_rows):,} train / {len(valid_rows):,} valid / {len(test_rows):,} test cells; "
        f"input e.g. {test_rows[0].x}"
    )
    model = _train(out_dir, plan, budget, progress, train_rows, valid_rows)
    result = model.result
    assert result is not None
    pred = model.distribution(test_rows, samples=plan.samples, level=0.8, seed=0)
    true = np.array([e.y[DEMO_TARGET] for e in test_rows])
    spearman = _print_scores(model, plan, pred, train_rows, true)
    best = result.best_epoch if result.best_epoch >= 1 else None
    out.print(
        f"trained {result.epochs} epoch{'s' if result.epochs != 1 else ''} in "
        f"{result.seconds:.0f} s (best epoch {fmt(best, 'int')}, stopped by {result.stopped})"
    )
    scatter = plots.scatter(
        true,
        pred.point[:, 0],
        out_dir / "scatter.png",
        f"NAS-Bench-201 CIFAR-10 accuracy, test (Spearman {fmt(spearman, 'corr')})",
        lower=pred.lower[:, 0],
        upper=pred.upper[:, 0],
    )
    # One unseen cell, predicted from its string alone, as a user would.
    cell = test_rows[0]
    one = model.distribution([cell.x], samples=plan.samples, level=0.8, seed=1)
    out.print(
        f"\nnew cell {cell.x}\n  predicted {fmt(float(one.point[0, 0]))}%, 80% interval "
        f"[{fmt(float(one.lower[0, 0]))}, {fmt(float(one.upper[0, 0]))}]; "
        f"true {fmt(cell.y[DEMO_TARGET])}%"
    )
    out.print(
        f"\nsaved the model to {out_dir}/ and the plot to {scatter} "
        f"({time.perf_counter() - start:.0f} s in all). Next:\n"
        f"  rlm predict {out_dir} '{cell.x}'\n"
        f"  rlm info {out_dir}",
        soft_wrap=True,  # keep the commands copy-pasteable: no line breaks inside them
    )


def _train(
    out_dir: Path,
    plan: DemoPlan,
    budget: float | None,
    progress: bool,
    train_rows: list[Example],
    valid_rows: list[Example],
) -> RegressionLM:
    from ..api import RegressionLM
    from ..nn.config import TrainConfig

    out_dir.mkdir(parents=True, exist_ok=True)
    model = RegressionLM(
        model=plan.preset,
        targets=[DEMO_TARGET],
        vocab=VocabConfig(pattern=DEMO_PATTERN),
        train=TrainConfig(
            lr=plan.lr,
            batch_size=plan.batch_size,
            max_epochs=plan.max_epochs,
            time_budget_s=budget if budget is not None else plan.time_budget_s,
            progress=progress,
        ),
    )
    write_layout(out_dir, Layout(), "rlm.io.load_demo('nas201')", len(train_rows), len(valid_rows))
    with stopped_training():  # the final model, or the best so far when stopped, in out_dir
        model.fit(train_rows, valid=valid_rows, run_dir=out_dir)
    return model


def _print_scores(
    model: RegressionLM,
    plan: DemoPlan,
    pred: Predictions,
    train_rows: list[Example],
    true: np.ndarray,
) -> float | None:
    """The test metrics beside a predict-the-mean baseline; returns the model's Spearman."""
    from ..predict.metrics import regression_metrics

    ours = regression_metrics(
        true, pred.point[:, 0], lower=pred.lower[:, 0], upper=pred.upper[:, 0]
    )
    # Baseline: the training mean for every cell, with the training 10-90% range as its interval.
    ytr = np.array([e.y[DEMO_TARGET] for e in train_rows])
    base = regression_metrics(
        true,
        np.full_like(true, ytr.mean()),
        lower=np.full_like(true, np.quantile(ytr, 0.1)),
        upper=np.full_like(true, np.quantile(ytr, 0.9)),
    )
    assert model.net is not None
    params = model.net.num_params()
    table = Table(
        title=f"test split, {len(true)} unseen cells ({plan.samples} samples per input)",
        title_justify="left",
    )
    table.add_column("metric")
    table.add_column(f"rlm {plan.preset} ({params / 1e6:.2f}M params)", justify="right")
    table.add_column("mean baseline", justify="right")
    for key, label, kind in (
        ("spearman", "Spearman", "corr"),
        ("kendall", "Kendall", "corr"),
        ("mae", "MAE (accuracy points)", "g"),
        ("r2", "R²", "corr"),
        ("coverage", "80% interval coverage", "pct"),
        ("width", "80% interval width", "g"),
    ):
        table.add_row(label, fmt(ours.get(key), kind), fmt(base.get(key), kind))
    out.print(table)
    return ours.get("spearman")
