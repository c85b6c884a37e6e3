"""Console subcommands beyond ``itap console``: ``itap replay`` and ``itap serve``.

They live with the console because they start it; :mod:`itap_tui.cli` registers them
next to ``console``. Their arguments are checked, and their errors are one line,
before Textual is imported.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING

from itap_engine.errors import ItapError
from itap_engine.modes import cli as engine_cli
from itap_engine.modes.cli_values import bounded_float, bounded_int

if TYPE_CHECKING:
    from itap_engine.config import Settings

TIME_HINT = "try -2h, 05:00 or 2026-01-01T05:00, data time in UTC"


def add_replay(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers.add_parser(
        "replay",
        help="play stored history through the console (read-only)",
        description=(
            "Play stored readings, scores and incidents through the console, read-only. "
            "Keys: space or p pause/play, . one step, + faster, - slower, q quit. "
            "Relative times count back from the newest stored reading."
        ),
    )
    engine_cli.add_global_options(sub, sub=True)
    sub.add_argument(
        "--from", dest="replay_from", metavar="TIME", help=f"start (default: an hour before --to); {TIME_HINT}"
    )
    sub.add_argument("--to", dest="replay_to", metavar="TIME", help="end (default: the newest stored reading)")
    sub.add_argument(
        "--speed",
        type=bounded_float(0.1, 86400),
        default=60.0,
        metavar="N",
        help="data seconds per wall second (default 60: an hour in a minute)",
    )
    sub.add_argument(
        "--no-mouse", action="store_true", default=argparse.SUPPRESS, help="leave the mouse to the terminal"
    )
    sub.set_defaults(handler=run_replay_command)


TIME_OPTIONS = ("--from", "--to")


def join_time_values(words: list[str]) -> list[str]:
    """``replay --from -2h`` as ``--from=-2h`` (argparse takes ``-2h`` for an option)."""
    if "replay" not in words:
        return words
    out: list[str] = []
    i = 0
    while i < len(words):
        if (
            words[i] in TIME_OPTIONS
            and i + 1 < len(words)
            and words[i + 1].startswith("-")
            and words[i + 1][1:2].isdigit()
        ):
            out.append(f"{words[i]}={words[i + 1]}")
            i += 2
            continue
        out.append(words[i])
        i += 1
    return out


def _moment(option: str, text: str | None, now: datetime) -> datetime | None:
    from itap_tui.timepick import parse_moment

    if text is None:
        return None
    moment = parse_moment(text, now)
    if moment is None:
        raise ItapError(f"{option} {text!r}: not a time ({TIME_HINT})")
    return moment


def run_replay_command(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import timedelta

    from itap_tui.cli import NO_TERMINAL_HINT, has_terminal

    probe = datetime(2000, 1, 1)  # the syntax first: a typo is an error before anything opens
    _moment("--from", args.replay_from, probe)
    _moment("--to", args.replay_to, probe)
    if not has_terminal():
        raise ItapError(NO_TERMINAL_HINT.replace("the console needs", "itap replay needs"))
    from itap_engine.facade.replay import check_interval, read_span

    span = read_span(settings)
    newest = span[1] if span is not None else datetime(1970, 1, 1)
    end = _moment("--to", args.replay_to, newest) or newest
    start = _moment("--from", args.replay_from, newest) or end - timedelta(hours=1)
    check_interval(start, end, span)
    from itap_tui.replay import run_replay

    mouse = settings.console.mouse and not getattr(args, "no_mouse", False)
    return run_replay(settings, start, end, args.speed, mouse=mouse)


def add_serve(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers.add_parser(
        "serve",
        help="serve the console to a web browser (textual-serve; needs the [serve] extra)",
        description=(
            "Serve the same console to a web browser with textual-serve: every browser tab runs "
            "its own console process. Listens on 127.0.0.1 unless --host says otherwise "
            "(anyone who reaches the port gets the console: keep it local or behind a proxy "
            "that authenticates). Needs: pip install 'itap[serve]'."
        ),
    )
    engine_cli.add_global_options(sub, sub=True)
    sub.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)")
    sub.add_argument("--port", type=bounded_int(1, 65535), default=8000, help="port (default 8000)")
    sub.add_argument(
        "--attach",
        action="store_true",
        help="serve the attached console (a database 'itap engine' or cron writes; any number of tabs); "
        "without it each tab runs the engine, and only one can hold the database's run lock",
    )
    sub.add_argument(
        "--public-url",
        metavar="URL",
        help="the URL browsers use, when a proxy stands in front (default: from host and port)",
    )
    sub.set_defaults(handler=run_serve_command)


def console_command(settings: Settings, attach: bool) -> str:
    """The shell command each browser tab runs: this Python, this config."""
    import shlex
    import sys

    words = [sys.executable, "-m", "itap_tui.cli", "console"]
    if settings.source is not None:
        words += ["--config", str(settings.source.resolve())]
    if attach:
        words.append("--attach")
    return shlex.join(words)


def run_serve_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        from textual_serve.server import Server
    except ImportError:
        raise ItapError(
            "itap serve needs textual-serve: pip install 'itap[serve]' (or pip install textual-serve)"
        ) from None
    public_url = args.public_url
    if public_url is None and ":" in args.host and not args.host.startswith("["):
        public_url = f"http://[{args.host}]:{args.port}"  # an IPv6 address in a URL
    server = Server(
        console_command(settings, args.attach),
        host=args.host,
        port=args.port,
        title="ITAP attached console" if args.attach else "ITAP console",
        public_url=public_url,
    )
    try:
        server.serve()
    except OSError as error:  # the port is taken, the address is not ours
        raise ItapError(f"cannot serve on {args.host}:{args.port}: {error.strerror or error}") from None
    return 0
