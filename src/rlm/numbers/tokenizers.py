"""Number tokenizers: how a float becomes a short, fixed-length string of tokens and back.

An RLM writes its prediction digit by digit, so the number representation *is* the output
vocabulary. Three schemes are provided, all fixed-length (every number is exactly
``tokenizer.length`` tokens), which makes batched decoding a plain loop over positions:

* ``ieee``:       sign, exponent sign, exponent digits, mantissa digits (d1.d2d3... x B^e).
                  123.4 -> <+><+><2><1><2><3><4>
* ``p10``:        sign, integer mantissa digits, one exponent token.
                  123.4 -> <+><1><2><3><4><E-1>
* ``normalized``: y scaled to [0, 1] by stored bounds, then base-B digits of that fraction.

Each tokenizer also exposes a finite-state **grammar** (a DFA over its tokens). Its transition
table ``[state, token] -> next state`` (-1 = forbidden) is all constrained decoding needs: the
allowed-token mask is ``table[state] >= 0`` and the next state is ``table[state, token]``, both
vectorised gathers, so no Python runs per sequence. Any token string the grammar accepts decodes
to a finite float; the property tests check exactly that.

This module is torch-free on purpose: tokenizers are plain data, used by training, decoding,
checkpoints and tests alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from typing import Literal

import numpy as np

from ..strict import strict_from_dict
from .grammar import Grammar, _Builder

Scheme = Literal["ieee", "p10", "normalized"]
OutOfRange = Literal["error", "clamp"]


# ----------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class NumberConfig:
    """How targets are written as tokens. Saved with every model."""

    scheme: Scheme = "ieee"
    base: int = 10
    mantissa_digits: int = 4
    exponent_digits: int = 1  # ieee: exponent in [-(B^E - 1), B^E - 1]
    exponent_min: int = -12  # p10: smallest exponent token
    exponent_max: int = 8  # p10: largest exponent token
    bounds: tuple[float, float] | None = None  # normalized: (lo, hi); None = fit on training data
    out_of_range: OutOfRange = "error"  # "clamp" is an explicit opt-in, reported when used

    def __post_init__(self) -> None:
        if self.scheme not in ("ieee", "p10", "normalized"):
            raise ValueError(f"scheme={self.scheme!r}: choose 'ieee', 'p10' or 'normalized'")
        if not 2 <= self.base <= 36:
            raise ValueError(f"base={self.base}: use a base between 2 and 36")
        if self.scheme == "p10" and self.base != 10:
            raise ValueError("the p10 scheme is decimal by definition: set base=10")
        if self.mantissa_digits < 1:
            raise ValueError(f"mantissa_digits={self.mantissa_digits}: need at least 1")
        if self.exponent_digits < 1:
            raise ValueError(f"exponent_digits={self.exponent_digits}: need at least 1")
        if self.exponent_min > self.exponent_max:
            raise ValueError(
                f"exponent_min={self.exponent_min} > exponent_max={self.exponent_max}: swap them"
            )
        if self.out_of_range not in ("error", "clamp"):
            raise ValueError(f"out_of_range={self.out_of_range!r}: choose 'error' or 'clamp'")
        if self.bounds is not None:
            lo, hi = self.bounds
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"bounds={self.bounds}: need finite lo < hi")
            object.__setattr__(self, "bounds", (float(lo), float(hi)))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bounds"] = list(self.bounds) if self.bounds is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NumberConfig:
        return strict_from_dict(cls, d, tuples=("bounds",))


# ----------------------------------------------------------------------------------------------
# Tokenizers


class NumberTokenizer:
    """Base class: token list, fixed length, encode/decode, grammar, clamp bookkeeping.

    Subclasses set ``tokens`` and ``length`` and then call ``super().__init__(config)``.
    """

    tokens: tuple[str, ...]
    length: int

    def __init__(self, config: NumberConfig) -> None:
        self.config = config
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.clamped = 0  # how many values encode() had to clamp (reported in the training log)
        self._grammar: Grammar | None = None

    # subclasses implement these three
    def _encode_ids(self, y: float) -> list[int]:
        raise NotImplementedError

    def decode_ids(self, ids: np.ndarray) -> np.ndarray:
        """Vectorised decode: ``ids`` (N, length) int -> (N,) float64."""
        raise NotImplementedError

    def _build_grammar(self) -> Grammar:
        raise NotImplementedError

    def grammar(self) -> Grammar:
        """The DFA over this tokenizer's token ids (built once, then cached)."""
        if self._grammar is None:
            self._grammar = self._build_grammar()
        return self._grammar

    # shared API
    def encode_ids(self, y: float) -> list[int]:
        y = float(y)
        if not math.isfinite(y):
            raise ValueError(f"cannot tokenize non-finite target {y}: drop or fix that row")
        return self._encode_ids(y)

    def encode(self, y: float) -> list[str]:
        return [self.tokens[i] for i in self.encode_ids(y)]

    def decode(self, tokens: Sequence[str]) -> float:
        try:
            ids = [self.index[t] for t in tokens]
        except KeyError as e:
            raise ValueError(f"unknown number token {e.args[0]!r}; valid: {self.tokens}") from None
        if len(ids) != self.length or not self.grammar().accepts(ids):
            raise ValueError(f"{''.join(tokens)!r} is not a valid {self.config.scheme} number")
        return float(self.decode_ids(np.asarray([ids]))[0])

    def _out_of_range(self, y: float, lo: float, hi: float) -> float:
        """Value to encode instead of out-of-range ``y``: error by default, clamp on opt-in."""
        if self.config.out_of_range == "error":
            raise ValueError(
                f"target {y!r} is outside the {self.config.scheme} range [{lo:g}, {hi:g}]; widen it "
                "(more exponent digits / wider bounds) or pass out_of_range='clamp'"
            )
        self.clamped += 1
        return min(max(y, lo), hi)

    @property
    def digit_tokens(self) -> list[int]:
        return [self.index[_digit(d)] for d in range(self.config.base)]


def _digit(d: int) -> str:
    return f"<{d}>" if d < 10 else f"<{chr(ord('a') + d - 10)}>"


def _sci(y: Fraction, base: int, digits: int) -> tuple[int, int]:
    """Exact (mantissa, exponent) with ``base^(digits-1) <= mantissa < base^digits``, y ~ m*B^(e-digits+1).

    Rounds half to even on the exact binary value of ``y``, and carries (9.99995 -> 1.000e1).
    """
    e = math.floor(math.log(float(y), base)) if float(y) > 0 else 0
    for _ in range(4):  # log() can be off by one near powers of the base: fix exactly
        if y >= Fraction(base) ** (e + 1):
            e += 1
        elif y < Fraction(base) ** e:
            e -= 1
        else:
            break
    m = round(y / Fraction(base) ** (e - digits + 1))
    if m >= base**digits:  # rounding carried into a new digit
        e += 1
        m = round(y / Fraction(base) ** (e - digits + 1))
    return int(m), e


def _to_digits(m: int, base: int, n: int) -> list[int]:
    out = []
    for _ in range(n):
        m, r = divmod(m, base)
        out.append(r)
    return out[::-1]


def _scale(mant: np.ndarray, base: int, power: np.ndarray) -> np.ndarray:
    """mant * base^power, correctly rounded: divide by an exact power for negative exponents."""
    big = np.power(float(base), np.abs(power))
    return np.where(power >= 0, mant * big, mant / big)


def _from_digits(ids: np.ndarray, digit_of: np.ndarray, base: int) -> np.ndarray:
    """Digits (N, n) token ids -> integer values (N,) as float64, most significant first."""
    d = digit_of[ids].astype(np.float64)  # (N, n)
    weights = float(base) ** np.arange(ids.shape[1] - 1, -1, -1)
    return d @ weights


class IEEETokenizer(NumberTokenizer):
    """<sign><exp sign><exp digits...><mantissa digits...>: value = d1.d2...dM x B^exp."""

    def __init__(self, config: NumberConfig) -> None:
        B, E, M = config.base, config.exponent_digits, config.mantissa_digits
        self.tokens = ("<+>", "<->", *(_digit(d) for d in range(B)))
        self.length = 2 + E + M
        self.max_exp = B**E - 1
        super().__init__(config)
        # the largest and smallest positive representable magnitudes
        self.max_abs = (B**M - 1) / B ** (M - 1) * float(B) ** self.max_exp
        self.min_abs = float(B) ** (-self.max_exp)
        self._digit_of = np.zeros(len(self.tokens), dtype=np.int64)
        self._digit_of[2:] = np.arange(B)

    def _encode_ids(self, y: float) -> list[int]:
        B, E, M = self.config.base, self.config.exponent_digits, self.config.mantissa_digits
        sign = 1 if math.copysign(1.0, y) < 0 else 0
        a = abs(y)
        if a > self.max_abs:
            a = abs(self._out_of_range(y, -self.max_abs, self.max_abs))
        if a == 0:
            return [sign, 0] + [self.index["<0>"]] * (E + M)
        m, e = _sci(Fraction(a), B, M)
        if e > self.max_exp:  # rounding pushed it over the top
            a = abs(self._out_of_range(y, -self.max_abs, self.max_abs))
            m, e = _sci(Fraction(a), B, M)
        if e < -self.max_exp:  # underflow: nearest representable is 0 or +-min_abs
            self._out_of_range(y, self.min_abs, self.max_abs)
            if a < self.min_abs / 2:
                return [sign, 0] + [self.index["<0>"]] * (E + M)
            m, e = B ** (M - 1), -self.max_exp
        digits = _to_digits(abs(e), B, E) + _to_digits(m, B, M)
        return [sign, 1 if e < 0 else 0] + [self.index[_digit(d)] for d in digits]

    def decode_ids(self, ids: np.ndarray) -> np.ndarray:
        B, E, M = self.config.base, self.config.exponent_digits, self.config.mantissa_digits
        ids = np.asarray(ids)
        sign = np.where(ids[:, 0] == 1, -1.0, 1.0)
        exp_sign = np.where(ids[:, 1] == 1, -1.0, 1.0)
        exp = exp_sign * _from_digits(ids[:, 2 : 2 + E], self._digit_of, B)
        mant = _from_digits(ids[:, 2 + E :], self._digit_of, B)
        return sign * _scale(mant, B, exp - (M - 1))

    def _build_grammar(self) -> Grammar:
        g = _Builder(len(self.tokens))
        s_sign, s_esign = g.state(), g.state()
        exp_states = [g.state() for _ in range(self.config.exponent_digits + 1)]  # last = lead
        done = g.state()
        g.edge(s_sign, [0, 1], s_esign)
        g.edge(s_esign, [0, 1], exp_states[0])
        g.chain(exp_states, self.digit_tokens)  # any exponent digits
        # zero may follow any exponent; it decodes to +-0 whatever the exponent says
        g.mantissa(exp_states[-1], self.config.mantissa_digits, self.digit_tokens, done, done)
        return g.build(s_sign, [done])


class P10Tokenizer(NumberTokenizer):
    """<sign><mantissa digits...><E k>: value = int(d1...dM) x 10^k."""

    def __init__(self, config: NumberConfig) -> None:
        M = config.mantissa_digits
        self.exps = list(range(config.exponent_min, config.exponent_max + 1))
        self.tokens = (
            "<+>",
            "<->",
            *(_digit(d) for d in range(10)),
            *(f"<E{k}>" for k in self.exps),
        )
        self.length = 1 + M + 1
        super().__init__(config)
        self.max_abs = (10**M - 1) * 10.0**config.exponent_max
        self.min_abs = 10.0 ** (M - 1) * 10.0**config.exponent_min
        self._digit_of = np.zeros(len(self.tokens), dtype=np.int64)
        self._digit_of[2:12] = np.arange(10)
        self._exp_of = np.zeros(len(self.tokens), dtype=np.float64)
        self._exp_of[12:] = self.exps
        self._zero_exp = 0 if 0 in self.exps else config.exponent_min

    def _encode_ids(self, y: float) -> list[int]:
        M = self.config.mantissa_digits
        sign = 1 if math.copysign(1.0, y) < 0 else 0
        a = abs(y)
        if a > self.max_abs:
            a = abs(self._out_of_range(y, -self.max_abs, self.max_abs))
        zero = [sign] + [self.index["<0>"]] * M + [self.index[f"<E{self._zero_exp}>"]]
        if a == 0:
            return zero
        m, e = _sci(Fraction(a), 10, M)
        k = e - M + 1
        if k > self.config.exponent_max:
            a = abs(self._out_of_range(y, -self.max_abs, self.max_abs))
            m, e = _sci(Fraction(a), 10, M)
            k = e - M + 1
        if k < self.config.exponent_min:
            self._out_of_range(y, self.min_abs, self.max_abs)
            if a < self.min_abs / 2:
                return zero
            m, k = 10 ** (M - 1), self.config.exponent_min
        return (
            [sign] + [self.index[_digit(d)] for d in _to_digits(m, 10, M)] + [self.index[f"<E{k}>"]]
        )

    def decode_ids(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        sign = np.where(ids[:, 0] == 1, -1.0, 1.0)
        mant = _from_digits(ids[:, 1:-1], self._digit_of, 10)
        return sign * _scale(mant, 10, self._exp_of[ids[:, -1]])

    def _build_grammar(self) -> Grammar:
        g = _Builder(len(self.tokens))
        s_sign, s_lead = g.state(), g.state()
        s_exp, s_zexp, done = g.state(), g.state(), g.state()
        g.edge(s_sign, [0, 1], s_lead)
        g.mantissa(s_lead, self.config.mantissa_digits, self.digit_tokens, s_exp, s_zexp)
        g.edge(s_exp, [self.index[f"<E{k}>"] for k in self.exps], done)
        g.edge(s_zexp, [self.index[f"<E{self._zero_exp}>"]], done)  # one spelling of zero
        return g.build(s_sign, [done])


class NormalizedTokenizer(NumberTokenizer):
    """Base-B digits of (y - lo) / (hi - lo) in [0, 1]; D = mantissa_digits digits.

    The digit string n in [0, B^D - 1] stands for lo + (hi - lo) * n / (B^D - 1), so both bounds
    are exactly representable and the precision is (hi - lo) / (B^D - 1).
    """

    def __init__(self, config: NumberConfig) -> None:
        if config.bounds is None:
            raise ValueError("the normalized scheme needs bounds: pass bounds=(lo, hi) or fit them")
        B, D = config.base, config.mantissa_digits
        self.tokens = tuple(_digit(d) for d in range(B))
        self.length = D
        super().__init__(config)
        self.lo, self.hi = config.bounds
        self.levels = B**D - 1
        self._digit_of = np.arange(B, dtype=np.int64)

    def _encode_ids(self, y: float) -> list[int]:
        B, D = self.config.base, self.config.mantissa_digits
        if not self.lo <= y <= self.hi:
            y = self._out_of_range(y, self.lo, self.hi)
        n = round(
            (Fraction(y) - Fraction(self.lo))
            / (Fraction(self.hi) - Fraction(self.lo))
            * self.levels
        )
        return [self.index[_digit(d)] for d in _to_digits(int(n), B, D)]

    def decode_ids(self, ids: np.ndarray) -> np.ndarray:
        n = _from_digits(np.asarray(ids), self._digit_of, self.config.base)
        return self.lo + (self.hi - self.lo) * (n / self.levels)

    def _build_grammar(self) -> Grammar:
        g = _Builder(len(self.tokens))
        states = [g.state() for _ in range(self.length + 1)]
        g.chain(states, self.digit_tokens)
        return g.build(states[0], [states[-1]])


def make_number_tokenizer(
    config: NumberConfig, values: Sequence[float] | None = None
) -> NumberTokenizer:
    """Build the tokenizer a config names; the normalized scheme fits its bounds on ``values``."""
    if config.scheme == "ieee":
        return IEEETokenizer(config)
    if config.scheme == "p10":
        return P10Tokenizer(config)
    if config.bounds is None:
        if values is None or len(values) == 0:
            raise ValueError(
                "normalized scheme: give bounds=(lo, hi) or training values to fit them"
            )
        lo, hi = float(np.min(values)), float(np.max(values))
        if lo == hi:  # a constant target still needs a non-empty interval
            lo, hi = lo - 0.5, hi + 0.5
        config = replace(config, bounds=(lo, hi))
    return NormalizedTokenizer(config)


def relative_precision(config: NumberConfig) -> float:
    """Worst-case relative rounding error of ieee/p10 (half a unit in the last mantissa place)."""
    if config.scheme == "normalized":
        raise ValueError("normalized precision is absolute: (hi - lo) / (2 * (base^digits - 1))")
    return 0.5 * float(config.base) ** (1 - config.mantissa_digits)
