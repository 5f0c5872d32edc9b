"""The ``rlm`` command: train, predict, eval, demo, info, serve, export, compress, and pretrain /
finetune (``transfer``), one module per command (or pair).

``app`` is the typer application (``cli.app``); importing the command modules registers their
commands on it. Shared pieces: ``options`` (option types every command uses), ``files`` (how
commands read data files and checkpoints), ``format`` (tables and numbers as printed).
"""

from __future__ import annotations

from . import compress, demo, eval, export, info, predict, serve, train, transfer  # noqa: F401  (registers the commands)
from .app import app

__all__ = ["app", "main"]

# `rlm --help` lists the commands in the order a user meets them, not in import order
ORDER = (
    "train", "predict", "eval", "demo", "info", "serve", "export", "compress", "pretrain",
    "finetune",
)  # fmt: skip
app.registered_commands.sort(key=lambda c: ORDER.index(c.name or c.callback.__name__))


def main() -> None:
    """Entry point of the ``rlm`` script."""
    app()
