"""What the console remembers between runs: a small JSON file (the chosen theme).

``<data_dir>/console.json`` for ``itap``; a missing, unreadable or malformed file is
the same as none (it never stops the console), and it is written atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

MAX_BYTES = 4096


def load_state(path: Path | None) -> dict[str, str]:
    """The remembered values (strings only); {} when there are none."""
    if path is None:
        return {}
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
        data = json.loads(raw) if len(raw) <= MAX_BYTES else None
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str) and len(v) <= 100}


def save_state(path: Path | None, **values: str) -> bool:
    """Remember ``values`` (merged into what is there); False if it could not be written."""
    if path is None:
        return False
    state = load_state(path) | values
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temp.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink()
        return False
    return True
