"""Bundled demo data: small public subsets shipped in ``rlm/datasets/`` (sources, commits and
licences in its README), so the demo and the README example run with no download. Torch-free.
"""

from __future__ import annotations

from importlib import resources

from .examples import Example
from .readers import read_jsonl

DEMO_NAMES = ("nas201", "x264")


def load_demo(name: str, split: str | None = None) -> list[Example]:
    """A bundled demo data set ("nas201" or "x264"); see ``rlm/datasets/README.md``."""
    if name not in DEMO_NAMES:
        raise ValueError(f"unknown demo data set {name!r}: choose one of {list(DEMO_NAMES)}")
    res = resources.files("rlm").joinpath("datasets", f"{name}_demo.jsonl.gz")
    with resources.as_file(res) as p:
        return read_jsonl(p, split=split)
