"""Text read with number values: a ``<num>`` position for each number in a string, log or code.

With digit tokens alone a model must learn to read ``int a[100005]`` or ``lr=3e-4`` digit by
digit from a few hundred examples; the magnitude is there, but deep inside a composition the
encoder has to discover. ``VocabConfig(numbers=...)`` offers the field encoder's answer for
free text too:

* ``"value"``: each number (``rlm.inputs.numtext.find_numbers``: ints, decimals, scientific
  notation, negatives; never hex, versions or digits inside identifiers such as ``conv3x3``) is
  replaced by one ``<num>`` position whose features carry its value (sign, signed log); the
  model projects them with the same ``NumberProjection`` that reads a config's numbers;
* ``"both"``: the digits stay, and a ``<num>`` position follows them.

The row this module builds is a ``FieldRow`` with one key for every position and positions
0..T-1, so the encoder, collation and batching are those of field inputs. The tokenizer is the
text one (trained on the text between numbers for ``"value"``), the ``<num>`` id is one past
its vocabulary, and truncation is the tokenizer's own (``rlm.inputs.vocab.frame``), so nothing
here is saved apart from ``VocabConfig.numbers``. Torch-free.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .fields import BASE_FEATURES, FieldRow, number_features
from .numtext import segments
from .vocab import (
    BOS_ID,
    EOS_ID,
    TRUNC_ID,
    InputTokenizer,
    VocabConfig,
    checked,
    frame,
    prepare_text,
)

TEXT_KEY = 0  # the one key id of every position (the model's key table has one row)
Item = tuple[int, float | None]  # (token id, the value a <num> carries; None elsewhere)


class TextNumberEncoder:
    """Text -> ``FieldRow`` of pieces and ``<num>`` positions (``VocabConfig.numbers`` != digits)."""

    def __init__(self, tokenizer: InputTokenizer) -> None:
        if tokenizer.config.numbers == "digits":
            raise ValueError(
                "this tokenizer reads numbers as digits (VocabConfig(numbers='digits')): "
                "use its encode_batch, or train with numbers='value' or 'both'"
            )
        self.tokenizer = tokenizer
        self.keep_digits = tokenizer.config.numbers == "both"
        self.num_id = tokenizer.vocab_size  # one past the text vocabulary

    @classmethod
    def train(cls, texts: Iterable[str], config: VocabConfig) -> TextNumberEncoder:
        """Train the tokenizer on what it will read: the text between numbers for ``"value"``
        (BPE spends no merges on digits it never sees), the whole text for ``"both"``; each
        text prepared first (``VocabConfig.code``), as ``encode_batch`` reads it."""
        texts = [prepare_text(t, config) for t in checked(texts, "text")]
        if config.numbers == "value":
            texts = [s for t in texts for s in segments(t, False) if isinstance(s, str)]
        return cls(InputTokenizer.train(texts, config, prepared=True))

    @property
    def vocab_size(self) -> int:
        return self.num_id + 1

    @property
    def n_keys(self) -> int:
        return 1

    @property
    def n_features(self) -> int:
        return BASE_FEATURES  # no per-key statistics in free text: no z-score, quantile or bins

    def encode_batch(self, texts: Sequence[str]) -> list[FieldRow]:
        # the whole text prepared (VocabConfig.code) before its numbers are found: a number in
        # a dropped comment is not read
        prepare, keep = self.tokenizer.prepare, self.keep_digits
        cut = [segments(prepare(t), keep) for t in checked(texts, "text")]
        # every text piece of the batch in one call of the (parallel) Rust encoder
        pieces = iter(
            self.tokenizer.pieces_batch([s for c in cut for s in c if isinstance(s, str)])
        )
        marks: tuple[Item, Item, Item] = ((BOS_ID, None), (TRUNC_ID, None), (EOS_ID, None))
        rows = []
        for c in cut:
            items: list[Item] = []
            for s in c:
                if isinstance(s, str):
                    items += [(i, None) for i in next(pieces)]
                else:
                    items.append((self.num_id, s))
            rows.append(self._row(frame(items, self.tokenizer.config, marks)))
        return rows

    def encode(self, text: str) -> FieldRow:
        return self.encode_batch([text])[0]

    def _row(self, items: list[Item]) -> FieldRow:
        n = len(items)
        nums = np.zeros((n, BASE_FEATURES), dtype=np.float32)  # (T, F)
        for p, (_, v) in enumerate(items):
            if v is not None:
                nums[p] = number_features(v, None, 0)
        return FieldRow(
            np.asarray([i for i, _ in items], dtype=np.int64),
            np.full(n, TEXT_KEY, dtype=np.int64),
            np.arange(n, dtype=np.int64),
            nums,
        )
