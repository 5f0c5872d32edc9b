"""Numbers inside text: where they are, and the features a number is read by.

Two readers share this module. The field encoder (``rlm.inputs.fields``) reads a number-valued
field, and the numbers inside an unseen string value (``"Xeon 8380 @ 2.30GHz"``), as *values*:
a handful of features of the number that a small network projects into the encoder's width
(in the spirit of xVal and of numeric input projections around a frozen LM). A value never seen
in training then lands between the values around it instead of becoming opaque byte pieces.

Extraction is deterministic and deliberately conservative, because a number glued into an
identifier is part of a name, not a quantity:

* ints, decimals (``2.``, ``.5``), scientific notation (``1e-3``, ``6.02E23``), a leading minus
  when it does not follow a word character (``x-5`` is ``x`` minus ``5``);
* a unit may follow (``2.30GHz``, ``512MB``, ``100ms``, ``95%``);
* never inside identifiers (``conv3x3``, ``x264``, ``lr_1e3``, ``v2``), never hex (``0x1F``),
  never part of a dotted version (``3.11.4``, ``10.0.0.1``): those stay text.

Torch-free on purpose (a test enforces it).
"""

from __future__ import annotations

import bisect
import functools
import math
import re
from dataclasses import dataclass

import numpy as np

# A number starts where no word character, dot or digit-joiner precedes it, and ends where no
# digit, word joiner or further dot follows (letters may: they are a unit). The exponent is
# only taken when digits follow the "e", so "1em" is 1 with the unit "em".
NUMBER_RE = re.compile(
    r"(?<![\w.])"
    r"-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?"
    r"(?![\d_.]|x[0-9a-fA-F])"
)


@dataclass(frozen=True)
class Found:
    """One number in a text: its span (``text[start:end]``) and its value."""

    start: int
    end: int
    value: float


def find_numbers(text: str) -> list[Found]:
    """Every number in ``text``, left to right, by the rules of the module docstring."""
    out = []
    for m in NUMBER_RE.finditer(text):
        value = float(m.group())
        if math.isfinite(value):  # "1e999" overflows: it stays text, never an inf feature
            out.append(Found(m.start(), m.end(), value))
    return out


def parse_number(text: str) -> float | None:
    """The value of a string that is exactly one number (``" 0.01 "`` -> 0.01), else None.

    This is how a CSV cell or a quoted YAML value that holds a number is read as one.
    """
    s = text.strip()
    m = NUMBER_RE.fullmatch(s)
    if m is None:
        return None
    value = float(s)
    return value if math.isfinite(value) else None


def segments(text: str, keep_digits: bool) -> list[str | float]:
    """``text`` cut at its numbers: the pieces of text between them (and the numbers' own text
    when ``keep_digits``) as ``str``, each number's value as a ``float`` after them. How both
    the field encoder (an unseen string value) and ``rlm.inputs.textnums`` read text."""
    out: list[str | float] = []
    start = 0
    for f in find_numbers(text):
        out.append(text[start : f.end] if keep_digits else text[start : f.start])
        out.append(f.value)
        start = f.end
    out.append(text[start:])
    return [s for s in out if s != ""]


# ----------------------------------------------------------------------------------------------
# Features of one number


def signed_log(v: float) -> float:
    """sign(v) * log10(1 + |v|) / 5: the magnitude, O(1) from 0 to 1e5 and monotone beyond."""
    return math.copysign(math.log10(1.0 + abs(v)), v) / 5.0


def piecewise_linear(v: float, edges: tuple[float, ...], bins: int) -> list[float]:
    """Piecewise-linear encoding of ``v`` over ``edges`` (len m+1 -> m bins), padded to ``bins``.

    Component j is how far ``v`` has come through bin j: 0 below it, 1 above it, linear inside
    (Gorishniy et al., "On Embeddings for Numerical Features", 2022). The first bin extends
    below and the last above, so an out-of-range value still moves its outer component.
    """
    m = len(edges) - 1
    out = [0.0] * bins
    for j in range(m):
        lo, hi = edges[j], edges[j + 1]
        t = (v - lo) / (hi - lo)
        if j > 0:
            t = max(t, 0.0)
        if j < m - 1:
            t = min(t, 1.0)
        out[j] = t
    return out


@functools.cache
def _grid(n: int) -> tuple[float, ...]:
    """``np.linspace(0, 1, n)``, once per n."""
    return tuple(np.linspace(0.0, 1.0, n).tolist())


def quantile_position(v: float, edges: tuple[float, ...]) -> float:
    """Where ``v`` falls among increasing ``edges``, from 0 at the first to 1 at the last,
    linear in between: ``np.interp(v, edges, np.linspace(0, 1, len(edges)))`` to the bit, in
    plain Python (a field encoder calls it once per number: numpy's per-call overhead was a
    fifth of the time to predict a config)."""
    grid = _grid(len(edges))
    if v <= edges[0]:
        return grid[0]
    if v >= edges[-1]:
        return grid[-1]
    j = bisect.bisect_right(edges, v) - 1  # edges[j] <= v < edges[j + 1]
    if v == edges[j]:
        return grid[j]
    slope = (grid[j + 1] - grid[j]) / (edges[j + 1] - edges[j])
    return slope * (v - edges[j]) + grid[j]


def quantile_edges(values: list[float], bins: int) -> tuple[float, ...]:
    """Up to ``bins + 1`` strictly increasing edges at the values' quantiles (the distinct
    values themselves when there are few); a single distinct value has no bins (empty)."""
    distinct = sorted(set(values))
    if len(distinct) < 2:
        return ()
    if len(distinct) <= bins + 1:
        return tuple(distinct)
    ordered = sorted(values)
    n = len(ordered)
    edges = [ordered[min(n - 1, round(i * (n - 1) / bins))] for i in range(bins + 1)]
    unique: list[float] = []
    for e in edges:
        if not unique or e > unique[-1]:
            unique.append(e)
    return tuple(unique) if len(unique) >= 2 else ()
