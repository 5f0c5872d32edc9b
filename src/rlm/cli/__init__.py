"""The ``rlm`` command: train, predict, eval, demo, info, serve, one module per command.

``app`` is the typer application (``cli.app``); importing the command modules registers their
commands on it. Shared pieces: ``options`` (option types every command uses), ``files`` (how
commands read data files and checkpoints), ``format`` (tables and numbers as printed).
"""

from __future__ import annotations

from . import demo, eval, info, predict, serve, train  # noqa: F401  (registers the commands)
from .app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``rlm`` script."""
    app()
