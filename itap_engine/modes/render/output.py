"""How commands print: rich on a terminal, plain text otherwise, JSON on request."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console


def console(stderr: bool = False) -> Console:
    """A rich console that falls back to plain text when not on a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, highlight=False, soft_wrap=not stream.isatty())


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
