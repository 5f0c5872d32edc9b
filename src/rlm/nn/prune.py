"""Structured pruning: remove whole attention heads and MLP neurons, rebuild smaller layers.

A mask that zeroes weights leaves every matrix its dense shape, so it saves neither time nor
memory. Here the pruned network is a new ``RegressionTransformer`` whose blocks are narrower
(``ModelConfig.enc_widths`` / ``dec_widths``: heads and MLP neurons per block), built from the
kept rows and columns of the old weights: its matrices, its checkpoint and its ONNX graphs
shrink, and every runtime runs it unchanged.

What to keep is measured on training inputs, not guessed from weights alone: forward hooks
record, for every attention output projection and MLP down-projection, the mean absolute input of
each channel over a few teacher-forced batches; a channel's importance is that mean times the
norm of its column in the projection (the size of what it adds to the residual stream), a
head's is the sum over its channels. Each block keeps its most important ``1 - amount`` of heads
and of neurons (at least one of each). A short recovery fine-tune follows
(``RegressionLM.prune``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from .config import ModelConfig
from .decoding import GrammarTable
from .loss import Targets, batch_loss, make_batch
from .model import MLP, CrossAttention, RegressionTransformer, SelfAttention
from .source import Row

Attention = SelfAttention | CrossAttention


@torch.no_grad()
def importance(
    net: RegressionTransformer,
    src: Sequence[Row],
    targets: Targets,
    grammar: GrammarTable,
    pad_id: int,
    rows: int = 512,
) -> dict[nn.Module, torch.Tensor]:
    """Per attention (heads,) and MLP (neurons,): importance on up to ``rows`` training rows."""
    modules = [m for m in net.modules() if isinstance(m, SelfAttention | CrossAttention | MLP)]
    device = next(net.parameters()).device
    sums = {m.proj: torch.zeros(m.proj.in_features, device=device) for m in modules}
    seen = dict.fromkeys(sums, 0)

    def record(proj: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].abs().reshape(-1, inputs[0].shape[-1])  # (positions, channels)
        sums[proj] += x.sum(0)
        seen[proj] += x.shape[0]

    hooks = [proj.register_forward_pre_hook(record) for proj in sums]
    order = np.random.default_rng(0).permutation(len(src))[:rows]
    net.eval()
    try:
        for i in range(0, len(order), 64):
            batch = make_batch(order[i : i + 64], src, targets, pad_id, device)
            batch_loss(net, batch, grammar.to(device))
    finally:
        for h in hooks:
            h.remove()
    scores = {}
    for m in modules:
        channel = sums[m.proj] / max(seen[m.proj], 1) * m.proj.weight.norm(dim=0)  # (in,)
        groups = m.h if isinstance(m, SelfAttention | CrossAttention) else channel.numel()
        scores[m] = channel.view(groups, -1).sum(-1)  # (heads,) or (neurons,)
    return scores


def _kept(score: torch.Tensor, amount: float) -> torch.Tensor:
    """Indices of the most important ``1 - amount`` groups (at least one), in their order."""
    k = max(1, math.ceil(score.numel() * (1.0 - amount) - 1e-9))
    return score.topk(k).indices.sort().values


def _channels(heads: torch.Tensor, dh: int) -> torch.Tensor:
    """Head indices -> their channel indices (each head owns dh consecutive channels)."""
    return (heads[:, None] * dh + torch.arange(dh, device=heads.device)).reshape(-1)


def _copy_linear(
    dst: nn.Linear, src: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None
) -> None:
    w = src.weight if rows is None else src.weight[rows]
    dst.weight.copy_(w if cols is None else w[:, cols])
    if dst.bias is not None and src.bias is not None:
        dst.bias.copy_(src.bias if rows is None else src.bias[rows])


def _copy_attention(dst: Attention, src: Attention, heads: torch.Tensor, dh: int) -> None:
    c = _channels(heads, dh)
    inner = src.h * dh
    if isinstance(src, SelfAttention) and isinstance(dst, SelfAttention):
        _copy_linear(dst.qkv, src.qkv, torch.cat([c, c + inner, c + 2 * inner]), None)
    elif isinstance(src, CrossAttention) and isinstance(dst, CrossAttention):
        _copy_linear(dst.q, src.q, c, None)
        _copy_linear(dst.kv, src.kv, torch.cat([c, c + inner]), None)
    _copy_linear(dst.proj, src.proj, None, c)


def _copy_mlp(dst: MLP, src: MLP, neurons: torch.Tensor) -> None:
    _copy_linear(dst.fc, src.fc, neurons, None)
    _copy_linear(dst.proj, src.proj, None, neurons)


def check_prunable(cfg: ModelConfig) -> None:
    """A ValueError where there is nothing to prune (before any importance pass or data read)."""
    if cfg.mixer == "slots":
        raise ValueError(
            "mixer='slots' has no attention heads or encoder MLPs to prune (model='auto' may "
            "choose it from 500 rows: fit with model='compact' to keep attention)"
        )


@torch.no_grad()
def prune_network(
    net: RegressionTransformer, scores: dict[nn.Module, torch.Tensor], amount: float
) -> RegressionTransformer:
    """A narrower copy of ``net``: every block keeps its most important ``1 - amount`` heads and
    MLP neurons (``importance``); every other weight is copied as it is."""
    if not 0.0 < amount < 1.0:
        raise ValueError(f"amount={amount}: the fraction of heads and neurons to remove, in (0, 1)")
    check_prunable(net.cfg)
    keep = {m: _kept(s, amount) for m, s in scores.items()}
    enc = [(len(keep[b.attn]), len(keep[b.mlp])) for b in net.encoder]  # type: ignore[union-attr]
    dec = [
        (len(keep[b.self_attn]), len(keep[b.cross]), len(keep[b.mlp]))  # type: ignore[union-attr]
        for b in (net.decoder if net.value_head is None else [])
    ]
    cfg = replace(net.cfg, enc_widths=tuple(enc), dec_widths=tuple(dec))
    n_keys = 0 if net.key_emb is None else net.key_emb.num_embeddings
    features = 0
    if net.numbers is not None:
        features = net.numbers.fc.in_features - 4 * net.numbers.freq.shape[1] - cfg.d_model
    objectives = 1 if net.value_head is None else net.value_head.objectives
    small = RegressionTransformer(
        cfg,
        net.tok_emb.num_embeddings,
        net.out_vocab,
        net.out_len,
        n_keys=n_keys,
        n_features=features,
        objectives=objectives,
    )
    pruned_names = set()
    for old, new in zip(net.encoder, small.encoder, strict=True):
        _copy_attention(new.attn, old.attn, keep[old.attn], cfg.d_model // cfg.n_heads)  # type: ignore[union-attr, arg-type]
        _copy_mlp(new.mlp, old.mlp, keep[old.mlp])  # type: ignore[union-attr, arg-type]
    if net.value_head is None:
        dh = cfg.dec_d_model // cfg.dec_heads
        for old, new in zip(net.decoder, small.decoder, strict=True):
            _copy_attention(new.self_attn, old.self_attn, keep[old.self_attn], dh)  # type: ignore[union-attr, arg-type]
            _copy_attention(new.cross, old.cross, keep[old.cross], dh)  # type: ignore[union-attr, arg-type]
            _copy_mlp(new.mlp, old.mlp, keep[old.mlp])  # type: ignore[union-attr, arg-type]
    for module in small.modules():
        if isinstance(module, SelfAttention | CrossAttention | MLP):
            pruned_names.update(id(p) for p in module.parameters())
    old_state = net.state_dict()
    for name, param in small.named_parameters():
        if id(param) not in pruned_names:
            param.copy_(old_state[name])  # embeddings, norms, heads: unchanged shapes
    for name, buf in small.named_buffers():
        buf.copy_(old_state[name])
    return small.eval()
