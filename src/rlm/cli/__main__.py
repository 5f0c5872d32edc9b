"""``python -m rlm.cli`` (and ``torchrun ... -m rlm.cli``) runs the ``rlm`` command."""

from __future__ import annotations

from . import main

main()
