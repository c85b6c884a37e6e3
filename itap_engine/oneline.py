"""Messages that stay on one line whatever text from the input they quote."""

from __future__ import annotations

__all__ = ["one_line"]


def one_line(message: str) -> str:
    """``message`` with every non-printable character escaped (``\\x0b``, ``\\u2028``, ...),
    so that a header or value quoted from a file cannot break it into lines or steer a
    terminal."""
    if message.isprintable():
        return message
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in message)
