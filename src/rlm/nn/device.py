"""Where the network runs and in what precision: ``Placement`` from ``device="auto" | "cpu" |
"cuda" | "cuda:N" | "mps"`` and ``precision="auto" | "fp32" | "bf16"``.

Only the network's tensors move. Tokenising, the grammar walk of constrained decoding
(``rlm.numbers.decoding``), uniforms, calibration and metrics stay in numpy on the CPU, so a
seed gives the same uniforms on every device and only the network's arithmetic differs.
Checkpoints are written from CPU copies and load onto any device.

bf16 is ``torch.autocast``: matrix products in bfloat16, norms, softmax and the loss in
float32, weights and optimiser state in float32. ``"auto"`` turns it on for CUDA devices that
support it and leaves CPUs and MPS in float32. On this project's 2-core AVX512-BF16 CPU
(``benchmarks/scale.py``) autocast trained ``small`` 1.31x faster (495 against 379 examples/s)
and the default field model ``compact`` no faster (1.07x; 0.72x in an earlier run): worth
asking for with ``precision="bf16"`` on such a CPU for the larger presets, not a default.
"""

from __future__ import annotations

import os
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16"]
DEVICES = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"


@dataclass(frozen=True)
class Placement:
    """A resolved device and whether matrix products run in bfloat16 there."""

    device: torch.device
    bf16: bool = False

    @classmethod
    def of(cls, device: str | torch.device = "auto", precision: Precision = "auto") -> Placement:
        """Resolve ``device`` and ``precision``; an unknown or absent device is a ValueError."""
        where = resolve_device(device)
        if precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision={precision!r}: choose 'auto', 'fp32' or 'bf16'")
        if precision == "auto":
            return cls(where, where.type == "cuda" and torch.cuda.is_bf16_supported())
        return cls(where, precision == "bf16")

    def autocast(self) -> AbstractContextManager[None]:
        """The block's matrix products in bfloat16 when ``bf16``; a no-op otherwise."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def describe(self) -> str:
        return f"{self.device}{' (bf16 autocast)' if self.bf16 else ''}"


CPU = Placement(torch.device("cpu"))


def resolve_device(name: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when present (under torchrun, the rank's own GPU, ``LOCAL_RANK``), else
    MPS, else the CPU. A device that this machine or this torch build lacks is refused with
    what is available instead of failing later inside a kernel."""
    text = str(name)
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", _local_rank() % torch.cuda.device_count())
        return torch.device("mps" if _mps() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if m := re.fullmatch(r"cuda(?::(\d+))?", text):
        if not torch.cuda.is_available():
            built = torch.version.cuda or "no CUDA"
            raise ValueError(
                f"device={text!r}: no CUDA device is usable here (torch {torch.__version__} "
                f"built with {built}): use device='cpu', or 'auto' to take CUDA where present"
            )
        index = int(m.group(1)) if m.group(1) is not None else _local_rank()
        count = torch.cuda.device_count()
        if index >= count:
            raise ValueError(
                f"device={text!r}: this machine has {count} CUDA device(s), 0..{count - 1}"
            )
        return torch.device("cuda", index)
    if text == "mps":
        if not _mps():
            raise ValueError(
                "device='mps': Apple's Metal backend is not available here: use 'cpu' or 'auto'"
            )
        return torch.device("mps")
    raise ValueError(f"device={text!r}: choose {DEVICES}")


def _mps() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _local_rank() -> int:
    """The process's GPU under torchrun (``LOCAL_RANK``); 0 otherwise."""
    return int(os.environ.get("LOCAL_RANK", "0"))
