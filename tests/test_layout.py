"""The package layout's promises: torch-free stages, the README's names, the old module paths
for one release, checkpoints of the flat 0.1 layout, and modules of a readable size."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import rlm

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "rlm"
README = ROOT / "README.md"

# Every module of these stages (and these modules) must import without torch.
TORCH_FREE_PACKAGES = ("rlm.io", "rlm.inputs", "rlm.numbers", "rlm.predict")
TORCH_FREE_MODULES = (
    "rlm",
    "rlm.checkpoint",
    "rlm.strict",
    "rlm.nn.config",
    "rlm.cli",
    "rlm.predictor",
    "rlm.deploy",
    "rlm.deploy.runtime",
    "rlm.deploy.files",
    "rlm.deploy.quantize",
)


def _modules_of(package: str) -> list[str]:
    pkg = importlib.import_module(package)
    return [package] + [m.name for m in pkgutil.walk_packages(pkg.__path__, package + ".")]


def test_stages_import_without_torch() -> None:
    names = [m for p in TORCH_FREE_PACKAGES for m in _modules_of(p)] + list(TORCH_FREE_MODULES)
    assert "rlm.io.readers" in names and "rlm.predict.summary" in names  # the walk found them
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "import rlm.io\n"
        "rlm.io.load_demo('x264')\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout


def _readme_imports() -> list[tuple[str, str]]:
    """(module, name) for every ``from rlm... import a, b`` line of the README."""
    pairs = []
    for module, names in re.findall(r"^from (rlm[\w.]*) import (.+)$", README.read_text(), re.M):
        pairs += [(module, n.strip()) for n in names.split(",")]
    return pairs


def _readme_modules() -> list[str]:
    """Every ``rlm.x.y`` module named in the README's module table."""
    found = set()
    for cell in re.findall(r"^\| `(rlm[^|]+)\|", README.read_text(), re.M):
        first = None
        for ref in re.findall(r"`([\w.]+)`", "`" + cell):
            if ref.startswith("rlm."):
                first = ref
                found.add(ref)
            elif ref.startswith(".") and first is not None:  # `rlm.serve.app`, `.schema`
                found.add(first.rsplit(".", 1)[0] + ref)
    return sorted(found)


def test_readme_names_import() -> None:
    pairs = _readme_imports()
    assert ("rlm", "RegressionLM") in pairs
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the README shows no old path
        for module, name in pairs:
            assert hasattr(importlib.import_module(module), name), (module, name)
        modules = _readme_modules()
        assert len(modules) >= 20
        for module in modules:
            importlib.import_module(module)


def test_top_level_names_are_the_defining_objects() -> None:
    from rlm.inputs.vocab import VocabConfig
    from rlm.io import Example, load_demo
    from rlm.nn.config import TrainConfig

    assert rlm.Example is Example and rlm.load_demo is load_demo
    assert rlm.TrainConfig is TrainConfig and rlm.VocabConfig is VocabConfig
    assert set(rlm.__all__) >= {"RegressionLM", "Example", "TrainConfig", "read_examples"}
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = rlm.nope


MOVED = [
    # old module, name, new module
    ("rlm.data", "Example", "rlm.io"),
    ("rlm.data", "read_examples", "rlm.io"),
    ("rlm.data", "load_demo", "rlm.io"),
    ("rlm.data", "write_jsonl", "rlm.io"),
    ("rlm.text", "serialize", "rlm.inputs.text"),
    ("rlm.vocab", "VocabConfig", "rlm.inputs.vocab"),
    ("rlm.targets", "TargetCodec", "rlm.numbers.targets"),
    ("rlm.config", "TrainConfig", "rlm.nn.config"),
    ("rlm.config", "preset", "rlm.nn.config"),
    ("rlm.config", "strict_from_dict", "rlm.strict"),
    ("rlm.model", "RegressionTransformer", "rlm.nn.model"),
    ("rlm.decoding", "decode", "rlm.nn.decoding"),
    ("rlm.training", "lr_at", "rlm.nn.training"),
    ("rlm.runtime", "tune_allocator", "rlm.nn.runtime"),
    ("rlm.calibration", "fit_calibration", "rlm.predict.calibration"),
    ("rlm.metrics", "spearman", "rlm.predict.metrics"),
    ("rlm.plots", "scatter", "rlm.predict.plots"),
    ("rlm.server", "create_app", "rlm.serve.app"),
    ("rlm.server", "ServeConfig", "rlm.serve.schema"),
    ("rlm.batching", "MicroBatcher", "rlm.serve.batching"),
]


@pytest.mark.parametrize(("old", "name", "new"), MOVED)
def test_old_module_paths_still_work_and_warn(old: str, name: str, new: str) -> None:
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} moved to {new}\.{name}"):
        obj = getattr(module, name)
    assert obj is getattr(importlib.import_module(new), name)


def test_old_module_path_names_its_new_home_for_unknown_names() -> None:
    module = importlib.import_module("rlm.data")
    with pytest.raises(AttributeError, match=r"moved to rlm\.io"):
        _ = module.no_such_name


def test_checkpoint_saved_by_the_flat_layout_loads_and_predicts_the_same() -> None:
    from rlm import RegressionLM

    directory = ROOT / "tests" / "data" / "checkpoint_0_1"
    expected = json.loads((directory / "expected.json").read_text())
    model = RegressionLM.load(directory)
    got = model.predict(expected["inputs"], samples=expected["samples"], seed=expected["seed"])
    np.testing.assert_allclose(got, np.array(expected["predict"]), rtol=1e-6, atol=1e-9)


def test_no_module_is_longer_than_450_lines() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 450
    }
    assert not long, f"split these modules by concept: {long}"
