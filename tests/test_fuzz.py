"""Fuzzing: arbitrary input to every reader, the serialiser, the field encoder, the input and the
number tokenizers gives a result or the documented ValueError, never another exception."""

from __future__ import annotations

import gzip
import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlm.inputs.fields import FieldEncoder
from rlm.inputs.text import SerializerConfig, serialize
from rlm.inputs.textnums import TextNumberEncoder
from rlm.inputs.vocab import InputTokenizer, VocabConfig
from rlm.io import read_examples
from rlm.numbers import NumberConfig
from rlm.numbers.tokenizers import make_number_tokenizer

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON-like values with the awkward corners: deep nesting, huge and tiny numbers, NaN and inf,
# lone surrogates and control characters in strings, non-string keys
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=4),
    ),
    max_leaves=20,
)
anything = st.one_of(values, st.binary(max_size=20), st.sets(st.integers(), max_size=3))


def _only_value_errors(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ValueError:
        return None


@FUZZ
@given(
    raw=st.binary(max_size=400),
    suffix=st.sampled_from([".jsonl", ".csv", ".jsonl.gz", ".csv.gz", ".parquet"]),
    compress=st.booleans(),
    cut=st.integers(0, 30),
)
def test_readers_on_arbitrary_bytes(raw: bytes, suffix: str, compress: bool, cut: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"rows{suffix}"
        data = gzip.compress(raw) if compress else raw
        path.write_bytes(data[: max(0, len(data) - cut)] if compress else data)  # truncated gzip
        for kw in ({}, {"targets": ["y"], "y_key": None}, {"targets": ["t"]}):
            if suffix != ".jsonl" and "targets" not in kw:
                kw = {"targets": ["t"]}
            _only_value_errors(read_examples, path, **kw)


@FUZZ
@given(rows=st.lists(values, max_size=5))
def test_jsonl_reader_on_arbitrary_json_rows(rows: list) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "rows.jsonl"
        lines = []
        for r in rows:
            try:
                lines.append(json.dumps(r))
            except (TypeError, ValueError):  # non-string keys: not JSON, skip the row
                continue
        path.write_text("\n".join(lines))
        for kw in ({}, {"targets": ["y"], "y_key": None}, {"allow_unlabeled": True}):
            _only_value_errors(read_examples, path, **kw)


@FUZZ
@given(cells=st.lists(st.lists(st.text(max_size=10), min_size=1, max_size=4), max_size=6))
def test_csv_and_parquet_readers_on_arbitrary_tables(cells: list[list[str]]) -> None:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf).writerows(cells)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "rows.csv"
        path.write_text(buf.getvalue())
        _only_value_errors(read_examples, path, targets=[cells[0][0] if cells else "t"])
        pq = Path(d) / "rows.parquet"
        pq.write_bytes(buf.getvalue().encode())  # not Parquet at all
        _only_value_errors(read_examples, pq, targets=["t"])


@FUZZ
@given(x=anything, style=st.sampled_from(["json", "yaml"]), cut=st.none() | st.integers(5, 60))
def test_serializer_on_anything(x, style: str, cut: int | None) -> None:
    out = _only_value_errors(serialize, x, SerializerConfig(style=style, max_chars=cut))  # type: ignore[arg-type]
    assert out is None or isinstance(out, str)


FIELDS = FieldEncoder.fit([{"a": 1, "b": "x", "c": {"d": 2.5}}, {"a": 3, "b": "y", "c": None}])


@FUZZ
@given(x=anything)
def test_field_encoder_on_anything(x) -> None:
    row = _only_value_errors(FIELDS.encode, x)
    if row is not None:
        assert len(row) >= 1 and all(math.isfinite(v) for v in row.nums.ravel())


TEXT = InputTokenizer.train(["abc 123 def", "xyz 4.5e-3"], VocabConfig(vocab_size=300))
NUMS = TextNumberEncoder.train(["abc 123", "x = 4.5"], VocabConfig(vocab_size=300, numbers="both"))


@FUZZ
@given(s=st.text(max_size=200))  # includes lone surrogates and control characters
def test_input_tokenizers_on_any_text(s: str) -> None:
    for encode in (TEXT.encode, NUMS.encode):
        out = _only_value_errors(encode, s)
        assert out is not None, f"{s!r} must encode"  # any str is readable: byte-level BPE
    _only_value_errors(TEXT.encode, 5)  # type: ignore[arg-type]


CONFIGS = [
    NumberConfig(),
    NumberConfig(exponent_digits=2),
    NumberConfig(base=2, exponent_digits=6, mantissa_digits=10),
    NumberConfig(scheme="p10"),
    NumberConfig(scheme="normalized", bounds=(-1.0, 1.0)),
    NumberConfig(out_of_range="clamp"),
]
EDGES = [0.0, -0.0, 5e-324, -5e-324, 1.7976931348623157e308, -1e-300, 1e300, 9.9995, 0.99995]


@FUZZ
@given(y=st.one_of(st.floats(), st.sampled_from(EDGES)), junk=st.lists(st.text(max_size=4)))
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.scheme}-{c.base}-{c.out_of_range}")
def test_number_tokenizers_on_any_float_and_any_tokens(config: NumberConfig, y, junk) -> None:
    tok = make_number_tokenizer(config)
    tokens = _only_value_errors(tok.encode, y)
    if tokens is not None:
        assert math.isfinite(tok.decode(tokens))
    _only_value_errors(tok.decode, junk)
    _only_value_errors(tok.decode, [tok.tokens[hash(t) % len(tok.tokens)] for t in junk])
