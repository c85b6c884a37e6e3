"""``itap generate``: simulated telemetry to a CSV file or, validated, into the database."""

from __future__ import annotations

import argparse
import time
from datetime import timedelta

from rich.markup import escape

from itap_engine.config import Settings
from itap_engine.errors import ItapError
from itap_engine.output import console, print_json
from itap_engine.simulate import Simulator, device_ids_for

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


def run(args: argparse.Namespace, settings: Settings) -> int:
    settings.profile(args.profile)  # a clear error for an unknown profile
    if args.devices < 1 or args.hours <= 0:
        raise ItapError("--devices must be at least 1 and --hours above 0")
    if args.start:
        settings = settings.with_overrides(simulation={"start": args.start})
    prefix = args.prefix or next(
        (g.prefix for g in settings.simulation.fleet if g.profile == args.profile), args.profile
    )
    sim = Simulator(
        settings,
        args.profile,
        device_ids_for(prefix, args.devices),
        seed=args.seed,
        freq_s=args.freq,
        fault_rate_per_device_day=args.fault_rate,
    )
    t0 = sim.start
    t1 = t0 + timedelta(hours=args.hours)
    started = time.perf_counter()
    frame = sim.generate(t0, t1)
    out = console()
    if args.out:
        frame.to_csv(args.out, index=False, date_format="%Y-%m-%dT%H:%M:%S")
        out.print(f"wrote {len(frame):,} rows of {args.devices} {args.profile} devices to {args.out}"
                  f" in {time.perf_counter() - started:.1f} s")
        return 0

    from itap_engine.pipeline import ingest_frame
    from itap_engine.store import Store

    store = Store(settings)
    try:
        report = ingest_frame(store, settings, args.profile, frame, source=f"generate:{args.profile}", kind="generate")
    finally:
        store.close()
    if args.json:
        print_json(report_dict(report))
    else:
        print_ingest_report(report)
    return 0


def report_dict(report: object) -> dict[str, object]:
    fields = ("run_id", "profile", "source", "rows_in", "inserted", "duplicates", "conflicts", "quarantined", "status",
              "seconds")
    return {name: getattr(report, name) for name in fields}


def print_ingest_report(report: object) -> None:
    """One line an operator can read: rows in = inserted + duplicates + conflicts + quarantined."""
    r = report
    out = console()
    line = (
        f"run {r.run_id} ({r.status}) {r.source}: {r.rows_in:,} rows in = {r.inserted:,} inserted"  # type: ignore[attr-defined]
        f" + {r.duplicates:,} duplicates + {r.conflicts:,} conflicts + {r.quarantined:,} quarantined"  # type: ignore[attr-defined]
        f" ({r.seconds:.1f} s)"  # type: ignore[attr-defined]
    )
    out.print(escape(line))
    if r.inserted == 0 and r.rows_in:  # type: ignore[attr-defined]
        out.print("nothing new: every row was already stored")
