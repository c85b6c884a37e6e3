"""The one exception family the command line turns into a one-line message."""

from __future__ import annotations


class ItapError(Exception):
    """An error an operator can act on; ``str(error)`` is one clear line.

    The command line prints it without a traceback (unless ``--debug``) and exits
    with :attr:`exit_code`.
    """

    exit_code = 2
