"""The ``itap`` command line, minus the console.

Each subcommand is a module in :mod:`itap_engine.modes.commands` with ``HELP``,
``add_arguments(parser)`` and ``run(args, settings) -> int``. This module builds the
parser from them, loads the settings once and turns every :class:`ItapError` into one
line on stderr (a traceback only with ``--debug``). The console front door,
:mod:`itap_tui.cli`, adds ``console`` and the bare ``itap`` on top of this.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from types import ModuleType

from itap_engine.errors import ItapError
from itap_engine.modes.cli_values import OneLineParser
from itap_engine.safe_text import visible

COMMANDS = (
    "generate",
    "validate",
    "ingest",
    "status",
    "train",
    "score",
    "evaluate",
    "anomalies",
    "engine",
    "scenario",
)
"""Subcommands in the order ``itap --help`` lists them; each is a module of commands/."""


PLUGIN_GROUP = "itap.commands"
"""Entry-point group of commands installed from other packages (``itap bench``)."""


def command_modules() -> list[tuple[str, Callable[[], ModuleType]]]:
    """Every subcommand's name and a loader of its module, built-ins first."""
    found: list[tuple[str, Callable[[], ModuleType]]] = [
        (name, functools.partial(importlib.import_module, f"itap_engine.modes.commands.{name}")) for name in COMMANDS
    ]
    for point in entry_points(group=PLUGIN_GROUP):
        if point.name not in COMMANDS:
            found.append((point.name, point.load))
    return found


def add_global_options(parser: argparse.ArgumentParser, *, sub: bool = False) -> None:
    """--config and --debug, accepted before or after the subcommand."""
    default = {"default": argparse.SUPPRESS} if sub else {}
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: the lookup order in the README)",
        **default,  # type: ignore[arg-type]
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors", **default)  # type: ignore[arg-type]


def build_parser(extra: Callable[[argparse._SubParsersAction], None] | None = None) -> argparse.ArgumentParser:
    """The ``itap`` parser. ``extra`` may add subcommands (the console does)."""
    parser = OneLineParser(  # a bad option or value is one line and exit 2
        prog="itap",
        description="ITAP: fleet telemetry operations console and engine.",
        epilog="Run 'itap COMMAND --help' for a command's options.",
    )
    add_global_options(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    if extra is not None:
        extra(subparsers)
    for name, load in command_modules():
        module = load()
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        add_global_options(sub, sub=True)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def report_error(message: str) -> None:
    print(f"itap: error: {visible(message)}", file=sys.stderr)


def run_handler(
    args: argparse.Namespace, handler: Callable[..., int], *, on_error: Callable[[str], int] | None = None
) -> int:
    """Load settings and run a command, turning known errors into one line.

    ``on_error`` reports the error instead and gives the exit code (cron mode answers
    UNKNOWN, 3, in its own output format).
    """
    from itap_engine.config import load_settings

    try:
        settings = load_settings(args.config)
        return int(handler(args, settings) or 0)
    except ItapError as error:
        if args.debug:
            raise
        if on_error is not None:
            return on_error(str(error))
        report_error(str(error))
        return error.exit_code
    except KeyboardInterrupt:
        report_error("interrupted")
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    return run_handler(args, args.handler)


if __name__ == "__main__":
    sys.exit(main())
