"""JSON Lines: one object per line, plain or gzip. The one parser every reader and ``rlm
predict``'s streaming (files and stdin) share, and the one line writer. Torch-free.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

Record = dict[str, Any]


def jsonl_objects(
    lines: Iterable[str], where: str, keep: Callable[[int], bool] | None = None
) -> Iterator[tuple[int, Record]]:
    """(index, object) per non-blank line; errors name ``where:lineno`` and the fix. ``keep``:
    only the rows whose index it accepts are parsed (a reader's shard of the file)."""
    index = -1
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        index += 1
        if keep is not None and not keep(index):
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}:{lineno}: invalid JSON ({e}): fix that line") from e
        if not isinstance(rec, dict):
            raise ValueError(f"{where}:{lineno}: expected a JSON object per line")
        yield index, rec


def jsonl_line(rec: Mapping[str, Any], *, strict: bool) -> str:
    """One record as a line of JSON. ``strict``: NaN / inf are an error (they are not JSON, and
    writing them would poison every later reader) and so is a value JSON cannot hold; otherwise
    such values are written as Python would print them (the streaming output of ``rlm
    predict`` copies whatever the input rows held)."""
    if strict:
        return json.dumps(dict(rec), ensure_ascii=False, allow_nan=False) + "\n"
    return json.dumps(dict(rec), ensure_ascii=False, default=str) + "\n"
