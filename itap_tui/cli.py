"""The ``itap`` entry point: the console by default, engine subcommands otherwise.

``itap`` (or ``itap console``) starts the console with the engine in process;
``itap console --attach`` shows a database another process writes; ``itap --once``
runs one headless cycle for cron. Every other subcommand belongs to the engine
(:mod:`itap_engine.modes.cli`). Textual is imported only when the console starts, so cron
runs stay light.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from itap_engine.modes import cli as engine_cli

if TYPE_CHECKING:
    from itap_engine.config import Settings


def _add_console(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers.add_parser(
        "console", help="the operations console (default)", description="The operations console."
    )
    engine_cli.add_global_options(sub, sub=True)
    sub.add_argument(
        "--attach",
        action="store_true",
        help="show a database written by 'itap engine' or cron instead of running the engine here",
    )
    sub.add_argument(
        "--no-mouse",
        action="store_true",
        default=argparse.SUPPRESS,
        help="leave the mouse to the terminal (its own copy and paste, over SSH too); config: console.mouse",
    )
    sub.add_argument(
        "--at",
        metavar="TIME",
        help="open at a past moment (data time, UTC): --at=-2h, --at 05:00 or --at 2026-01-01T05:00; t or esc returns to live",
    )
    sub.set_defaults(handler=_run_console)
    from itap_tui.console_commands import add_replay, add_serve

    add_replay(subparsers)
    add_serve(subparsers)


NO_TERMINAL_HINT = (
    "the console needs a terminal (stdin and stdout are not both one); "
    "for scripts and cron use 'itap --once' (add --json for JSON), or a command such as 'itap status'"
)


def has_terminal() -> bool:
    """Both ends of the console are a terminal (a pipe on either would hang a full-screen app)."""
    if os.environ.get("TEXTUAL_DRIVER", "").endswith("web_driver:WebDriver"):
        return True  # a browser tab of `itap serve` (textual-serve) is the terminal
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def _run_console(args: argparse.Namespace, settings: Settings) -> int:
    from itap_tui.app import run_console

    mouse = settings.console.mouse and not getattr(args, "no_mouse", False)
    return run_console(settings, attach=getattr(args, "attach", False), mouse=mouse, at=getattr(args, "at", None))


def _run_once(args: argparse.Namespace, settings: Settings) -> int:
    from itap_engine.modes.once import run_once

    return run_once(settings, json_output=args.once_json, report=args.once_report, profile=args.once_profile)


def build_parser() -> argparse.ArgumentParser:
    parser = engine_cli.build_parser(extra=_add_console)
    once = parser.add_argument_group("cron mode")
    once.add_argument("--once", action="store_true", help="run one headless cycle, print a summary, exit 0/1/2/3")
    once.add_argument("--json", dest="once_json", action="store_true", help="with --once: print the summary as JSON")
    once.add_argument(
        "--report", dest="once_report", metavar="FILE.html", help="with --once: also write an HTML report"
    )
    once.add_argument(
        "--profile",
        dest="once_profile",
        metavar="NAME",
        help="with --once: status, alerts and figures of this profile only (one check per profile)",
    )
    parser.add_argument("--no-mouse", action="store_true", help="console: leave the mouse to the terminal")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from itap_engine.modes.pipe import quiet_broken_pipe

    stdout = sys.stdout
    quiet_broken_pipe()  # `itap --once | head -1` keeps the run's exit status (modes/pipe.py)
    try:
        return _main(argv)
    except BrokenPipeError:
        # `itap ... | head` closed the pipe: not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        sys.stdout.flush()  # what is still buffered, through the guard
        sys.stdout = stdout


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    if "--once" in words:
        # --once answers a monitoring system: even a bad option is UNKNOWN (3), in the
        # run's own output format, never argparse's exit 2
        from itap_engine.modes.once import report_unknown

        def refuse(message: str) -> NoReturn:
            sys.exit(report_unknown(f"{message} (see itap --help)", json_output="--json" in words))

        parser.error = refuse  # type: ignore[method-assign]
    from itap_tui.console_commands import join_time_values

    args = parser.parse_args(join_time_values(words))
    once_only = [
        flag
        for flag, value in (
            ("--json", args.once_json),
            ("--report", args.once_report),
            ("--profile", args.once_profile),
        )
        if value
    ]
    if once_only and not args.once:
        # Without --once these would start the full-screen console into a pipe.
        parser.error(
            f"{' and '.join(once_only)} only go with --once (a subcommand takes its own options after its name)"
        )
    if args.once:
        # A cycle that could not run is UNKNOWN (3) for a monitoring system, in the
        # run's own output format (a JSON line with --json).
        from itap_engine.modes.once import describe_error, report_unknown

        try:
            return engine_cli.run_handler(
                args, _run_once, on_error=lambda error: report_unknown(error, json_output=args.once_json)
            )
        except Exception as error:
            if args.debug:
                raise
            return report_unknown(describe_error(error), json_output=args.once_json)
    handler = getattr(args, "handler", None) or _run_console
    at = getattr(args, "at", None)
    if at is not None:
        from datetime import datetime

        from itap_tui.timepick import parse_moment

        if parse_moment(at, datetime(2000, 1, 1)) is None:
            parser.error(f"--at {at!r}: not a time (try -2h, 05:00 or 2026-01-01T05:00)")
    if handler is _run_console and not has_terminal():
        engine_cli.report_error(NO_TERMINAL_HINT)
        return 2
    return engine_cli.run_handler(args, handler)


if __name__ == "__main__":
    sys.exit(main())
