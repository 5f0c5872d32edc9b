"""Number tokenizers: golden encodings, grammar properties, round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.numbers import (
    Grammar,
    NumberConfig,
    make_number_tokenizer,
    relative_precision,
)

IEEE = NumberConfig()  # base 10, 1 exponent digit, 4 mantissa digits
IEEE2 = NumberConfig(exponent_digits=2, mantissa_digits=5)
P10 = NumberConfig(scheme="p10")
NORM = NumberConfig(scheme="normalized", bounds=(0.0, 100.0), mantissa_digits=4)


@pytest.mark.parametrize(
    ("config", "y", "tokens", "decoded"),
    [
        (IEEE, 123.4, "<+><+><2><1><2><3><4>", 123.4),
        (IEEE, 0.0, "<+><+><0><0><0><0><0>", 0.0),
        (IEEE, -0.0, "<-><+><0><0><0><0><0>", -0.0),
        (IEEE, 1.0, "<+><+><0><1><0><0><0>", 1.0),
        (IEEE, 1000.0, "<+><+><3><1><0><0><0>", 1000.0),  # exact power of ten
        (IEEE, 0.001, "<+><-><3><1><0><0><0>", 0.001),
        (IEEE, 9.99995, "<+><+><1><1><0><0><0>", 10.0),  # rounding carries into the exponent
        (IEEE, 9.9994, "<+><+><0><9><9><9><9>", 9.999),
        (IEEE, -85.863, "<-><+><1><8><5><8><6>", -85.86),
        (IEEE, 1e-9, "<+><-><9><1><0><0><0>", 1e-9),  # tiny: smallest exponent
        (IEEE, 9.999e9, "<+><+><9><9><9><9><9>", 9.999e9),  # huge: largest value
        (IEEE2, 6.02214e23, "<+><+><2><3><6><0><2><2><1>", 6.0221e23),
        (P10, 123.4, "<+><1><2><3><4><E-1>", 123.4),
        (P10, 0.0, "<+><0><0><0><0><E0>", 0.0),
        (P10, 9.99995, "<+><1><0><0><0><E-2>", 10.0),
        (P10, -0.5, "<-><5><0><0><0><E-4>", -0.5),
        (NORM, 0.0, "<0><0><0><0>", 0.0),
        (NORM, 100.0, "<9><9><9><9>", 100.0),
        (NORM, 50.0, "<5><0><0><0>", 50.005000500050005),
    ],
)
def test_golden(config: NumberConfig, y: float, tokens: str, decoded: float) -> None:
    tok = make_number_tokenizer(config)
    assert "".join(tok.encode(y)) == tokens
    out = tok.decode(tok.encode(y))
    assert out == pytest.approx(decoded, rel=1e-12, abs=1e-300)
    assert math.copysign(1, out) == math.copysign(1, decoded)  # -0 keeps its sign


@pytest.mark.parametrize(
    ("config", "y"),
    [
        (IEEE, 1e10),  # overflow
        (IEEE, -2e12),
        (IEEE, 1e-12),  # underflow
        (P10, 1e20),
        (NORM, 100.5),
        (NORM, -1.0),
    ],
)
def test_out_of_range_is_an_error_by_default(config: NumberConfig, y: float) -> None:
    tok = make_number_tokenizer(config)
    with pytest.raises(ValueError, match="out_of_range='clamp'"):
        tok.encode(y)


@pytest.mark.parametrize(
    ("config", "y", "expected"),
    [
        (IEEE, 1e10, 9.999e9),
        (IEEE, -1e12, -9.999e9),
        (IEEE, 1e-12, 0.0),
        (IEEE, 8e-10, 1e-9),
        (NORM, 120.0, 100.0),
        (NORM, -3.0, 0.0),
    ],
)
def test_clamp_opt_in_is_counted(config: NumberConfig, y: float, expected: float) -> None:
    from dataclasses import replace

    tok = make_number_tokenizer(replace(config, out_of_range="clamp"))
    assert tok.decode(tok.encode(y)) == pytest.approx(expected)
    assert tok.clamped == 1


@pytest.mark.parametrize("y", [math.nan, math.inf, -math.inf])
def test_non_finite_rejected(y: float) -> None:
    with pytest.raises(ValueError, match="non-finite"):
        make_number_tokenizer(IEEE).encode(y)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scheme": "float"}, "scheme"),
        ({"base": 1}, "base"),
        ({"scheme": "p10", "base": 2}, "base=10"),
        ({"mantissa_digits": 0}, "mantissa_digits"),
        ({"bounds": (1.0, 1.0)}, "lo < hi"),
        ({"out_of_range": "ignore"}, "out_of_range"),
    ],
)
def test_bad_config(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        NumberConfig(**kwargs)


def test_config_round_trip_and_unknown_key() -> None:
    for c in (IEEE, IEEE2, P10, NORM):
        assert NumberConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown NumberConfig keys"):
        NumberConfig.from_dict({"scheme": "ieee", "digits": 3})


def test_normalized_fits_bounds() -> None:
    tok = make_number_tokenizer(NumberConfig(scheme="normalized"), [3.0, 5.0, 4.0])
    assert tok.config.bounds == (3.0, 5.0)
    with pytest.raises(ValueError, match="bounds"):
        make_number_tokenizer(NumberConfig(scheme="normalized"))


finite = st.floats(min_value=-9.99e9, max_value=9.99e9, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(y=finite.filter(lambda v: v == 0 or abs(v) >= 1e-9))
@pytest.mark.parametrize(
    "config", [IEEE, IEEE2, NumberConfig(base=2, exponent_digits=6, mantissa_digits=10)]
)
def test_ieee_round_trip_within_precision(config: NumberConfig, y: float) -> None:
    tok = make_number_tokenizer(config)
    out = tok.decode(tok.encode(y))
    assert abs(out - y) <= relative_precision(config) * abs(y) * (1 + 1e-9)


@settings(max_examples=300, deadline=None)
@given(
    y=st.floats(min_value=-1e11, max_value=1e11, allow_nan=False).filter(
        lambda v: v == 0 or abs(v) >= 1e-8
    )
)
def test_p10_round_trip_within_precision(y: float) -> None:
    tok = make_number_tokenizer(P10)
    out = tok.decode(tok.encode(y))
    assert abs(out - y) <= relative_precision(P10) * abs(y) * (1 + 1e-9)


@settings(max_examples=200, deadline=None)
@given(y=st.floats(min_value=0.0, max_value=100.0))
def test_normalized_round_trip_within_precision(y: float) -> None:
    tok = make_number_tokenizer(NORM)
    assert abs(tok.decode(tok.encode(y)) - y) <= 100.0 / (2 * (10**4 - 1)) + 1e-12


def _random_walk(grammar: Grammar, rng: np.random.Generator) -> list[int]:
    """A uniformly random path through the grammar until it accepts."""
    state, ids = grammar.start, []
    while not grammar.accept[state]:
        allowed = np.flatnonzero(grammar.mask[state])
        assert allowed.size, "a non-accepting state must allow some token"
        t = int(rng.choice(allowed))
        ids.append(t)
        state = int(grammar.table[state, t])
    return ids


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
@pytest.mark.parametrize("config", [IEEE, IEEE2, P10, NORM])
def test_every_accepted_string_decodes_to_a_finite_float(config: NumberConfig, seed: int) -> None:
    tok = make_number_tokenizer(config)
    ids = _random_walk(tok.grammar(), np.random.default_rng(seed))
    assert len(ids) == tok.length
    value = tok.decode([tok.tokens[i] for i in ids])
    assert math.isfinite(value)
    # and decoding a valid string then re-encoding it is stable up to the zero spelling
    again = tok.decode(tok.encode(value))
    assert again == pytest.approx(
        value, rel=relative_precision(config) if config.scheme != "normalized" else 1e-9
    )


@settings(max_examples=100, deadline=None)
@given(y=finite.filter(lambda v: v == 0 or abs(v) >= 1e-9))
def test_encoded_strings_are_accepted(y: float) -> None:
    for config in (IEEE, P10):
        tok = make_number_tokenizer(config)
        states = tok.grammar().run(tok.encode_ids(y))
        assert len(states) == tok.length


def test_grammar_rejects_invalid_strings() -> None:
    tok = make_number_tokenizer(IEEE)
    with pytest.raises(ValueError, match="not a valid"):
        tok.decode(["<+>", "<+>", "<1>", "<0>", "<5>", "<0>", "<0>"])  # leading 0 then nonzero
    with pytest.raises(ValueError, match="unknown number token"):
        tok.decode(["<x>"])


def test_concat_grammar_counts_and_vectorised_decode() -> None:
    a, b = make_number_tokenizer(IEEE), make_number_tokenizer(IEEE)
    g = Grammar.concat([a.grammar(), b.grammar()])
    ids = a.encode_ids(3.5) + b.encode_ids(-0.25)
    assert len(g.run(ids)) == a.length + b.length
    assert not g.accepts(a.encode_ids(3.5))  # one number is not enough
    batch = np.array([a.encode_ids(v) for v in (1.0, 2.5, -7e3)])
    np.testing.assert_allclose(a.decode_ids(batch), [1.0, 2.5, -7e3])
