"""Damaged, mixed and too-new checkpoints: one clear ValueError each, naming the file and the fix;
atomic writes; and nothing in the package unpickles."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rlm import RegressionLM, TrainConfig
from rlm.checkpoint import atomic_write

SRC = Path(__file__).resolve().parents[1] / "src" / "rlm"
ROWS = [{"size": s, "mode": ["a", "b"][s % 2]} for s in range(1, 31)]
Y = [float(x["size"] * (2 if x["mode"] == "a" else 1)) for x in ROWS]


def _fit(rows: list, y: list, **kw) -> RegressionLM:
    train = TrainConfig(max_epochs=1, progress=False, batch_size=8)
    return RegressionLM(model="tiny", train=train, **kw).fit(rows, y)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, Path]:
    """A checkpoint, and one of another model (other inputs, other shapes)."""
    root = tmp_path_factory.mktemp("ck")
    a = _fit(ROWS, Y).save(root / "a")
    b = _fit([f"text {i}" for i in range(30)], Y).save(root / "b")
    return a, b


def _config(d: Path) -> dict:
    return json.loads((d / "config.json").read_text())


def _set_config(d: Path, edit: Callable[[dict], None]) -> None:
    meta = _config(d)
    edit(meta)
    (d / "config.json").write_text(json.dumps(meta))


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x10
    p.write_bytes(bytes(data))


def _unverified(d: Path) -> None:
    """As a format-1 checkpoint: no recorded digests, so the file's own checks must fire."""
    _set_config(d, lambda m: m.pop("files"))


def _other(name: str) -> Callable[[Path, Path], None]:
    return lambda d, other: shutil.copy(other / name, d / name)


DAMAGE: list[tuple[str, Callable[[Path, Path], None], str]] = [
    ("truncated weights", lambda d, o: _truncate(d / "model.safetensors"), "sha256 differs"),
    ("bit-flipped weights", lambda d, o: _flip(d / "model.safetensors"), "sha256 differs"),
    ("weights of another model", _other("model.safetensors"), "model.safetensors does not"),
    ("tokenizer of another model", _other("tokenizer.json"), "tokenizer.json does not match"),
    ("missing tokenizer", lambda d, o: (d / "tokenizer.json").unlink(), "tokenizer.json missing"),
    ("config not JSON", lambda d, o: _truncate(d / "config.json"), "not valid JSON"),
    (
        "config from the future",
        lambda d, o: _set_config(d, lambda m: m.update(format=99)),
        "written by a newer rlm.*upgrade rlm",
    ),
    (
        "config without a format",
        lambda d, o: _set_config(d, lambda m: m.pop("format")),
        "no checkpoint format",
    ),
    (
        "config missing a section",
        lambda d, o: _set_config(d, lambda m: m.pop("targets")),
        r"config.json is damaged \(KeyError",
    ),
    (
        "unverified truncated weights",
        lambda d, o: (_unverified(d), _truncate(d / "model.safetensors")),
        "model.safetensors cannot be read",
    ),
    (
        "unverified weights of another model",
        lambda d, o: (_unverified(d), _other("model.safetensors")(d, o)),
        "come from different models",
    ),
    (
        "unverified broken tokenizer",
        lambda d, o: (_unverified(d), (d / "tokenizer.json").write_text("{")),
        "tokenizer.json cannot be read",
    ),
]


@pytest.mark.parametrize(("case", "damage", "match"), DAMAGE, ids=[c for c, _, _ in DAMAGE])
def test_damaged_checkpoint_is_one_clear_error(saved, tmp_path, case, damage, match) -> None:
    good, other = saved
    d = tmp_path / "ck"
    shutil.copytree(good, d)
    damage(d, other)
    with pytest.raises(ValueError, match=match) as info:
        RegressionLM.load(d)
    assert "\n" not in str(info.value)


def test_cli_predict_on_a_damaged_checkpoint_prints_one_line(saved, tmp_path) -> None:
    from typer.testing import CliRunner

    from rlm.cli import app

    d = tmp_path / "ck"
    shutil.copytree(saved[0], d)
    _truncate(d / "model.safetensors")
    data = tmp_path / "x.jsonl"
    data.write_text(json.dumps({"x": ROWS[0]}) + "\n")
    result = CliRunner().invoke(app, ["predict", str(d), str(data)])
    assert result.exit_code != 0
    assert "Traceback" not in result.output and "sha256 differs" in result.output


def test_the_intact_checkpoint_still_loads(saved) -> None:
    assert RegressionLM.load(saved[0]).predict(ROWS[:2], samples=2).shape == (2, 1)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch) -> None:
    p = tmp_path / "model.safetensors"
    atomic_write(p, b"old")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        atomic_write(p, b"new and longer")
    assert p.read_bytes() == b"old"
    assert [f.name for f in tmp_path.iterdir()] == ["model.safetensors"]  # no stray temp file


UNPICKLING = re.compile(
    r"\bimport pickle\b|\bpickle\.|\bcPickle\b|\bdill\b|\bjoblib\b|torch\.load\(|"
    r"allow_pickle\s*=\s*True|weights_only\s*=\s*False|\bmarshal\.loads?\("
)


def test_nothing_in_the_package_unpickles() -> None:
    hits = [
        f"{p.relative_to(SRC)}:{i}: {line.strip()}"
        for p in sorted(SRC.rglob("*.py"))
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if UNPICKLING.search(line)
    ]
    assert not hits, hits


def _killed_save(model: RegressionLM, d: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``model.save(d)`` killed right after its first checkpoint file was renamed into place
    (nothing after that runs: no clean-up, as under SIGKILL)."""
    from rlm.checkpoint import FILES

    real, renamed = os.replace, []

    def dying(src, dst) -> None:
        if Path(dst).name in FILES and renamed:
            raise KeyboardInterrupt("killed")
        renamed.extend([dst] if Path(dst).name in FILES else [])
        real(src, dst)

    with monkeypatch.context() as m:
        m.setattr(os, "replace", dying)
        with pytest.raises(KeyboardInterrupt):
            model.save(d)


@pytest.mark.parametrize("fresh_directory", [False, True])
def test_a_save_killed_between_its_renames_is_finished_by_the_next_reader(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_directory: bool
) -> None:
    """SIGKILL can land between the renames of a save: new weights beside the old config.json
    (or, in a fresh directory, no config.json yet). The save's journal lists the renames, and
    the next reader completes them."""
    import torch

    from rlm.checkpoint import JOURNAL_GLOB
    from rlm.io import load_demo

    newer = RegressionLM.load(tiny_model_dir)
    with torch.no_grad():
        next(newer.net.parameters()).add_(1.0)  # type: ignore[union-attr]
    d = tmp_path / "ckpt"
    if not fresh_directory:
        shutil.copytree(tiny_model_dir, d)
    _killed_save(newer, d, monkeypatch)
    assert list(d.glob(JOURNAL_GLOB))  # the kill left the journal, new weights, and
    config = d / "config.json"  # no config.json yet, or the old one
    assert (
        (not config.exists())
        if fresh_directory
        else config.read_bytes() == (tiny_model_dir / "config.json").read_bytes()
    )
    loaded = RegressionLM.load(d)  # finishes the commit, then checks every digest
    assert not list(d.glob(JOURNAL_GLOB)) and not list(d.glob(".*.tmp"))
    x = [e.x for e in load_demo("nas201", "test")[:2]]
    np.testing.assert_array_equal(loaded.sample(x, 2, seed=0), newer.sample(x, 2, seed=0))


@pytest.mark.parametrize(
    "journal",
    [
        '[["../../outside", "config.json"]]',  # a name outside the directory
        '[[".config.json.1.0badc0de.tmp", "../config.json"]]',
        '[["x", "y", "z"]]',
        '{"not": "a list"}',
        '[[".config.json.1.0ba',  # torn: never written by rlm (journals are renamed in)
    ],
)
def test_a_foreign_journal_is_refused_and_renames_nothing(saved, tmp_path, journal) -> None:
    d = tmp_path / "ckpt"
    shutil.copytree(saved[0], d)
    (tmp_path / "outside").write_text("keep me")
    (d / ".rlm-commit.1.deadbeef.json").write_text(journal)
    with pytest.raises(ValueError, match="not a journal this rlm wrote"):
        RegressionLM.load(d)
    assert (tmp_path / "outside").read_text() == "keep me"
