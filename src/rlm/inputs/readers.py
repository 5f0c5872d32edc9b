"""What reads a model's inputs, fitted on its training rows: one of

* a ``FieldEncoder`` (mapping inputs, one position per field: ``rlm.inputs.fields``);
* a BPE ``InputTokenizer`` over serialised text, with a ``TextNumberEncoder`` when numbers in
  the text are read as values (``VocabConfig(numbers=...)``: ``rlm.inputs.textnums``);
* a frozen pretrained encoder (``BackboneConfig``: ``rlm.nn.backbone``, torch and
  ``transformers`` imported only then), whose hidden states are the positions.

``fit_readers`` fits the one a model's settings ask for; ``reader_sizes`` gives the network
the table sizes it implies. Both serve ``RegressionLM``; torch-free unless a backbone is used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .fields import FieldEncoder
from .textnums import TextNumberEncoder
from .vocab import InputTokenizer, VocabConfig

if TYPE_CHECKING:
    from ..predictor import Predictor


def reads_fields(p: Predictor, examples: Sequence[Any]) -> bool:
    """Whether ``p`` reads ``examples`` as fields (``inputs="auto"``: when all are mappings)."""
    if p.backbone_config is not None:  # the backbone reads text
        return False
    if p.inputs == "auto":
        return all(isinstance(e.x, Mapping) for e in examples)
    return p.inputs == "fields"


def fit_readers(p: Predictor, examples: Sequence[Any], fields: bool) -> None:
    """Fit ``p``'s input reader on ``examples`` (``fields``: see ``reads_fields``); a reader
    whose inputs could outgrow the model's position table is an error, before any fitting."""
    limit = p.model_config.max_input_len
    # a field's positions are not bounded by the table; a backbone's length replaces the vocab's
    bound = p.backbone_config or (None if fields else p.vocab_config)
    if bound is not None and bound.max_length > limit:
        what = "vocab" if bound is p.vocab_config else "backbone"
        raise ValueError(
            f"{what} max_length={bound.max_length} exceeds the model's max_input_len={limit}: "
            "lower one or raise the other"
        )
    _fit(p, examples, fields)


def _fit(p: Predictor, examples: Sequence[Any], fields: bool) -> None:
    p.fields, p.text_numbers, p.backbone = None, None, None
    code = p.vocab_config.code
    if code != "off" and (fields or p.backbone_config is not None):
        fix = (
            "a frozen backbone's own tokenizer: set code='off'"
            if p.backbone_config
            else "fields (mappings): set code='off', or pass inputs='text' to read them as text"
        )
        raise ValueError(
            f"vocab code={code!r} reads text inputs as source code, but these inputs are read "
            f"by {fix}"
        )
    if p.backbone_config is not None:
        from ..nn.backbone import Backbone

        p.backbone = Backbone(p.backbone_config)
        # the pipeline keeps a tokenizer (its pad id pads batches); 261 byte tokens, unused
        p.tokenizer = InputTokenizer.train([], VocabConfig(kind="bytes"))
        return
    if fields:
        xs = [e.x for e in examples]
        cfg = p.field_config.resolved(p.model_config.mixer)
        p.fields = FieldEncoder.fit(xs, cfg, p.vocab_config)
        p.tokenizer = p.fields.tokenizer
        return
    if p.vocab_config.numbers != "digits":  # text with <num> positions for numbers
        p.text_numbers = TextNumberEncoder.train(p.texts(examples), p.vocab_config)
        p.tokenizer = p.text_numbers.tokenizer
    else:
        p.tokenizer = InputTokenizer.train(p.texts(examples), p.vocab_config)


def reader_sizes(p: Predictor) -> dict[str, int]:
    """The network's input table sizes for ``p``'s reader: ``in_vocab``, ``n_keys``,
    ``n_features``, ``n_vector`` (see ``rlm.nn.model.RegressionTransformer``)."""
    assert p.tokenizer is not None
    reader = p.fields or p.text_numbers  # positions with keys and number features
    sizes = {"in_vocab": p.tokenizer.vocab_size, "n_keys": 0, "n_features": 0, "n_vector": 0}
    if reader is not None:
        sizes.update(in_vocab=reader.vocab_size, n_keys=reader.n_keys, n_features=reader.n_features)
    if p.backbone is not None:
        sizes["n_vector"] = p.backbone.width
        sizes["n_features"] = p.backbone.n_features
    return sizes
