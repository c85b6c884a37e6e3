"""Text from data made safe to show: control characters become visible escapes.

A CSV header, a file name, a device id or an error message quoting them is data an
attacker may write. Printed raw, ``\\x1b]0;pwned\\x07`` retitles the operator's
terminal, ``\\x1b[2J`` clears it, and a bidi override (U+202E) makes a device id read
backwards. :func:`visible` is the one function every output path applies to such
text (the command line, ``--once`` text and JSON, the console, the HTML report):
each control, format, line/paragraph separator or lone surrogate character is shown
as a Python-style escape (``\\x1b``, ``\\u202e``), everything else is left as it was.
"""

from __future__ import annotations

import html
import unicodedata
from typing import Any

__all__ = ["html_text", "markup", "visible", "visible_lines", "visible_tree"]

_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
"""Unicode categories shown as escapes: controls (C0, DEL, C1), format characters (bidi
overrides and isolates, zero-width characters, the BOM), line and paragraph
separators, and surrogates (undecodable bytes of a file name)."""


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(value: Any) -> str:
    """``str(value)`` with every invisible or terminal-controlling character escaped.

    >>> visible("pump\\x1b[31m-1")
    'pump\\\\x1b[31m-1'
    """
    text = "" if value is None else str(value)
    if text.isprintable():  # the common case: nothing to do
        return text
    return "".join(_escape(c) if unicodedata.category(c) in _HIDDEN else c for c in text)


def visible_lines(text: str) -> str:
    """:func:`visible` for text of several lines: the line breaks stay."""
    return "\n".join(visible(line) for line in str(text).split("\n"))


def visible_tree(value: Any) -> Any:
    """A JSON-like tree with :func:`visible` applied to every string (keys too); other
    objects (paths, datetimes) become their visible ``str``."""
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, dict):
        return {visible_tree(k) if isinstance(k, str) else k: visible_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [visible_tree(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return visible(value)  # paths, datetimes...: as json.dumps(default=str) would, but visible


def markup(value: Any) -> str:
    """Safe inside Rich markup: control characters visible, ``[`` escaped."""
    from rich.markup import escape

    return escape(visible(value))


def html_text(value: Any) -> str:
    """Safe inside HTML: control characters visible, then HTML-escaped (quotes too)."""
    return html.escape(visible(value), quote=True)
