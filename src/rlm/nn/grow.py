"""Growing a trained network's input tables for rows it has never seen (fine-tuning a shared
model on a new system): new value tokens and new keys get rows, the known ones keep theirs.

Why new rows are drawn like the known ones (a normal with their mean and per-dimension
spread), not at the usual init: a pretrained encoder has only ever read trained embeddings. A
row at the init scale (std 0.02, next to trained rows of norm ~1) starts as a near-empty
position it never saw; every new row at the known rows' mean would make a new system's options
indistinguishable, so the first steps of a fine-tune could not tell them apart. Drawn from the
known rows' spread, each new key starts as a distinct, plausible option, and the few rows of
a fine-tune only have to move it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .heads import SlotHead
from .model import RegressionTransformer


@torch.no_grad()
def grown_rows(old: nn.Embedding, source: np.ndarray, fresh: torch.Tensor) -> nn.Embedding:
    """A table whose row i is ``old``'s row ``source[i]``, and the next row of ``fresh`` where
    ``source[i]`` is -1 (a new id).

    old (V, D), source (V',) int, fresh (number of -1 in source, D) -> (V', D)
    """
    if source.ndim != 1 or (source >= old.num_embeddings).any() or (source < -1).any():
        raise ValueError(f"source ids must be -1 or in [0, {old.num_embeddings}): got {source}")
    new = torch.as_tensor(source < 0)
    if int(new.sum()) != len(fresh):
        raise ValueError(f"{len(fresh)} fresh rows for {int(new.sum())} new ids")
    weight = torch.empty(len(source), old.embedding_dim, dtype=old.weight.dtype)  # (V', D)
    weight[~new] = old.weight[torch.as_tensor(source[source >= 0])].detach().cpu()
    weight[new] = fresh.to(weight.dtype)
    table = nn.Embedding(len(source), old.embedding_dim)
    table.weight.copy_(weight)
    return table.to(old.weight.device)


def grow_inputs(
    net: RegressionTransformer,
    value_source: np.ndarray,
    n_keys: int,
    *,
    categories: range,
    keys: range,
    seed: int = 0,
) -> None:
    """Give ``net`` (in place) a value-token table laid out by ``value_source`` (see
    ``rlm.inputs.fields.FieldEncoder.extend``) and ``n_keys`` key rows, the new ones appended.

    ``categories`` / ``keys``: the known category and key ids (not the special tokens), whose
    statistics the new rows are drawn from (``seed``: of those draws)."""
    if net.key_emb is None:
        raise ValueError("only a model that reads fields has keys to grow")
    old_keys = net.key_emb.num_embeddings
    if n_keys < old_keys:
        raise ValueError(f"n_keys={n_keys} is below the {old_keys} keys the model knows")
    gen = torch.Generator().manual_seed(seed)
    new_values = int((value_source < 0).sum())
    net.tok_emb = grown_rows(
        net.tok_emb, value_source, _like(net.tok_emb, categories, new_values, gen)
    )
    key_source = np.concatenate([np.arange(old_keys), np.full(n_keys - old_keys, -1)])
    net.key_emb = grown_rows(
        net.key_emb, key_source, _like(net.key_emb, keys, n_keys - old_keys, gen)
    )
    if isinstance(net.value_head, SlotHead):  # the new keys' slots, at zero weight
        net.value_head.grow_keys(n_keys)


def _like(table: nn.Embedding, ids: range, n: int, gen: torch.Generator) -> torch.Tensor:
    """(n, D) rows drawn from a normal with the mean and per-dimension spread of the rows
    ``ids`` (of the whole table when there are fewer than two)."""
    rows = table.weight.detach().cpu()
    if len(ids) >= 2:
        rows = rows[ids.start : ids.stop]
    return rows.mean(0) + rows.std(0) * torch.randn(n, rows.shape[1], generator=gen)


@torch.no_grad()
def grow_objectives(
    net: RegressionTransformer, objectives: int, out_len: int, last_span: tuple[int, int]
) -> None:
    """Give ``net`` (in place) ``objectives`` outputs (new ones after the known ones) and, for
    the digit decoder, ``out_len`` output positions; ``last_span``: the output positions of
    the last known objective.

    A value head's new outputs start at zero (weights and bias): it first predicts each new
    objective's training mean (0 on the unit scale) and learns from there. The decoder's new
    positions start as copies of the last known objective's positions, cycled: each new number
    is written in the same scheme, so "the sign", "the exponent", "a mantissa digit" are
    already known, and the decoder only has to learn which objective comes next."""
    head = net.value_head
    if head is not None:
        known = head.objectives
        if objectives < known:
            raise ValueError(f"objectives={objectives} is below the {known} the model has")
        m, c, d = head.members, head.outputs, head.out.in_features
        old_w = head.out.weight.view(m, known, c, d)  # rows laid out member, objective, output
        old_b = head.out.bias.view(m, known, c)
        out = nn.Linear(d, m * objectives * c).to(old_w.device)
        out.weight.zero_(), out.bias.zero_()
        out.weight.view(m, objectives, c, d)[:, :known] = old_w
        out.bias.view(m, objectives, c)[:, :known] = old_b
        head.out, head.objectives = out, objectives
        return
    known_len = net.dec_pos.num_embeddings
    if out_len < known_len:
        raise ValueError(f"out_len={out_len} is below the model's {known_len} positions")
    last = np.arange(*last_span)
    source = np.concatenate([np.arange(known_len), np.resize(last, out_len - known_len)])
    net.dec_pos = grown_rows(net.dec_pos, source, torch.empty(0, net.dec_pos.embedding_dim))
    net.out_len = out_len
