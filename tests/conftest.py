"""Shared fixtures: one tiny trained model per test session (seconds on one core)."""

from __future__ import annotations

from pathlib import Path

import pytest

SERVE_TARGETS = ("cifar10_test_acc", "latency_ms_pixel3")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny NAS-Bench-201 model (200 rows, 2 objectives, 2 epochs), saved to a directory."""
    import torch

    from rlm import RegressionLM
    from rlm.cli.demo import DEMO_PATTERN
    from rlm.inputs.vocab import VocabConfig
    from rlm.io import load_demo
    from rlm.nn.config import TrainConfig

    torch.set_num_threads(1)
    rows = load_demo("nas201", "train")[:200]
    model = RegressionLM(
        model="tiny",
        targets=list(SERVE_TARGETS),
        vocab=VocabConfig(pattern=DEMO_PATTERN),
        train=TrainConfig(max_epochs=2, batch_size=32, lr=3e-3, progress=False),
    )
    out = tmp_path_factory.mktemp("tiny-model")
    model.fit(rows, run_dir=out)  # saves the model there
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path):
    from rlm import RegressionLM

    return RegressionLM.load(tiny_model_dir)


@pytest.fixture(scope="session")
def x264_rows_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """150 demo x264 rows as JSONL: the first 100 split "train", the rest "valid"."""
    from rlm.io import load_demo, write_jsonl

    path = tmp_path_factory.mktemp("x264") / "rows.jsonl"
    rows = load_demo("x264")[:150]
    write_jsonl(
        path,
        [
            {"x": e.x, "y": e.y, "split": "train" if i < 100 else "valid"}
            for i, e in enumerate(rows)
        ],
    )
    return path
