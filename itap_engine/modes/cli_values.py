"""Command-line values checked where they are parsed: every number bounded, every path sane.

Each helper is an argparse ``type=``: a bad value (``--freq 0``, ``--hours nan``,
``--limit 99999999999999999999``) stops the command before it does anything, with one
line naming the option and what is allowed, and exit status 2 (the usage-error status).
:class:`OneLineParser` makes argparse print that one line instead of its usage block.

Output files (``--out``, ``--report``): the folder must exist (it is not created: a
typo would otherwise scatter folders), and an existing file is refused unless the
command offers ``--force`` and it is given.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from itap_engine.errors import ItapError
from itap_engine.safe_text import visible

__all__ = ["OneLineParser", "bounded_float", "bounded_int", "output_file"]


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr, exit 2."""

    def error(self, message: str) -> NoReturn:
        command = self.prog
        print(f"{command}: error: {visible(message)} (see '{command} --help')", file=sys.stderr)
        sys.exit(2)


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An integer in ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{visible(text)!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: use {low:,} to {high:,}")
        return value

    parse.__name__ = "integer"
    return parse


def bounded_float(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """A finite number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{visible(text)!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{visible(text)!r} is not a finite number")
        if value < low or (low_open and value == low) or value > high:
            allowed = f"more than {low:g} and at most {high:g}" if low_open else f"{low:g} to {high:g}"
            raise argparse.ArgumentTypeError(f"{value:g} is out of range: use {allowed}")
        return value

    parse.__name__ = "number"
    return parse


def output_file(path: str | Path, *, option: str, force: bool = False, force_flag: str | None = "--force") -> Path:
    """``path`` checked as a file to write: its folder exists, it is not a folder, and it
    does not exist yet unless ``force``.

    Raises:
        ItapError: one line naming the option and the path.
    """
    target = Path(path).expanduser()
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.exists():
        raise ItapError(f"{option} {visible(target)}: the folder {visible(folder)} does not exist (create it first)")
    if not folder.is_dir():
        raise ItapError(f"{option} {visible(target)}: {visible(folder)} is not a folder")
    if target.is_dir():
        raise ItapError(f"{option} {visible(target)} is a folder; name a file")
    if target.exists() and not force:
        hint = f"; add {force_flag} to overwrite it" if force_flag else ""
        raise ItapError(f"{option} {visible(target)} already exists{hint}")
    return target
