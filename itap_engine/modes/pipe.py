"""Output into a pipe that closes early (``itap --once | head -1``).

When the reader goes away, the next write to stdout fails with ``EPIPE``. Left alone,
Python raises :class:`BrokenPipeError` in the middle of a command, Rich turns it into
``SystemExit(1)``, and the command's own exit status is lost: a cron or Nagios check
that reads only the first line would see 0 or 1 instead of CRITICAL's 2.

:func:`quiet_broken_pipe` wraps stdout so that the first failed write points the
stdout file descriptor at ``/dev/null`` and carries on. The command finishes its work
(a ``--once`` cycle still records its run) and exits with the status it would have had,
with nothing on stderr.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

__all__ = ["QuietPipe", "quiet_broken_pipe"]


class QuietPipe:
    """A text stream around ``stream`` that swallows a closed pipe.

    Everything but ``write``, ``writelines`` and ``flush`` is the wrapped stream's
    (``isatty``, ``fileno``, ``encoding``, ...).
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.broken = False
        """The reader has gone: output since then went to /dev/null."""

    def _silence(self) -> None:
        self.broken = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._silence()
            return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._silence()
            self._stream.flush()  # what was buffered now goes to /dev/null

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def quiet_broken_pipe() -> None:
    """Wrap ``sys.stdout`` in :class:`QuietPipe` unless it is a terminal (the console
    draws on it directly) or already wrapped."""
    stream = sys.stdout
    if stream is None or isinstance(stream, QuietPipe):
        return
    try:
        if stream.isatty():
            return
        stream.fileno()
    except (AttributeError, ValueError, OSError):  # replaced or closed streams (tests' capture)
        return
    sys.stdout = QuietPipe(stream)  # type: ignore[assignment]
