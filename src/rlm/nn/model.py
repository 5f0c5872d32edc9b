"""The encoder-decoder transformer: reads input tokens, writes number tokens.

Bottom-up: attention -> MLP -> encoder block -> decoder block -> the model. Pre-norm residual
blocks, ``scaled_dot_product_attention`` everywhere, learned positions, no dropout by default.

Shapes: B inputs, T input tokens, L output tokens, S samples per input, N = B*S sequences,
D encoder width, E decoder width, H heads, dh = width / H.

Two entry points:
* ``forward(src, tgt_in)``: teacher-forced logits for training, (B, L, V).
* ``encode`` + ``cross_kv`` + ``decode_step``: incremental decoding with a KV cache, used by
  ``rlm.decoding``. The encoder runs once per input and its cross-attention keys/values are
  shared by all S samples of that input (never copied S times, see ``CrossAttention``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .heads import SlotHead, ValueHead
from .runtime import tune_allocator
from .source import Source


class MLP(nn.Module):
    def __init__(self, d: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(d, hidden)
        self.proj = nn.Linear(hidden, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


def _heads(x: torch.Tensor, h: int) -> torch.Tensor:
    """(B, T, h*dh) -> (B, h, T, dh)"""
    b, t, d = x.shape
    return x.view(b, t, h, d // h).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(B, h, T, dh) -> (B, T, h*dh)"""
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)


class SelfAttention(nn.Module):
    """h heads of width dh (default d / h; a pruned block keeps fewer heads of the same width)."""

    def __init__(self, d: int, h: int, dropout: float, dh: int | None = None) -> None:
        super().__init__()
        self.h = h
        inner = h * (dh or d // h)
        self.qkv = nn.Linear(d, 3 * inner)
        self.proj = nn.Linear(inner, d)
        self.dropout = dropout

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False
    ) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # 3 x (B, T, d)
        q, k, v = _heads(q, self.h), _heads(k, self.h), _heads(v, self.h)  # (B, h, T, dh)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=p)
        return self.proj(_merge(y))

    def step(self, x: torch.Tensor, cache: torch.Tensor, pos: int) -> torch.Tensor:
        """One decoding step. x (N, 1, d); cache (2, N, h, L, dh) is filled at ``pos`` in place."""
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        cache[0, :, :, pos : pos + 1] = _heads(k, self.h)
        cache[1, :, :, pos : pos + 1] = _heads(v, self.h)
        # only positions <= pos are in the cache, so no causal mask is needed
        y = F.scaled_dot_product_attention(
            _heads(q, self.h), cache[0, :, :, : pos + 1], cache[1, :, :, : pos + 1]
        )  # (N, h, 1, dh)
        return self.proj(_merge(y))


class CrossAttention(nn.Module):
    """Decoder queries (width E) attend to encoder memory (width D), projected to width E."""

    def __init__(
        self, d_dec: int, d_enc: int, h: int, dropout: float, dh: int | None = None
    ) -> None:
        super().__init__()
        self.h = h
        inner = h * (dh or d_dec // h)
        self.q = nn.Linear(d_dec, inner)
        self.kv = nn.Linear(d_enc, 2 * inner)
        self.proj = nn.Linear(inner, d_dec)
        self.dropout = dropout

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(memory).chunk(2, dim=-1)  # 2 x (B, T, E)
        return _heads(k, self.h), _heads(v, self.h)  # (B, h, T, dh)

    def forward(
        self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None
    ) -> torch.Tensor:
        """x (B, Q, E) where the Q queries of one input may be positions *or* samples.

        Cross-attention has no causal structure, so the S samples of an input can ride in the
        query-length axis: (B, S, E) queries against the input's own (B, h, T, dh) keys. This is
        how one copy of the memory serves every sample.
        """
        k, v = kv
        q = _heads(self.q(x), self.h)  # (B, h, Q, dh)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.proj(_merge(y))


class EncoderBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, block: int = 0) -> None:
        super().__init__()
        heads, hidden = cfg.enc_width(block)
        dh = cfg.d_model // cfg.n_heads
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg.d_model, heads, cfg.dropout, dh)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg.d_model, hidden, cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), mask=mask)
        return x + self.mlp(self.ln2(x))


class DecoderBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, block: int = 0) -> None:
        super().__init__()
        e = cfg.dec_d_model
        heads, cross_heads, hidden = cfg.dec_width(block)
        dh = e // cfg.dec_heads
        self.ln1 = nn.LayerNorm(e)
        self.self_attn = SelfAttention(e, heads, cfg.dropout, dh)
        self.ln2 = nn.LayerNorm(e)
        self.cross = CrossAttention(e, cfg.d_model, cross_heads, cfg.dropout, dh)
        self.ln3 = nn.LayerNorm(e)
        self.mlp = MLP(e, hidden, cfg.dropout)

    def forward(self, y: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor):
        y = y + self.self_attn(self.ln1(y), causal=True)
        y = y + self.cross(self.ln2(y), kv, mask)
        return y + self.mlp(self.ln3(y))


class NumberProjection(nn.Module):
    """A number's features, read next to its key, -> a vector of the encoder's width.

    Input per position: the F features of ``rlm.inputs.fields`` (is_number, sign, signed log,
    asinh of the per-key z-score, training quantile, piecewise-linear bins), periodic features
    ``sin/cos(2 pi w s)`` of the two scale-free scalars s (signed log, asinh z) with learned
    frequencies w (the "PLR" embeddings of Gorishniy et al. 2022, shared across keys), and the
    key's embedding, so one small MLP can read each option's value its own way. Positions that
    are not numbers (is_number = 0) get exactly zero.
    """

    def __init__(self, n_features: int, d: int, periodic: int = 8) -> None:
        super().__init__()
        self.freq = nn.Parameter(torch.randn(2, periodic))
        self.fc = nn.Linear(n_features + 4 * periodic + d, d)
        self.proj = nn.Linear(d, d)

    def forward(self, nums: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """nums (B, T, F), key (B, T, D) -> (B, T, D)"""
        scalars = nums[..., 2:4]  # (B, T, 2): signed log, asinh(z)
        angles = 2 * torch.pi * scalars[..., :, None] * self.freq  # (B, T, 2, P)
        periodic = torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # (B, T, 4P)
        h = F.gelu(self.fc(torch.cat([nums, periodic, key], dim=-1)))
        return self.proj(h) * nums[..., :1]  # (B, T, D), zero where not a number


class RegressionTransformer(nn.Module):
    """Encoder-decoder over (input token ids) -> (number token ids).

    ``out_vocab`` is the number tokenizer's vocabulary; the decoder's input vocabulary adds one
    beginning-of-sequence token with id ``out_vocab``. ``out_len`` is the fixed length of the
    whole target sequence (all objectives concatenated).

    Field inputs (``n_keys`` > 0) add a key embedding and a ``NumberProjection`` of the
    ``n_features`` number features to each position; text inputs have neither (and a text
    model's weights are exactly those of rlm 0.1). With a frozen backbone (``n_vector`` > 0,
    ``rlm.nn.backbone``) a position is a projection of its hidden state instead of a token.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        in_vocab: int,
        out_vocab: int,
        out_len: int,
        *,
        n_keys: int = 0,
        n_features: int = 0,
        objectives: int = 1,
        n_vector: int = 0,
    ) -> None:
        super().__init__()
        tune_allocator()  # see rlm.nn.runtime: large per-step temporaries are reused, not re-faulted
        self.cfg, self.out_vocab, self.out_len, self.bos = cfg, out_vocab, out_len, out_vocab
        self.tok_emb = nn.Embedding(in_vocab, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.max_input_len, cfg.d_model)
        self.key_emb = nn.Embedding(n_keys, cfg.d_model) if n_keys else None
        reads_numbers = n_features and (n_keys or n_vector)
        self.numbers = NumberProjection(n_features, cfg.d_model) if reads_numbers else None
        # a frozen backbone's hidden states (width n_vector) projected to this model's width
        self.vec_proj = nn.Linear(n_vector, cfg.d_model) if n_vector else None
        slots = cfg.mixer == "slots"  # no encoder blocks: the slot head reads the input vectors
        if slots and not n_keys:
            raise ValueError("mixer='slots' needs keys to give slots: n_keys >= 1")
        blocks = 0 if slots else cfg.enc_blocks
        self.encoder = nn.ModuleList(EncoderBlock(cfg, i) for i in range(blocks))
        self.ln_enc = nn.Identity() if slots else nn.LayerNorm(cfg.d_model)
        self.value_head: ValueHead | SlotHead | None = None
        if cfg.head != "digits":  # a value head replaces the whole decoder
            gaussian = cfg.head == "gaussian"
            self.value_head = (
                SlotHead(cfg.d_model, n_keys, objectives, gaussian, cfg.members)
                if slots
                else ValueHead(cfg.d_model, objectives, gaussian, cfg.members)
            )
            # each member's +-1 scaling of the encoder input (TabM's random-sign init): the
            # members start as different functions of the same weights; learnt from there on
            if cfg.members > 1:
                signs = torch.randint(0, 2, (cfg.members, cfg.d_model)).float() * 2 - 1
                self.member_scale = nn.Parameter(signs)
        else:
            self.dec_tok = nn.Embedding(out_vocab + 1, cfg.dec_d_model)
            self.dec_pos = nn.Embedding(out_len, cfg.dec_d_model)
            self.decoder = nn.ModuleList(DecoderBlock(cfg, i) for i in range(cfg.dec_blocks))
            self.ln_dec = nn.LayerNorm(cfg.dec_d_model)
            self.head = nn.Linear(cfg.dec_d_model, out_vocab, bias=False)
        self.apply(self._init)
        if isinstance(self.value_head, SlotHead):  # TabM's MLP at torch's own init, as measured
            self.value_head.reset_parameters()

    @staticmethod
    def _init(m: nn.Module) -> None:
        # GPT-2 style small normal init keeps early logits near uniform over the digits
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def copies_per_position(self) -> int:
        """What one input position costs in activations, in encoder positions (what
        ``TrainConfig.max_positions`` bounds): an attention encoder runs once per ensemble
        member; the slot mixer has no encoder: its members still build B*M rows, but of one
        scaled input vector per position and one slot MLP pass each, small beside an encoder
        pass, so they count once (x264, 1,000 rows, 4 members, batch 32: counted per member,
        two micro-batches per step instead of one took twice the time)."""
        return 1 if self.cfg.mixer == "slots" else self.cfg.members

    @property
    def encoder_layers(self) -> list[EncoderBlock]:
        """The blocks in the order they run: each once, or one block ``enc_layers`` times
        (``share_layers``)."""
        if not self.encoder:  # mixer="slots"
            return []
        return [self.encoder[i % len(self.encoder)] for i in range(self.cfg.enc_layers)]  # type: ignore[misc]

    @property
    def decoder_layers(self) -> list[DecoderBlock]:
        """As ``encoder_layers``; none for a value head (it has no decoder)."""
        if self.value_head is not None:
            return []
        return [self.decoder[i % len(self.decoder)] for i in range(self.cfg.dec_layers)]  # type: ignore[misc]

    # -- encoder ------------------------------------------------------------------------------
    @staticmethod
    def attn_mask(src_pad: torch.Tensor) -> torch.Tensor:
        """(B, T) True-at-padding -> (B, 1, 1, T) True-where-attention-is-allowed."""
        return (~src_pad)[:, None, None, :]

    def embed(self, src: Source) -> torch.Tensor:
        """The encoder's input vectors (B, T, D): token + position (+ key + number value)."""
        t = src.ids.shape[1]
        if src.pos is None:
            if t > self.cfg.max_input_len:
                raise ValueError(
                    f"input of {t} tokens exceeds max_input_len={self.cfg.max_input_len}; "
                    "lower the tokenizer's max_length or raise max_input_len"
                )
            pos = torch.arange(t, device=src.ids.device)
        else:
            pos = src.pos
        if self.vec_proj is not None:
            if src.vecs is None:
                raise ValueError("this model reads a backbone's hidden states: encode with it")
            h = self.vec_proj(src.vecs)  # (B, T, D)
            if self.numbers is not None and src.nums is not None:
                # a number's value, read in its context: the token's state stands for the key
                h = h + self.numbers(src.nums, h)
            return h + self.pos_emb(pos)
        x = self.tok_emb(src.ids) + self.pos_emb(pos)
        if self.key_emb is not None and self.numbers is not None:
            if src.keys is None or src.nums is None:
                raise ValueError("this model reads fields: encode inputs with its FieldEncoder")
            key = self.key_emb(src.keys)  # (B, T, D)
            x = x + key + self.numbers(src.nums, key)
        return x

    def encode(self, src: Source) -> torch.Tensor:
        """src (B, T) positions -> memory (B, T, D)."""
        return self.memories(self.embed(src), src.pad, (self.cfg.enc_layers,))[0]

    def memories(
        self, x: torch.Tensor, pad: torch.Tensor, exits: tuple[int, ...]
    ) -> list[torch.Tensor]:
        """Input vectors (B, T, D) -> the memory (B, T, D) after each encoder layer in ``exits``
        (1-based, increasing), each through the final norm: what a head reads at that exit."""
        mask = self.attn_mask(pad)
        out = []
        for i, block in enumerate(self.encoder_layers[: exits[-1]], start=1):
            x = block(x, mask)
            if i in exits:
                out.append(self.ln_enc(x))
        return out

    def member_inputs(self, src: Source) -> tuple[torch.Tensor, torch.Tensor]:
        """A value head's encoder inputs (B*M, T, D) and padding (B*M, T): one copy per member,
        each on its own scaling of the input (rows member-minor)."""
        x, pad = self.embed(src), src.pad
        m = self.cfg.members
        if m > 1:  # one encoder pass per member, each on its own scaling of the input
            b, t, d = x.shape
            x = (x[:, None] * self.member_scale[None, :, None, :]).reshape(b * m, t, d)
            pad = pad.repeat_interleave(m, dim=0)  # (B*M, T), rows member-minor like x
        return x, pad

    def values(self, src: Source) -> torch.Tensor:
        """The value head's output (B, M, K, C) for a model built with head "mse" or "gaussian"."""
        return self.values_per_exit(src, (self.cfg.enc_layers,))[0]

    def values_per_exit(
        self, src: Source, exits: tuple[int, ...] | None = None
    ) -> list[torch.Tensor]:
        """The value head's output (B, M, K, C) at each exit (default: every one trained)."""
        if self.value_head is None:
            raise ValueError("this model decodes digits: it has no value head")
        x, pad = self.member_inputs(src)
        if isinstance(self.value_head, SlotHead):  # no encoder, no exits: the slots' MLP
            keys = src.keys.repeat_interleave(self.cfg.members, dim=0)  # type: ignore[union-attr]
            return [self.value_head(x, pad, keys)]  # (B*M, T) keys, rows member-minor like x
        exits = exits or self.cfg.exit_layers
        return [self.value_head(memory, pad) for memory in self.memories(x, pad, exits)]

    def cross_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per decoder layer, the memory's keys and values: each (B, h, T, dh)."""
        return [block.cross.memory_kv(memory) for block in self.decoder_layers]

    # -- teacher-forced training pass -----------------------------------------------------------
    def forward(self, src: Source, tgt_in: torch.Tensor) -> torch.Tensor:
        """src (B, T) positions, tgt_in (B, L) starting with BOS -> logits (B, L, V)."""
        return self.logits_per_exit(src, tgt_in, (self.cfg.enc_layers,))[0]

    def logits_per_exit(
        self, src: Source, tgt_in: torch.Tensor, exits: tuple[int, ...] | None = None
    ) -> list[torch.Tensor]:
        """Teacher-forced logits (B, L, V) with the decoder reading each exit's memory (default:
        every exit trained). The encoder runs once; the decoder once per exit."""
        mask = self.attn_mask(src.pad)
        n = tgt_in.shape[1]
        y0 = self.dec_tok(tgt_in) + self.dec_pos(torch.arange(n, device=tgt_in.device))
        out = []
        for memory in self.memories(self.embed(src), src.pad, exits or self.cfg.exit_layers):
            y = y0
            for block, kv in zip(self.decoder_layers, self.cross_kv(memory), strict=True):
                y = block(y, kv, mask)
            out.append(self.head(self.ln_dec(y)))
        return out

    # -- incremental decoding ---------------------------------------------------------------------
    def new_cache(
        self, n: int, dtype: torch.dtype = torch.float32, device: torch.device | None = None
    ) -> list[torch.Tensor]:
        """Self-attention KV cache per decoder layer: (2, N, h, L, dh), zero-filled."""
        dh = self.cfg.dec_d_model // self.cfg.dec_heads
        return [
            torch.zeros(2, n, b.self_attn.h, self.out_len, dh, dtype=dtype, device=device)
            for b in self.decoder_layers
        ]

    def decode_step(
        self,
        tok: torch.Tensor,
        pos: int,
        cache: list[torch.Tensor],
        kv: list[tuple[torch.Tensor, torch.Tensor]],
        mask: torch.Tensor,
        samples: int,
    ) -> torch.Tensor:
        """tok (N,) previous tokens at ``pos`` -> logits (N, V) for position ``pos``.

        N = B * samples, with the samples of one input adjacent (input-major order).
        """
        n = tok.shape[0]
        b = n // samples
        y = self.dec_tok(tok)[:, None, :] + self.dec_pos.weight[pos]  # (N, 1, E)
        for block, c, layer_kv in zip(self.decoder_layers, cache, kv, strict=True):
            y = y + block.self_attn.step(block.ln1(y), c, pos)
            # (N, 1, E) -> (B, S, E): the samples become the query axis of cross-attention
            q = block.ln2(y).view(b, samples, -1)
            y = y + block.cross(q, layer_kv, mask).view(n, 1, -1)
            y = y + block.mlp(block.ln3(y))
        return self.head(self.ln_dec(y[:, 0]))  # (N, V)
