"""``itap generate``: simulated telemetry to a CSV file or, validated, into the database."""

from __future__ import annotations

import argparse
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from itap_engine.errors import ItapError
from itap_engine.modes.cli_values import bounded_float, bounded_int, output_file
from itap_engine.modes.commands.options import add_cluster_argument

if TYPE_CHECKING:
    from itap_engine.config import Settings
    from itap_engine.ingest.pipeline import IngestCounts

HELP = "simulate telemetry with faults, into the database or a CSV file"
MAX_DEVICES = 100_000
MAX_HOURS = 366 * 24.0
MAX_ROWS = 50_000_000
"""Readings one run may generate (they are held in memory before they are written)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="industrial", help="profile declared in config (default: industrial)")
    parser.add_argument(
        "--devices", type=bounded_int(1, MAX_DEVICES), default=25, help="number of devices (default: 25)"
    )
    parser.add_argument(
        "--hours", type=bounded_float(0, MAX_HOURS, low_open=True), default=6.0, help="simulated hours (default: 6)"
    )
    parser.add_argument(
        "--freq", type=bounded_int(1, 86_400), help="seconds between readings (default: [simulation].freq_s)"
    )
    parser.add_argument("--seed", type=bounded_int(0, 2**32 - 1), help="random seed (default: [simulation].seed)")
    parser.add_argument("--start", help="first timestamp, ISO 8601 (default: [simulation].start)")
    parser.add_argument("--prefix", help="device id prefix (default: the profile's fleet prefix or the profile name)")
    parser.add_argument("--fault-rate", type=bounded_float(0, 1000), help="random faults per device-day (0 = none)")
    parser.add_argument(
        "--out", metavar="FILE.csv", help="write a CSV instead of storing in the database (its folder must exist)"
    )
    parser.add_argument("--force", action="store_true", help="with --out: overwrite an existing file")
    parser.add_argument("--json", action="store_true", help="print the ingest summary as JSON")
    add_cluster_argument(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from rich.markup import escape

    from itap_engine.ingest.simulator import Simulator, device_ids_for
    from itap_engine.modes.render.output import console, print_json

    settings.profile(args.profile)  # a clear error for an unknown profile
    if args.devices < 1 or args.hours <= 0:
        raise ItapError("--devices must be at least 1 and --hours above 0")
    freq = args.freq or settings.simulation.freq_s
    rows = args.devices * args.hours * 3600 / freq
    if rows > MAX_ROWS:
        raise ItapError(
            f"--devices {args.devices} x --hours {args.hours:g} every {freq} s is {rows:,.0f} readings; "
            f"at most {MAX_ROWS:,} per run (generate in several runs, or fewer devices or hours)"
        )
    if args.out:
        output_file(args.out, option="--out", force=args.force)  # before the work, not after
    if args.start:
        settings = settings.with_overrides(simulation={"start": args.start})
    prefix = args.prefix or next(
        (g.prefix for g in settings.simulation.fleet if g.profile == args.profile), args.profile
    )
    devices = device_ids_for(prefix, args.devices)
    options = {"seed": args.seed, "freq_s": args.freq, "fault_rate_per_device_day": args.fault_rate}
    t0 = Simulator(settings, args.profile, devices[:1], **options).start
    t1 = t0 + timedelta(hours=args.hours)
    started = time.perf_counter()
    out = console()
    if args.out:
        from itap_engine.compute.simulate import write_csv

        rows = write_csv(
            lambda group: Simulator(settings, args.profile, group, **options),
            devices,
            t0,
            t1,
            args.out,
            settings.compute.partition_devices,
        )
        out.print(
            f"wrote {rows:,} rows of {args.devices} {args.profile} devices to {args.out}"
            f" in {time.perf_counter() - started:.1f} s"
        )
        return 0

    from itap_engine.compute.cluster import open_executor
    from itap_engine.compute.simulate import simulate_fleet
    from itap_engine.modes.render.progress import task_progress
    from itap_engine.store.sql import Store

    store = Store(settings)  # creates the schema before workers open the database
    try:
        with open_executor(settings, args.cluster) as executor, task_progress(f"generate {args.profile}") as progress:
            report = simulate_fleet(
                executor,
                settings,
                args.profile,
                devices,
                t0,
                t1,
                options=options,
                source=f"generate:{args.profile}",
                kind="generate",
                progress=progress,
                url=store.url,
            )
    finally:
        store.close()
    if args.json:
        print_json(report.to_dict())
    else:
        print_ingest_report(report)
        if report.rows_in and report.duplicates == report.rows_in:
            ids = device_ids_for(prefix, args.devices)
            console().print(
                escape(
                    f"why: devices {ids[0]}..{ids[-1]} already have readings at every one of these times "
                    f"({t0:%Y-%m-%dT%H:%M} to {t1:%Y-%m-%dT%H:%M}, seed {args.seed if args.seed is not None else settings.simulation.seed}): the same ids, start and seed "
                    "as a fleet already stored (a running engine simulates its fleet with them). For new readings "
                    "use --prefix NEW (new device ids), --start LATER or --seed N"
                )
            )
    return 0


def print_ingest_report(r: IngestCounts) -> None:
    """One line an operator can read: rows in = inserted + duplicates + conflicts + quarantined."""
    from rich.markup import escape

    from itap_engine.modes.render.output import console

    out = console()
    line = (
        f"run{'s' if r.runs > 1 else ''} {r.run_id} ({r.status}) {r.source}: {r.rows_in:,} rows in = {r.inserted:,} inserted"
        f" + {r.duplicates:,} duplicates + {r.conflicts:,} conflicts + {r.quarantined:,} quarantined"
        f" ({r.seconds:.1f} s)"
    )
    out.print(escape(line))
    if r.inserted == 0 and r.rows_in:
        out.print("nothing new: every row was already stored")
