"""The core modules must import without torch (checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys


def test_core_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import rlm, rlm.io, rlm.inputs.text, rlm.inputs.vocab, rlm.predict.metrics, rlm.numbers, rlm.numbers.targets, rlm.nn.config\n"
        "rlm.io.load_demo('x264')\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout
