"""How commands print: rich on a terminal, plain text otherwise, JSON on request."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console

PIPE_WIDTH = 400
"""Columns of a table printed into a pipe or a file (``itap status | cat``): wide enough
that nothing is cut or wrapped; a table is only as wide as its content."""


def console(stderr: bool = False) -> Console:
    """A rich console that falls back to plain text when not on a terminal.

    On a terminal Rich measures it; into a pipe Rich would assume 80 columns and cut
    table cells, so the width is ``$COLUMNS`` if set, else :data:`PIPE_WIDTH`.
    """
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    width = None
    if not tty:
        try:
            width = int(os.environ.get("COLUMNS", "")) or PIPE_WIDTH
        except ValueError:
            width = PIPE_WIDTH
    return Console(file=stream, highlight=False, soft_wrap=not tty, width=width)


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
