"""How commands print: rich on a terminal, plain text otherwise, JSON on request."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.segment import Segment

from itap_engine.safe_text import visible_lines, visible_tree

PIPE_WIDTH = 400
"""Columns of a table printed into a pipe or a file (``itap status | cat``): wide enough
that nothing is cut or wrapped; a table is only as wide as its content."""


def console(stderr: bool = False) -> Console:
    """A rich console that falls back to plain text when not on a terminal, and shows
    control characters in any text it prints as visible escapes (:class:`SafeConsole`).

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
    return SafeConsole(file=stream, highlight=False, soft_wrap=not tty, width=width)


class SafeConsole(Console):
    """A rich Console whose text never carries raw control characters to the terminal.

    Data (device ids, file names, CSV headers, messages quoting them) reaches the
    screen as text segments; each is passed through
    :func:`itap_engine.safe_text.visible_lines` just before it is written, so an
    escape sequence in data is shown, not obeyed. Rich's own control segments
    (cursor moves, styles) are left alone.
    """

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(
            seg if seg.control or seg.text.isprintable() else Segment(visible_lines(seg.text), seg.style, seg.control)
            for seg in buffer
        )


def print_json(payload: Any) -> None:
    """JSON on stdout; every string made visible (a consumer printing a field with
    ``jq -r`` gets no raw control character)."""
    sys.stdout.write(json.dumps(visible_tree(payload), indent=2, default=str) + "\n")
