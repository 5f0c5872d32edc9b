"""Grammars: deterministic finite automata over a number tokenizer's token ids.

A grammar's transition table ``[state, token] -> next state`` (-1 = forbidden) is all
constrained decoding needs: the allowed-token mask is ``table[state] >= 0`` and the next state is
``table[state, token]``, both vectorised gathers, so no Python runs per sequence. Several
objectives decode in order through ``Grammar.concat``. Torch-free.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# ----------------------------------------------------------------------------------------------
# Grammar: a DFA over token ids


@dataclass(frozen=True, eq=False)
class Grammar:
    """A deterministic finite automaton over a tokenizer's token ids.

    ``table[s, t]`` is the state reached from state ``s`` on token ``t``, or -1 when ``t`` is not
    allowed there. ``accept[s]`` marks complete numbers. ``start`` is the initial state.
    """

    table: np.ndarray  # (num_states, num_tokens) int32
    start: int
    accept: np.ndarray  # (num_states,) bool

    @property
    def mask(self) -> np.ndarray:
        """Boolean ``[state, token]`` table of allowed tokens."""
        return self.table >= 0

    @property
    def num_states(self) -> int:
        return int(self.table.shape[0])

    def run(self, ids: Sequence[int]) -> list[int]:
        """States visited *before* each token (len(ids) entries); ValueError if a token is forbidden."""
        state, states = self.start, []
        for i, t in enumerate(ids):
            states.append(state)
            nxt = int(self.table[state, t])
            if nxt < 0:
                raise ValueError(f"token id {t} at position {i} is not allowed by the grammar")
            state = nxt
        if not self.accept[state]:
            raise ValueError(f"token ids {list(ids)} stop before a complete number")
        return states

    def accepts(self, ids: Sequence[int]) -> bool:
        try:
            self.run(ids)
        except ValueError:
            return False
        return True

    @staticmethod
    def concat(grammars: Sequence[Grammar]) -> Grammar:
        """Grammar of the concatenation g1 g2 ... (one number per objective, in order).

        Requires every accept state to be a sink (true for fixed-length schemes): a transition that
        would complete number k is redirected to the start of number k+1.
        """
        if not grammars:
            raise ValueError("Grammar.concat needs at least one grammar")
        offsets = np.cumsum([0] + [g.num_states for g in grammars])
        tables = []
        for k, g in enumerate(grammars):
            if (g.table[g.accept] >= 0).any():
                raise ValueError("Grammar.concat needs accept states without outgoing transitions")
            t = np.where(g.table >= 0, g.table + offsets[k], -1)
            if k + 1 < len(grammars):
                into_accept = (g.table >= 0) & g.accept[np.clip(g.table, 0, None)]
                t = np.where(into_accept, offsets[k + 1] + grammars[k + 1].start, t)
            tables.append(t)
        accept = np.zeros(offsets[-1], dtype=bool)
        last = grammars[-1]
        accept[offsets[-2] : offsets[-1]] = last.accept
        return Grammar(np.concatenate(tables).astype(np.int32), grammars[0].start, accept)


class _Builder:
    """Tiny helper to write DFAs as 'state --tokens--> state' lines."""

    def __init__(self, num_tokens: int) -> None:
        self.rows: list[np.ndarray] = []
        self.num_tokens = num_tokens

    def state(self) -> int:
        self.rows.append(np.full(self.num_tokens, -1, dtype=np.int32))
        return len(self.rows) - 1

    def edge(self, src: int, tokens: Sequence[int], dst: int) -> None:
        self.rows[src][list(tokens)] = dst

    def chain(self, states: Sequence[int], tokens: Sequence[int]) -> None:
        """s0 --tokens--> s1 --tokens--> s2 ... (a run of positions with the same choices)."""
        for a, b in itertools.pairwise(states):
            self.edge(a, tokens, b)

    def mantissa(self, lead: int, n: int, digits: Sequence[int], end: int, zero_end: int) -> None:
        """n mantissa digits from state ``lead``: a nonzero leading digit then any digits (-> end),
        or a zero leading digit then zeros only (-> zero_end), so each value has one spelling."""
        body = [lead] + [self.state() for _ in range(n - 1)] + [end]
        zbody = [self.state() for _ in range(n - 1)] + [zero_end]
        self.edge(lead, digits[1:], body[1])
        self.edge(lead, digits[:1], zbody[0])
        self.chain(body[1:], digits)
        self.chain(zbody, digits[:1])

    def build(self, start: int, accept: Sequence[int]) -> Grammar:
        acc = np.zeros(len(self.rows), dtype=bool)
        acc[list(accept)] = True
        return Grammar(np.stack(self.rows), start, acc)
