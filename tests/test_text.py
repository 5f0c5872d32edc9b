"""Canonical serialisation of inputs: golden strings and properties."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.inputs.text import SerializerConfig, format_number, serialize, truncate

JSON = SerializerConfig()
YAML = SerializerConfig(style="yaml")


@pytest.mark.parametrize(
    ("value", "digits", "text"),
    [
        (0.1 + 0.2, 6, "0.3"),
        (1e-7, 6, "1e-07"),
        (1.0, 6, "1"),
        (123456789.0, 6, "1.23457e+08"),
        (123456789, 6, "123456789"),
        (10**30, 6, "1" + "0" * 30),
        (-2.5, 6, "-2.5"),
        (2 / 3, 3, "0.667"),
        (2 / 3, 17, "0.66666666666666663"),
        (float("nan"), 6, "NaN"),
        (float("-inf"), 6, "-Infinity"),
    ],
)
def test_format_number(value, digits, text):
    assert format_number(value, digits) == text


@pytest.mark.parametrize(
    ("x", "config", "text"),
    [
        ({"b": 0.1 + 0.2, "a": 1}, JSON, '{"a":1,"b":0.3}'),
        ({"t": True, "f": False, "n": None}, JSON, '{"f":false,"n":null,"t":true}'),
        ({"z": {"y": 1, "x": [1, 2.5, "s"]}}, JSON, '{"z":{"x":[1,2.5,"s"],"y":1}}'),
        ({"q": 'say "hi"\n', "é": "ü"}, JSON, '{"q":"say \\"hi\\"\\n","é":"ü"}'),
        ({}, JSON, "{}"),
        ({"b": 0.1 + 0.2, "a": 1}, YAML, "a: 1\nb: 0.3"),
        (
            {"opt": "fast", "n": None, "t": True, "nest": {"k": [1, "a b"], "j": 1e-7}},
            YAML,
            '"n": null\nnest: {j: 1e-07, k: [1, "a b"]}\nopt: fast\nt: true',
        ),
        ({"s": "yes", "v": "1.5", "w": ""}, YAML, 's: "yes"\nv: "1.5"\nw: ""'),
        ({"odd key": 1}, YAML, '"odd key": 1'),
        ({}, YAML, "{}"),
        ("|nor_conv_3x3~0|+|skip_connect~1|", JSON, "|nor_conv_3x3~0|+|skip_connect~1|"),
        ("a: 1", YAML, "a: 1"),
        (
            {"c": 3, "b": 2, "a": 1, "d": 4},
            SerializerConfig(key_order=("c", "a", "zz")),
            '{"c":3,"a":1,"b":2,"d":4}',
        ),
        (
            {"c": 3, "b": 2, "a": 1},
            SerializerConfig(style="yaml", key_order=("b",)),
            "b: 2\na: 1\nc: 3",
        ),
        ({"a": 0.123456789}, SerializerConfig(float_digits=3), '{"a":0.123}'),
        ("abcdefghij", SerializerConfig(max_chars=7, marker="..."), "ab...ij"),
        ("abcdefghij", SerializerConfig(max_chars=8, marker="..."), "abc...ij"),
        ("abcdefghij", SerializerConfig(max_chars=7, marker="...", truncation="head"), "abcd..."),
        ("abcdefghij", SerializerConfig(max_chars=10, marker="..."), "abcdefghij"),
        ({"key": "value"}, SerializerConfig(max_chars=9), '{"k … e"}'),
    ],
)
def test_serialize_golden(x, config, text):
    assert serialize(x, config) == text


def test_json_style_is_valid_json():
    x = {"a": [1, {"b": None}], "c": "q\"'", "d": 0.1 + 0.2}
    assert json.loads(serialize(x, JSON)) == {"a": [1, {"b": None}], "c": "q\"'", "d": 0.3}


@pytest.mark.parametrize(
    ("x", "message"),
    [
        ({1: "a"}, "is not a string"),
        ({"a": {2: 1}}, "key 2 at a"),
        ({"a": object()}, "convert it to str"),
        ({"a": [b"bytes"]}, r"at a\[0\]"),
    ],
)
def test_serialize_rejects_unsupported(x, message):
    with pytest.raises(ValueError, match=message):
        serialize(x, JSON)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"style": "toml"}, "choose 'json' or 'yaml'"),
        ({"float_digits": 0}, "between 1 and 17"),
        ({"float_digits": 18}, "between 1 and 17"),
        ({"max_chars": 3}, "max_chars >= 5"),
        ({"max_chars": 3, "truncation": "head"}, "max_chars >= 4"),
        ({"truncation": "tail"}, "'head_tail' or 'head'"),
        ({"key_order": ("a", "a")}, "more than once"),
        ({"key_order": "ab"}, "list of key names"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SerializerConfig(**kwargs)


def test_config_dict_round_trip():
    cfg = SerializerConfig(style="yaml", key_order=("b", "a"), max_chars=50, truncation="head")
    d = cfg.to_dict()
    assert d["key_order"] == ["b", "a"]
    assert json.loads(json.dumps(d)) == d
    assert SerializerConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match=r"unknown SerializerConfig keys \['stlye'\]"):
        SerializerConfig.from_dict({"stlye": "json"})


# ----------------------------------------------------------------------------------------------
# Properties

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
mappings = st.dictionaries(st.text(max_size=8), values, max_size=6)
configs = st.builds(
    SerializerConfig,
    style=st.sampled_from(["json", "yaml"]),
    float_digits=st.integers(1, 17),
    max_chars=st.none() | st.integers(5, 60),
    truncation=st.sampled_from(["head_tail", "head"]),
)


@settings(max_examples=150, deadline=None)
@given(mappings, configs)
def test_deterministic_and_key_order_independent(x, cfg):
    text = serialize(x, cfg)
    assert serialize(x, cfg) == text
    reversed_x = dict(reversed(list(x.items())))
    assert serialize(reversed_x, cfg) == text


@settings(max_examples=150, deadline=None)
@given(st.one_of(mappings, st.text(max_size=200)), configs)
def test_length_bound(x, cfg):
    text = serialize(x, cfg)
    full = serialize(x, SerializerConfig(style=cfg.style, float_digits=cfg.float_digits))
    if cfg.max_chars is None or len(full) <= cfg.max_chars:
        assert text == full
    else:
        assert len(text) == cfg.max_chars
        assert cfg.marker in text
        assert full.startswith(text[: (cfg.max_chars - len(cfg.marker) + 1) // 2])


@settings(max_examples=100, deadline=None)
@given(mappings)
def test_json_style_parses_back(x):
    # With 17 digits every float round-trips, so the JSON text decodes to the same mapping.
    cfg = SerializerConfig(float_digits=17)
    assert json.loads(serialize(x, cfg)) == x


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=100), st.integers(5, 50))
def test_truncate_keeps_head_and_tail(s, n):
    cfg = SerializerConfig(max_chars=n)
    t = truncate(s, cfg)
    if len(s) > n:
        keep = n - len(cfg.marker)
        head, tail = (keep + 1) // 2, keep // 2
        assert t == s[:head] + cfg.marker + s[len(s) - tail :]
