"""``itap engine``: the continuous engine without a screen.

Runs until SIGINT or SIGTERM, then lets the running tick finish, writes the engine's
final status, closes the database and exits 0. Logs go to ``paths.log_file``; the
only output is one line on stderr when it starts and one when it stops (and
bootstrap progress, on a terminal).

``--shard i/N`` (or ``[engine] shard``) runs one shard of the fleet on PostgreSQL,
beside engines running the other shards (:mod:`itap_engine.engine.shards`); a second
engine for a shard that is held waits, and takes the shard over when the holder stops
or dies.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from itap_engine.config import Settings
from itap_engine.safe_text import visible

HELP = "run the engine without a screen (until SIGINT/SIGTERM)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ticks", type=int, metavar="N", help="stop after N ticks (default: run until a signal)")
    parser.add_argument(
        "--shard",
        metavar="I/N",
        help="run shard I of N of the fleet (devices by crc32 of their id; PostgreSQL); "
        "default: [engine] shard, or the whole fleet",
    )


def _progress_printer() -> object:
    from itap_engine.snapshot import Progress

    if not sys.stderr.isatty():
        return None
    last = {"text": ""}

    def show(p: Progress) -> None:
        text = "\r" + visible(f"{p.stage}: {p.fraction:5.0%} {p.message}")[:100]
        sys.stderr.write(text.ljust(len(last["text"])))
        sys.stderr.flush()
        last["text"] = text
        if p.stage == "training" and p.fraction >= 1.0:
            sys.stderr.write("\n")

    return show


async def serve(settings: Settings, *, ticks: int | None = None) -> int:
    """Run the engine until a signal (or ``ticks`` ticks); returns the exit status."""
    from itap_engine.engine.service import Engine
    from itap_engine.store.run_lock import LockUnavailable

    engine = Engine(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        stop.set()
        engine.request_stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    if ticks is not None:
        engine.subscribe(lambda snap: stop.set() if snap.stats.ticks >= ticks else None)
    try:
        if settings.engine.shard:  # said only when another engine holds the shard
            engine.on_shard_wait = lambda: print(
                f"itap engine: shard {settings.engine.shard} is held by another engine: "
                "waiting to take it over when that engine stops",
                file=sys.stderr,
                flush=True,
            )
        try:
            await engine.start(_progress_printer())  # type: ignore[arg-type]
        except LockUnavailable:
            if stop.is_set():  # stopped while waiting for the shard
                print("itap engine: stopped while waiting for the shard", file=sys.stderr, flush=True)
                return 0
            raise
        shard = f"shard {settings.engine.shard}, " if settings.engine.shard else ""
        print(
            f"itap engine: {shard}running at simulated {engine.core.sim_time if engine.core else '?'} "
            f"({settings.engine.sim_speed:g}x, tick {settings.engine.tick_seconds:g} s); "
            f"log {visible(settings.resolve(settings.paths.log_file))}; Ctrl+C or SIGTERM to stop",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        ticks_done = engine.core.ticks if engine.core else 0
        await engine.stop()
    print(f"itap engine: stopped cleanly after {ticks_done} ticks", file=sys.stderr, flush=True)
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    shard = getattr(args, "shard", None)
    if shard:
        from itap_engine.engine.shards import Shard

        settings = settings.with_overrides(engine={"shard": Shard.parse(shard).label})
    elif settings.engine.shard:
        from itap_engine.engine.shards import Shard

        Shard.parse(settings.engine.shard)  # a bad config value: one line, before anything starts
    return asyncio.run(serve(settings, ticks=args.ticks))
