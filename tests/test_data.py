"""Examples, readers, writers and the bundled demo data."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.io import (
    Example,
    load_demo,
    parse_cell,
    read_csv,
    read_examples,
    read_jsonl,
    read_parquet,
    subset,
    target_names,
    write_csv,
    write_jsonl,
    write_parquet,
)

# ----------------------------------------------------------------------------------------------
# Example


@pytest.mark.parametrize(
    ("y", "target_name", "expected"),
    [
        (1.5, "y", {"y": 1.5}),
        (3, "psnr_db", {"psnr_db": 3.0}),
        ({"a": 1, "b": None}, "y", {"a": 1.0}),
        ({"a": 0.25, "b": -2}, "y", {"a": 0.25, "b": -2.0}),
    ],
)
def test_make_normalises_y(y, target_name, expected):
    ex = Example.make("x", y, target_name=target_name)
    assert ex.y == expected
    assert all(type(v) is float for v in ex.y.values())


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (float("nan"), "target 'y' is nan"),
        ({"a": float("inf")}, "target 'a' is inf"),
        ({"a": -math.inf}, "target 'a' is -inf"),
        ({"a": True}, "not a number"),
        ({"a": "1.5"}, "not a number"),
        ({"a": None}, "has no targets"),
        (None, "has no targets"),
        ({}, "has no targets"),
    ],
)
def test_make_rejects_bad_targets_naming_the_row(y, message):
    with pytest.raises(ValueError, match=message) as e:
        Example.make("x", y, id="row-7")
    assert "row-7" in str(e.value)
    with pytest.raises(ValueError, match="row 3"):
        Example.make("x", y, index=3)


def test_unlabeled_only_when_asked():
    ex = Example.make({"a": 1}, {"t": None}, allow_unlabeled=True)
    assert ex.y == {}


def test_constructor_is_strict_and_copies_y():
    y = {"a": 1}
    ex = Example(x="s", y=y)
    y["a"] = 2
    assert ex.y == {"a": 1.0}
    with pytest.raises(ValueError, match=r"Example\.make"):
        Example(x="s", y={"a": None})
    with pytest.raises(ValueError, match="use a string or a mapping"):
        Example(x=3, y={"a": 1.0})  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# JSONL


def _write_lines(path: Path, rows: list[dict]) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


NESTED = [
    {"id": "a", "x": {"p": 1, "q": "s"}, "y": {"m1": 1.0, "m2": 2.0}, "split": "train"},
    {"id": "b", "x": {"p": 2, "q": "t"}, "y": {"m1": 3.0}, "split": "test"},
    {"id": "c", "x": {"p": 3, "q": "u"}, "y": {"m2": 5.0}, "split": "train"},
]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_read_jsonl_nested(tmp_path, suffix):
    p = _write_lines(tmp_path / f"d{suffix}", NESTED)
    exs = read_jsonl(p)
    assert [e.id for e in exs] == ["a", "b", "c"]
    assert exs[0] == Example(x={"p": 1, "q": "s"}, y={"m1": 1.0, "m2": 2.0}, id="a", split="train")
    assert target_names(exs) == ["m1", "m2"]
    assert [e.id for e in read_jsonl(p, split="train")] == ["a", "c"]
    assert [e.id for e in read_jsonl(p, limit=2)] == ["a", "b"]
    only_m1 = read_jsonl(p, targets=["m1"], allow_unlabeled=True)
    assert [e.y for e in only_m1] == [{"m1": 1.0}, {"m1": 3.0}, {}]
    assert read_jsonl(p, x_keys=["q"])[1].x == {"q": "t"}


def test_read_jsonl_nested_errors(tmp_path):
    p = _write_lines(tmp_path / "d.jsonl", NESTED)
    with pytest.raises(ValueError, match=r"row 'c' has no targets"):
        read_jsonl(p, targets=["m1"])
    with pytest.raises(ValueError, match=r"targets \['m3'\] occur in no row"):
        read_jsonl(p, targets=["m1", "m2", "m3"], split="train")
    bad = _write_lines(tmp_path / "bad.jsonl", [{"id": "z", "x": "s", "y": {"m": "NaN"}}])
    with pytest.raises(ValueError, match=r"row 'z'.*target 'm'"):
        read_jsonl(bad)
    nosplit = _write_lines(tmp_path / "ns.jsonl", [{"x": "s", "y": 1.0}])
    with pytest.raises(ValueError, match="row 0 has no 'split' field"):
        read_jsonl(nosplit, split="train")
    # The split filter runs before validation: a broken test row does not block reading train.
    mixed = _write_lines(
        tmp_path / "mixed.jsonl",
        [{"x": "s", "y": 1.0, "split": "train"}, {"x": "s", "y": None, "split": "test"}],
    )
    assert len(read_jsonl(mixed, y_key="y", split="train")) == 1
    with pytest.raises(ValueError, match=r"mixed.jsonl: row 1 has no targets"):
        read_jsonl(mixed)
    (tmp_path / "broken.jsonl").write_text('{"x": 1\n')
    with pytest.raises(ValueError, match=r"broken.jsonl:1: invalid JSON"):
        read_jsonl(tmp_path / "broken.jsonl")


def test_read_jsonl_scalar_y_named_after_key(tmp_path):
    p = _write_lines(tmp_path / "d.jsonl", [{"x": "abc", "runtime": 2.5}])
    assert read_jsonl(p, y_key="runtime")[0].y == {"runtime": 2.5}


def test_read_jsonl_flat(tmp_path):
    rows = [
        {"id": 1, "a": 1, "b": "u", "t": 0.5, "split": "valid"},
        {"id": 2, "a": 2, "b": "v", "t": None, "s": 4.0, "split": "train"},
    ]
    p = _write_lines(tmp_path / "flat.jsonl", rows)
    exs = read_jsonl(p, y_key=None, targets=["t", "s"])
    assert exs[0] == Example(x={"a": 1, "b": "u"}, y={"t": 0.5}, id="1", split="valid")
    assert exs[1].y == {"s": 4.0}
    assert read_jsonl(p, y_key=None, targets=["t", "s"], x_keys=["b"])[0].x == {"b": "u"}
    assert read_jsonl(p, y_key=None, targets=["t", "s"], x_column="b")[1].x == "v"
    with pytest.raises(ValueError, match="need targets"):
        read_jsonl(p, y_key=None)
    with pytest.raises(ValueError, match="is a string"):
        read_jsonl(p, y_key=None, targets="t")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# CSV / Parquet / dispatch / writers


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("", None),
        ("12", 12),
        ("-3", -3),
        ("0", 0),
        ("1.5", 1.5),
        ("1e-3", 0.001),
        (".5", 0.5),
        ("007", "007"),
        ("nan", "nan"),
        ("inf", "inf"),
        ("True", "True"),
        ("abc", "abc"),
    ],
)
def test_parse_cell(cell, value):
    assert parse_cell(cell) == value
    assert type(parse_cell(cell)) is type(value)


def test_read_csv(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text(
        "id,opt,name,perf,split\nr0,1,fast,2.5,train\nr1,0,slow,,test\nr2,2,mid,1e1,train\n"
    )
    exs = read_csv(p, targets=["perf"], allow_unlabeled=True)
    assert exs[0] == Example(x={"opt": 1, "name": "fast"}, y={"perf": 2.5}, id="r0", split="train")
    assert exs[1].y == {}
    with pytest.raises(ValueError, match="row 'r1' has no targets"):
        read_csv(p, targets=["perf"])
    assert [e.id for e in read_csv(p, targets=["perf"], split="train")] == ["r0", "r2"]
    assert read_csv(p, targets=["perf"], x_columns=["opt"], limit=1)[0].x == {"opt": 1}
    nan = tmp_path / "nan.csv"
    nan.write_text("a,t\n1,nan\n")
    with pytest.raises(ValueError, match="row 0: target 't' is 'nan'"):
        read_csv(nan, targets=["t"])


def test_parquet_round_trip(tmp_path):
    recs = [
        {"id": "a", "k": 1, "s": "x", "t": 1.25},
        {"id": "b", "k": 2, "s": "y", "t": None, "u": 3.0},
    ]
    p = tmp_path / "d.parquet"
    write_parquet(p, recs)
    exs = read_parquet(p, targets=["t", "u"])
    assert exs[0] == Example(x={"k": 1, "s": "x"}, y={"t": 1.25}, id="a")
    assert exs[1].y == {"u": 3.0}
    assert read_examples(p, targets=["t", "u"]) == exs


def test_writers_round_trip(tmp_path):
    recs = [{"id": "a", "x": {"p": 1}, "y": {"m": 0.1 + 0.2}, "split": "train"}]
    for name in ("o.jsonl", "o.jsonl.gz"):
        write_jsonl(tmp_path / name, recs)
        assert read_examples(tmp_path / name)[0].y == {"m": 0.1 + 0.2}
    with pytest.raises(ValueError, match="record 0"):
        write_jsonl(tmp_path / "nan.jsonl", [{"v": float("nan")}])
    write_csv(tmp_path / "o.csv", [{"a": 1, "t": 0.1 + 0.2}, {"a": 2, "t": None, "b": "z"}])
    exs = read_examples(tmp_path / "o.csv", targets=["t"], allow_unlabeled=True)
    assert exs[0] == Example(x={"a": 1, "b": None}, y={"t": 0.1 + 0.2})
    assert exs[1] == Example(x={"a": 2, "b": "z"}, y={})


def test_gz_writer_is_reproducible(tmp_path):
    recs = [{"a": i} for i in range(5)]
    write_jsonl(tmp_path / "1.jsonl.gz", recs)
    write_jsonl(tmp_path / "2.jsonl.gz", recs)
    assert (tmp_path / "1.jsonl.gz").read_bytes() == (tmp_path / "2.jsonl.gz").read_bytes()


def test_read_examples_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"unknown file type.*\.jsonl"):
        read_examples(tmp_path / "d.txt")
    with pytest.raises(ValueError, match="need targets"):
        read_examples(tmp_path / "d.csv")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "x": st.dictionaries(
                    st.text("abcxyz_", min_size=1, max_size=5),
                    st.one_of(st.integers(-1000, 1000), st.text(max_size=8), st.none()),
                    max_size=4,
                ),
                "y": st.dictionaries(
                    st.sampled_from(["m1", "m2"]),
                    st.floats(allow_nan=False, allow_infinity=False),
                    min_size=1,
                ),
            }
        ),
        min_size=1,
        max_size=8,
    )
)
def test_jsonl_round_trip_property(tmp_path_factory, recs):
    p = tmp_path_factory.mktemp("rt") / "d.jsonl.gz"
    exs = [Example.make(r["x"], r["y"], id=str(i), split="train") for i, r in enumerate(recs)]
    write_jsonl(p, [e.to_record() for e in exs])
    assert read_jsonl(p) == exs


# ----------------------------------------------------------------------------------------------
# subset, demo data


def test_subset_is_seeded_and_ordered():
    exs = [Example.make(str(i), float(i)) for i in range(50)]
    a, b = subset(exs, 10, seed=1), subset(exs, 10, seed=1)
    assert a == b and len(a) == 10
    assert [float(e.x) for e in a] == sorted(float(e.x) for e in a)
    assert subset(exs, 10, seed=2) != a
    with pytest.raises(ValueError, match="n=51"):
        subset(exs, 51, seed=0)


@pytest.mark.parametrize(
    ("name", "counts", "n_targets"),
    [
        ("nas201", {"train": 1500, "valid": 300, "test": 500}, 6),
        ("x264", {"train": 1000, "valid": 200, "test": 300}, 1),
    ],
)
def test_demo_data(name, counts, n_targets):
    exs = load_demo(name)
    assert {s: sum(e.split == s for e in exs) for s in counts} == counts
    assert len(target_names(exs)) == n_targets
    assert len(load_demo(name, split="valid")) == counts["valid"]
    assert len({e.id for e in exs}) == len(exs)


def test_demo_unknown_name():
    with pytest.raises(ValueError, match=r"\['nas201', 'x264'\]"):
        load_demo("mnist")


def test_demo_files_are_small():
    root = Path(__file__).resolve().parent.parent / "src" / "rlm" / "datasets"
    assert sum(p.stat().st_size for p in root.glob("*.jsonl.gz")) < 300_000


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # makes the import fail
    with pytest.raises(ValueError, match=r"pip install rlm\[parquet\]"):
        read_parquet(tmp_path / "d.parquet", targets=["t"])
