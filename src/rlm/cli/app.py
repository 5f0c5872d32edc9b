"""The ``rlm`` command's shell: the typer application, its two consoles and its error rule.

Design choices, and why:

* **Fast start**: torch (and matplotlib) are imported inside the commands that need them, so
  ``rlm --help``, ``rlm info`` and bad-option errors answer in a fraction of a second.
* **Clean errors**: the library raises ValueError for everything a user can get wrong (bad file,
  unknown target, invalid option). Every command converts those into a one-message error with
  exit code 2, the same code click uses for bad options, instead of a traceback.
* **Machine-readable output stays clean**: ``--json`` and ``--output -`` write only data to
  stdout (``out``); notes and warnings go to stderr (``err``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

app = typer.Typer(
    name="rlm",
    help="Regression language models: read text or JSON configs, write numbers digit by digit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
# markup off: data (inputs like "[1, 2]", regex patterns) must print verbatim, never as rich tags
out = Console(highlight=False, markup=False)
err = Console(stderr=True, highlight=False, markup=False)


class CliError(typer.BadParameter):
    """A user error: one message, no traceback, exit code 2 (like a bad option).

    A BadParameter because typer's (vendored) click reports exactly that family cleanly; the
    message is shown as is, without click's "Invalid value:" prefix.
    """

    def format_message(self) -> str:
        return self.message


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's ValueErrors (its user-error type) into clean CLI errors."""
    try:
        yield
    except ValueError as e:
        raise CliError(str(e)) from e


@contextmanager
def stopped_training(hint: str = "") -> Iterator[None]:
    """Training stopped by SIGINT/SIGTERM (its state already saved, ``rlm.nn.resume``): one
    line on stderr, plus ``hint``, and the exit code a shell gives a signal (128 + signal)."""
    from ..nn.resume import Interrupted  # torch is loaded by then: training is what stops

    try:
        yield
    except Interrupted as e:
        err.print(f"{e}{hint}", soft_wrap=True)
        raise typer.Exit(128 + e.signum) from None


def main_process() -> bool:
    """Whether this process speaks and writes: True unless it is a rank other than 0 of a
    torchrun launch (``rlm.nn.distributed``), whose consoles are then silenced."""
    if int(os.environ.get("RANK", "0")) == 0:
        return True
    out.quiet = err.quiet = True
    return False
