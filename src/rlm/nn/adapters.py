"""Low-rank adapters (LoRA) for fine-tuning a pretrained model on a few rows, through ``peft``.

Full fine-tuning moves every weight, and on 16 rows it can overwrite in a few steps what
pretraining on thousands taught. LoRA freezes the transformer's matrices and learns a rank-r
correction ``W + (alpha / r) B A`` of each (``peft``'s ``LoraModel`` on our own modules: no
hand-written adapter code). The input tables, the number projection and the head stay fully
trainable: a new system's keys and categories have no pretrained rows to adapt, and the head is
where each system's scale and direction live (for the digit decoder: its token and position
tables, where a new target's positions grow, and its output layer). After training the
corrections are merged into the weights (``merge``), so the saved model is an ordinary
``RegressionTransformer`` of the same shapes: a checkpoint, the ONNX export and pruning never
see an adapter.

``peft`` is the optional extra ``rlm[lora]``, imported only here and only when asked for.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .config import LoraConfig
from .model import RegressionTransformer

# the transformer blocks' matrices: attention (qkv, q, kv, proj) and MLP (fc, proj); not the
# number projection or the value head, whose modules share the names fc/proj but train fully
TARGETS = r"(encoder|decoder)\.\d+\.(attn|self_attn|cross|mlp)\.(qkv|q|kv|proj|fc)"
# trained in full beside the adapters (see the module docstring)
FULLY_TRAINED = (
    *("tok_emb", "key_emb", "numbers", "vec_proj", "value_head", "member_scale"),
    *("dec_tok", "dec_pos", "head"),  # the digit decoder's tables: where a new target's grow
)


def _peft() -> Any:
    try:
        import peft
    except ImportError as e:
        raise ImportError(
            "LoRA fine-tuning needs peft: pip install 'rlm[lora]' (or fine-tune without lora)"
        ) from e
    return peft


def add_lora(net: RegressionTransformer, cfg: LoraConfig) -> Any:
    """Insert adapters into ``net`` in place and freeze what they adapt; returns the handle
    that ``merge`` needs. Only adapters and ``FULLY_TRAINED`` parameters require grad."""
    if net.cfg.mixer == "slots":
        raise ValueError(
            "LoRA adapts attention and MLP blocks, which a mixer='slots' model has none of: "
            "fine-tune it without lora (every weight)"
        )
    peft = _peft()
    spec = peft.LoraConfig(
        r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=TARGETS
    )
    handle = peft.tuners.lora.LoraModel(net, spec, "default")  # freezes all but the adapters
    for name, p in net.named_parameters():
        if name.split(".", 1)[0] in FULLY_TRAINED:
            p.requires_grad_(True)
    return handle


def merge(handle: Any) -> RegressionTransformer:
    """Fold the adapters into their matrices and remove them; every parameter trains again."""
    net: nn.Module = handle.merge_and_unload()
    net.requires_grad_(True)
    assert isinstance(net, RegressionTransformer)
    return net
