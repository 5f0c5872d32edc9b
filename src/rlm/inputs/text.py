"""Canonical text for model inputs: how a mapping x becomes the string the encoder reads.

An RLM reads text, so a configuration ``{"Qp": 23, "Crf": 0.30000000000000004}`` must become a
string, and the *same* configuration must always become the *same* string: at training time, at
prediction time, and on another machine a year later. That is why the serialiser is a small,
fully specified function of (x, config) and its config is saved with every model.

Choices, and why:

* Keys are sorted unless ``key_order`` is declared: dict insertion order depends on the file the
  row came from, and the model must not see two spellings of one input.
* Floats are written with ``float_digits`` significant digits in Python's general format, so
  float noise (``0.1 + 0.2``) does not leak into the input and the model is not asked to read
  17-digit mantissas. Ints stay exact, whatever their size.
* JSON style is compact (no spaces): tokens are the encoder's budget. YAML style spends a few
  characters on readability, for inputs that humans also look at.
* Truncation is by characters, before tokenisation, and keeps head *and* tail by default: the end
  of a program or config is often as informative as the start.

Torch-free on purpose (a test enforces it).
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..strict import strict_from_dict

Style = Literal["json", "yaml"]
Truncation = Literal["head_tail", "head"]


@dataclass(frozen=True)
class SerializerConfig:
    """How inputs are turned into text; saved with each model so prediction matches training.

    ``key_order``: None sorts the keys; a tuple puts those top-level keys first, in that order,
    then the remaining keys sorted (nested mappings are always sorted). ``float_digits``:
    significant digits for floats. ``max_chars``: truncate longer texts (strings and serialised
    mappings alike) to exactly this many characters with ``marker`` marking the cut.
    """

    style: Style = "json"
    key_order: tuple[str, ...] | None = None
    float_digits: int = 6
    max_chars: int | None = None
    truncation: Truncation = "head_tail"
    marker: str = " … "

    def __post_init__(self) -> None:
        if self.style not in ("json", "yaml"):
            raise ValueError(f"style={self.style!r}: choose 'json' or 'yaml'")
        if self.key_order is not None:
            # Accept any sequence (e.g. a list from JSON) but store a tuple, so configs hash.
            if isinstance(self.key_order, str) or not all(
                isinstance(k, str) for k in self.key_order
            ):
                raise ValueError(
                    f"key_order={self.key_order!r}: use a list of key names, e.g. ['a', 'b']"
                )
            order = tuple(self.key_order)
            dupes = sorted({k for k in order if order.count(k) > 1})
            if dupes:
                raise ValueError(f"key_order lists {dupes} more than once: list each key once")
            object.__setattr__(self, "key_order", order)
        if isinstance(self.float_digits, bool) or not isinstance(self.float_digits, int):
            raise ValueError(f"float_digits={self.float_digits!r}: use an int between 1 and 17")
        if not 1 <= self.float_digits <= 17:
            # 17 significant digits already round-trip every float64; more is only noise.
            raise ValueError(f"float_digits={self.float_digits}: use an int between 1 and 17")
        if self.truncation not in ("head_tail", "head"):
            raise ValueError(f"truncation={self.truncation!r}: choose 'head_tail' or 'head'")
        if not isinstance(self.marker, str):
            raise ValueError(f"marker={self.marker!r}: use a string, e.g. ' … '")
        if self.max_chars is not None:
            # head_tail keeps at least one character on each side of the marker, head one before.
            need = len(self.marker) + (2 if self.truncation == "head_tail" else 1)
            if isinstance(self.max_chars, bool) or not isinstance(self.max_chars, int):
                raise ValueError(f"max_chars={self.max_chars!r}: use an int or None")
            if self.max_chars < need:
                raise ValueError(
                    f"max_chars={self.max_chars} leaves no room around marker={self.marker!r}: "
                    f"use max_chars >= {need}, a shorter marker, or None for no limit"
                )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["key_order"] = None if self.key_order is None else list(self.key_order)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SerializerConfig:
        return strict_from_dict(cls, d, tuples=("key_order",))


# ----------------------------------------------------------------------------------------------
# Scalars


def format_number(v: float | int, digits: int, *, style: Style = "json") -> str:
    """Deterministic number text: ints exact, floats in general format with ``digits`` digits.

    ``0.1 + 0.2 -> "0.3"``, ``1e-7 -> "1e-07"``, ``1.0 -> "1"``. Non-finite floats have no JSON
    spelling, so they use the common extensions (``NaN``, ``Infinity``) in JSON style and YAML's
    own (``.nan``, ``.inf``) in YAML style, rather than failing on a missing input value.
    """
    if isinstance(v, numbers.Integral):
        return str(int(v))
    f = float(v)
    if math.isnan(f):
        return "NaN" if style == "json" else ".nan"
    if math.isinf(f):
        sign = "-" if f < 0 else ""
        return sign + ("Infinity" if style == "json" else ".inf")
    return format(f, f".{digits}g")


# YAML plain scalars that would be read back as something other than a string.
_YAML_RESERVED = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~", ""}
_YAML_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")


def _yaml_str(s: str) -> str:
    # Plain when unambiguous, else JSON-quoted (a JSON string is a valid YAML double-quoted one).
    if _YAML_PLAIN.fullmatch(s) and s.lower() not in _YAML_RESERVED:
        return s
    return json.dumps(s, ensure_ascii=False)


# ----------------------------------------------------------------------------------------------
# Values


def _ordered_keys(m: Mapping[str, Any], key_order: tuple[str, ...] | None, path: str) -> list[str]:
    for k in m:
        if not isinstance(k, str):
            raise ValueError(
                f"key {k!r} at {path or 'top level'} is not a string: convert keys to str"
            )
    if key_order is None:
        return sorted(m)
    first = [k for k in key_order if k in m]
    listed = set(key_order)
    return first + sorted(k for k in m if k not in listed)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _value(v: Any, cfg: SerializerConfig, path: str, key_order: tuple[str, ...] | None) -> str:
    """Serialise one value in flow form (JSON, or YAML flow collections)."""
    yaml = cfg.style == "yaml"
    if v is None:
        return "null"
    if isinstance(v, bool):  # before numbers: bool is an int subclass
        return "true" if v else "false"
    if isinstance(v, numbers.Real):
        return format_number(v, cfg.float_digits, style=cfg.style)
    if isinstance(v, str):
        return _yaml_str(v) if yaml else json.dumps(v, ensure_ascii=False)
    if isinstance(v, Mapping):
        keys = _ordered_keys(v, key_order, path)
        if yaml:
            items = [f"{_yaml_str(k)}: {_value(v[k], cfg, _join(path, k), None)}" for k in keys]
            return "{" + ", ".join(items) + "}"
        items = [
            f"{json.dumps(k, ensure_ascii=False)}:{_value(v[k], cfg, _join(path, k), None)}"
            for k in keys
        ]
        return "{" + ",".join(items) + "}"
    if isinstance(v, list | tuple):
        items = [_value(e, cfg, f"{path}[{i}]", None) for i, e in enumerate(v)]
        return "[" + (", " if yaml else ",").join(items) + "]"
    raise ValueError(
        f"value {v!r} at {path or 'top level'} has type {type(v).__name__}, which has no text "
        "form: convert it to str, int, float, bool, None, a list or a mapping first"
    )


def truncate(text: str, config: SerializerConfig) -> str:
    """Cut ``text`` to exactly ``config.max_chars`` characters if it is longer.

    head_tail: ``text[:h] + marker + text[-t:]`` with ``h = ceil(k / 2)``, ``t = floor(k / 2)``,
    ``k = max_chars - len(marker)``. head: ``text[:k] + marker``. Lengths are in code points.
    """
    n = config.max_chars
    if n is None or len(text) <= n:
        return text
    keep = n - len(config.marker)
    if config.truncation == "head":
        return text[:keep] + config.marker
    head = (keep + 1) // 2
    tail = keep - head
    return text[:head] + config.marker + text[len(text) - tail :]


def serialize(x: str | Mapping[str, Any], config: SerializerConfig | None = None) -> str:
    """Canonical text of one input.

    Strings pass through unchanged (only truncated). Mappings become compact JSON
    (``{"a":1,"b":0.3}``) or YAML-like block text (``a: 1\\nb: 0.3``, nested values in flow style)
    with keys ordered per ``config.key_order``. If ``config.max_chars`` is set and the text is
    longer, the result is exactly ``max_chars`` characters long (see :func:`truncate`).
    """
    cfg = SerializerConfig() if config is None else config
    if isinstance(x, str):
        return truncate(x, cfg)
    if isinstance(x, Mapping) and cfg.style == "yaml":
        if not x:
            return truncate("{}", cfg)
        keys = _ordered_keys(x, cfg.key_order, "")
        lines = [f"{_yaml_str(k)}: {_value(x[k], cfg, k, None)}" for k in keys]
        return truncate("\n".join(lines), cfg)
    return truncate(_value(x, cfg, "", cfg.key_order), cfg)
