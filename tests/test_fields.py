"""Field-aware inputs: numbers found in text, mappings read one field per position."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm.inputs.fields import (
    NULL,
    NUM,
    NUMBER,
    STRING,
    UNKNOWN_KEY,
    FieldConfig,
    FieldEncoder,
    flatten,
)
from rlm.inputs.numtext import (
    find_numbers,
    parse_number,
    piecewise_linear,
    quantile_edges,
    quantile_position,
)


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("batch 32", [32]),
        ("lr=0.001", [0.001]),
        ("1e-3", [0.001]),
        ("6.02E23 atoms", [6.02e23]),
        ("-5 degrees", [-5]),
        ("x-5", [5]),  # x minus 5: the minus of a subtraction is not a sign
        (".5 and 2.", [0.5, 2.0]),
        ("Xeon 8380 @ 2.30GHz", [8380, 2.3]),  # a unit may follow
        ("512MB, 100ms, 95%", [512, 100, 95]),
        ("tpcc-1000w", [1000]),
        ("conv3x3", []),  # never inside identifiers
        ("x264", []),
        ("lr_1e3", []),
        ("v2", []),
        ("0x1F", []),  # hex is left alone
        ("python 3.11.4", []),  # so are dotted versions
        ("10.0.0.1", []),
        ("1e999", []),  # overflows to inf: stays text
        ("", []),
    ],
)
def test_find_numbers(text: str, values: list[float]) -> None:
    assert [f.value for f in find_numbers(text)] == values


@pytest.mark.parametrize(
    ("text", "value"),
    [
        *[("0.01", 0.01), (" 12 ", 12.0), ("1e3", 1000.0), ("-7", -7.0), ("12ms", None)],
        *[("abc", None), ("1.2.3", None), ("inf", None), ("nan", None), ("", None)],
    ],
)
def test_parse_number(text: str, value: float | None) -> None:
    assert parse_number(text) == value


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=8))
def test_numbers_written_by_python_are_found_again(values: list[float]) -> None:
    text = " ".join(repr(v) for v in values)
    assert [f.value for f in find_numbers(text)] == values
    for v in values:
        assert parse_number(repr(v)) == v


def test_piecewise_linear_encoding() -> None:
    edges = (0.0, 1.0, 3.0)
    assert piecewise_linear(0.5, edges, 4) == [0.5, 0.0, 0.0, 0.0]
    assert piecewise_linear(2.0, edges, 4) == [1.0, 0.5, 0.0, 0.0]
    assert piecewise_linear(5.0, edges, 4) == [1.0, 2.0, 0.0, 0.0]  # the last bin extends
    assert piecewise_linear(-1.0, edges, 4) == [-1.0, 0.0, 0.0, 0.0]  # and so does the first
    assert quantile_edges([1.0, 1.0], 4) == ()
    assert quantile_edges([3.0, 1.0, 2.0], 4) == (1.0, 2.0, 3.0)
    assert len(quantile_edges([float(i) for i in range(1000)], 16)) == 17


def test_flatten_nested_mappings_and_lists() -> None:
    x = {"b": [1, {"c": None}], "a": {"z": 1, "y": "s"}}
    assert flatten(x) == [("a.y", "s"), ("a.z", 1), ("b[0]", 1), ("b[1].c", None)]
    with pytest.raises(ValueError, match="not a string"):
        flatten({1: 2})  # type: ignore[dict-item]


TRAIN = [
    {"Crf": 20.0 + i, "mode": ["fast", "slow"][i % 2], "cabac": bool(i % 3), "ref": i % 3}
    for i in range(10)
]


def _encoder(**kw) -> FieldEncoder:
    return FieldEncoder.fit(TRAIN, FieldConfig(max_categories=4, **kw))


def _at(enc: FieldEncoder, x: dict, key: str) -> tuple[int, np.ndarray]:
    row = enc.encode(x)
    i = list(row.keys).index(enc.keys.index(key) + 2)
    return int(row.ids[i]), row.nums[i]


def test_fitted_vocabulary_keys_categories_and_statistics() -> None:
    enc = _encoder()
    assert enc.keys == ["Crf", "cabac", "mode", "ref"]
    # Crf has 10 distinct values (> max_categories=4): read as a value only
    assert [c for c in enc.categories if c.startswith("Crf")] == []
    assert {"ref=0", "ref=1", "ref=2", "mode=fast", "cabac=true"} <= set(enc.categories)
    assert enc.stats["Crf"].mean == pytest.approx(24.5)
    assert "Crf" in enc.describe()["fields"]


def test_unseen_number_interpolates_between_its_neighbours() -> None:
    enc = _encoder()
    ids = [_at(enc, {"Crf": v}, "Crf") for v in (21.0, 21.5, 22.0)]
    assert all(i == NUMBER for i, _ in ids)
    quantile = [f[4] for _, f in ids]
    assert quantile[0] < quantile[1] < quantile[2]
    np.testing.assert_allclose(ids[1][1], (ids[0][1] + ids[2][1]) / 2, atol=0.02)


def test_values_read_as_what_they_are() -> None:
    enc = _encoder()
    assert _at(enc, {"ref": 1}, "ref")[0] == enc.categories.index("ref=1") + 5
    assert _at(enc, {"ref": "1"}, "ref")[0] == enc.categories.index("ref=1") + 5  # a CSV cell
    assert _at(enc, {"ref": 1}, "ref")[1][0] == 1.0  # the category *and* the value
    assert _at(enc, {"ref": None}, "ref")[0] == NULL
    assert _at(enc, {"ref": math.nan}, "ref")[0] == NULL  # a missing value
    with pytest.raises(ValueError, match="not finite"):
        enc.encode({"ref": math.inf})
    with pytest.raises(ValueError, match="reads mappings"):
        enc.encode("Crf=3")  # type: ignore[arg-type]


def test_unseen_string_is_read_from_its_pieces_and_numbers() -> None:
    enc = _encoder()
    row = enc.encode({"mode": "turbo 2.5x"})
    assert row.ids[0] == STRING and row.pos[0] == 0
    assert list(row.pos[1:]) == list(range(1, len(row)))  # pieces in order after the head
    assert NUM in row.ids  # 2.5 is a number inside the string
    assert row.nums[list(row.ids).index(NUM), 0] == 1.0
    seen = enc.encode({"mode": "fast"})
    assert seen.ids[0] == enc.categories.index("mode=fast") + 5 and len(seen) > 1


def test_unknown_keys_are_counted_and_the_empty_mapping_has_a_position() -> None:
    enc = _encoder()
    row = enc.encode({"Crf": 21, "new_option": 3})
    assert UNKNOWN_KEY in row.keys
    assert enc.unknown_keys == {"new_option": 1}
    assert len(enc.encode({})) == 1


@pytest.mark.parametrize("numbers", ["both", "value", "category"])
def test_number_modes(numbers: str) -> None:
    enc = _encoder(numbers=numbers)
    token, feats = _at(enc, {"ref": 2}, "ref")
    assert (token == NUMBER) == (numbers == "value")
    assert (feats[0] == 1.0) == (numbers != "category")


@pytest.mark.parametrize(
    ("numbers", "mixer", "resolved"),
    [("auto", "attention", "both"), ("auto", "slots", "value"), ("both", "slots", "both"),
     ("category", "slots", "category"), ("value", "attention", "value")],
)  # fmt: skip
def test_auto_number_mode_follows_the_mixer(numbers: str, mixer: str, resolved: str) -> None:
    assert FieldConfig(numbers=numbers).resolved(mixer).numbers == resolved  # type: ignore[arg-type]
    assert FieldConfig().numbers == "auto"
    assert FieldEncoder.fit(TRAIN, FieldConfig()).config.numbers == "both"  # no mixer: attention


def test_saved_encoder_encodes_identically() -> None:
    enc = _encoder()
    again = FieldEncoder.from_dict(enc.to_dict(), enc.tokenizer)
    x = {"Crf": 23.3, "mode": "turbo 9", "cabac": False, "zz": 1}
    a, b = enc.encode(x), again.encode(x)
    for name in ("ids", "keys", "pos", "nums"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    with pytest.raises(ValueError, match="expected"):
        FieldEncoder.from_dict({"keys": []}, enc.tokenizer)


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"numbers": "digits"}, "numbers="), ({"bins": 0}, "bins="), ({"max_pieces": 1.5}, "max_")],
)
def test_bad_field_config(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FieldConfig(**kw)


def test_model_reads_fields_saves_and_warns_on_unknown_keys(tmp_path) -> None:
    from rlm import RegressionLM, TrainConfig

    y = [x["Crf"] * (2 if x["mode"] == "fast" else 1) for x in TRAIN]
    m = RegressionLM(model="tiny", train=TrainConfig(max_epochs=2, progress=False, batch_size=4))
    m.fit(TRAIN, y)
    assert m.fields is not None and m.net is not None and m.net.key_emb is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        before = m.predict(TRAIN[:3], samples=4)
    loaded = RegressionLM.load(m.save(tmp_path / "ck"))
    assert loaded.fields is not None
    np.testing.assert_array_equal(loaded.predict(TRAIN[:3], samples=4), before)
    with pytest.warns(UserWarning, match="never seen in training.*'brand_new'"):
        loaded.predict([{**TRAIN[0], "brand_new": 1}], samples=2)
    text = RegressionLM(model="tiny", inputs="text", train=TrainConfig(max_epochs=1))
    assert text.fit(TRAIN, y).fields is None
    with pytest.raises(ValueError, match="inputs="):
        RegressionLM(inputs="json")  # type: ignore[arg-type]


def test_cli_trains_on_fields_and_info_shows_them(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from rlm.cli import app

    rows = [{"x": x, "y": {"t": float(x["Crf"])}, "split": "train"} for x in TRAIN * 2]
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "ck"
    args = ["train", str(data), "--out", str(out), "--preset", "tiny", "--epochs", "1"]
    result = CliRunner().invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    info = CliRunner().invoke(app, ["info", str(out), "--json"])
    full = json.loads(info.stdout)
    assert full["summary"]["inputs"] == "fields"
    assert "Crf" in full["fields"]["fields"]
    shown = CliRunner().invoke(app, ["info", str(out)])
    assert "fields (how each key is read)" in shown.output


FINITE = st.floats(-1e6, 1e6, allow_nan=False)


@given(st.lists(FINITE, min_size=2, max_size=12, unique=True), FINITE, st.integers(0, 11))
def test_quantile_position_is_numpy_interp_to_the_bit(edges, v, pick) -> None:
    grid = tuple(sorted(edges))
    for x in (v, grid[pick % len(grid)]):  # anywhere, and exactly on an edge
        want = float(np.interp(x, grid, np.linspace(0.0, 1.0, len(grid))))
        assert quantile_position(x, grid) == want
