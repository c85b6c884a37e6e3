"""``itap generate``: simulated telemetry to a CSV file or, validated, into the database."""

from __future__ import annotations

import argparse
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from itap_engine.errors import ItapError
from itap_engine.modes.commands.options import add_cluster_argument

if TYPE_CHECKING:
    from itap_engine.config import Settings

HELP = "simulate telemetry with faults, into the database or a CSV file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="industrial", help="profile declared in config (default: industrial)")
    parser.add_argument("--devices", type=int, default=25, help="number of devices (default: 25)")
    parser.add_argument("--hours", type=float, default=6.0, help="simulated hours (default: 6)")
    parser.add_argument("--freq", type=int, help="seconds between readings (default: [simulation].freq_s)")
    parser.add_argument("--seed", type=int, help="random seed (default: [simulation].seed)")
    parser.add_argument("--start", help="first timestamp, ISO 8601 (default: [simulation].start)")
    parser.add_argument("--prefix", help="device id prefix (default: the profile's fleet prefix or the profile name)")
    parser.add_argument("--fault-rate", type=float, help="random faults per device-day (0 = none)")
    parser.add_argument("--out", metavar="FILE.csv", help="write a CSV instead of storing in the database")
    parser.add_argument("--json", action="store_true", help="print the ingest summary as JSON")
    add_cluster_argument(parser)



def run(args: argparse.Namespace, settings: Settings) -> int:
    from itap_engine.ingest.simulator import Simulator, device_ids_for
    from itap_engine.modes.render.output import console, print_json
    settings.profile(args.profile)  # a clear error for an unknown profile
    if args.devices < 1 or args.hours <= 0:
        raise ItapError("--devices must be at least 1 and --hours above 0")
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

        rows = write_csv(lambda group: Simulator(settings, args.profile, group, **options), devices, t0, t1,
                         args.out, settings.compute.partition_devices)
        out.print(f"wrote {rows:,} rows of {args.devices} {args.profile} devices to {args.out}"
                  f" in {time.perf_counter() - started:.1f} s")
        return 0

    from itap_engine.compute.cluster import open_executor
    from itap_engine.compute.simulate import simulate_fleet
    from itap_engine.modes.render.progress import task_progress
    from itap_engine.store.sql import Store

    store = Store(settings)  # creates the schema before workers open the database
    try:
        with open_executor(settings, args.cluster) as executor, task_progress(f"generate {args.profile}") as progress:
            report = simulate_fleet(executor, settings, args.profile, devices, t0, t1, options=options,
                                    source=f"generate:{args.profile}", kind="generate", progress=progress,
                                    url=store.url)
    finally:
        store.close()
    if args.json:
        print_json(report.to_dict())
    else:
        print_ingest_report(report)
    return 0


def report_dict(report: object) -> dict[str, object]:
    fields = ("run_id", "profile", "source", "rows_in", "inserted", "duplicates", "quarantined", "status", "seconds")
    return {name: getattr(report, name) for name in fields}


def print_ingest_report(report: object) -> None:
    """One line an operator can read: rows in = inserted + duplicates + quarantined."""
    from rich.markup import escape

    from itap_engine.modes.render.output import console
    r = report
    out = console()
    runs = getattr(r, "runs", 1)
    line = (
        f"run{'s' if runs > 1 else ''} {r.run_id} ({r.status}) {r.source}: {r.rows_in:,} rows in = {r.inserted:,} inserted"  # type: ignore[attr-defined]
        f" + {r.duplicates:,} duplicates + {r.quarantined:,} quarantined ({r.seconds:.1f} s)"  # type: ignore[attr-defined]
    )
    out.print(escape(line))
    if r.inserted == 0 and r.rows_in:  # type: ignore[attr-defined]
        out.print("nothing new: every row was already stored")
