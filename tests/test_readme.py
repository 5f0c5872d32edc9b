"""The README's Python example runs as written (in a temporary directory)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_one_python_example_of_about_20_lines() -> None:
    blocks = _python_blocks()
    assert len(blocks) == 1, "the README should hold exactly one ```python example"
    assert len(blocks[0].strip().splitlines()) <= 25


def test_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_python_blocks()[0], str(README), "exec"), namespace)
    # the example ends by reloading the saved model: predictions must be identical
    assert (namespace["same"] == namespace["median"]).all()
