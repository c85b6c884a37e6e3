"""``itap ingest FILE...``: validate CSV files and store them, quarantining bad rows."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from itap_engine.errors import ItapError
from itap_engine.modes.cli_values import bounded_int

if TYPE_CHECKING:
    from itap_engine.config import Settings
    from itap_engine.ingest.csv_source import CsvOptions
    from itap_engine.ingest.pipeline import IngestReport
    from itap_engine.store.sql import Store

HELP = "import CSV files (wide or long) into the database, with validation"


def add_csv_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``ingest`` and ``validate``."""
    parser.add_argument("--profile", help="profile declared in config (default: the one the columns fit best)")
    parser.add_argument("--device", metavar="ID", help="device id for every row (files without a device column)")
    parser.add_argument("--sep", help="field separator, e.g. ',' ';' '|' or tab (default: [import].sep, else detected)")
    parser.add_argument("--ts-column", metavar="C", help="timestamp column (default: [import].timestamp_column)")
    parser.add_argument("--device-column", metavar="C", help="device column (default: [import].device_column)")
    parser.add_argument(
        "--map",
        action="append",
        metavar="CSV=signal",
        default=[],
        help="map a CSV column (long: a signal name) onto a profile signal; repeatable",
    )
    parser.add_argument(
        "--label",
        metavar="COL",
        help="ground-truth column: each reading's label is stored for evaluation (blank, whitespace, 'normal' "
        "and '0' mean normal; any other value names the anomaly). Labels never pick training rows "
        "unless `itap train --exclude-labelled`",
    )
    parser.add_argument(
        "--long",
        action="store_true",
        default=None,
        help="long format: device, ts, signal, value (default: detected from the header)",
    )
    parser.add_argument(
        "--chunk-rows",
        type=bounded_int(1, 10_000_000),
        metavar="N",
        help="lines read per chunk, 1 to 10000000 (default: [import].chunk_rows)",
    )
    parser.add_argument(
        "--encoding",
        metavar="NAME",
        help="text encoding, e.g. latin-1 or cp1252 (default: [import].encoding, else UTF-8, or UTF-16 by its BOM)",
    )


def csv_options(args: argparse.Namespace) -> CsvOptions:
    from itap_engine.ingest.csv_source import CsvOptions, mapping_option

    if args.chunk_rows is not None and args.chunk_rows < 1:
        raise ItapError("--chunk-rows must be at least 1")
    return CsvOptions(
        profile=args.profile,
        device=args.device,
        sep=args.sep,
        ts_column=args.ts_column,
        device_column=args.device_column,
        mapping={**mapping_option(args.map), **({args.label: "fault"} if getattr(args, "label", None) else {})},
        long=args.long,
        chunk_rows=args.chunk_rows,
        encoding=args.encoding,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="CSV files to import (plain or gzip; '-' reads stdin; FIFOs and <(...) work)",
    )
    add_csv_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the per-file reports as JSON")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from itap_engine.ingest.csv_source import import_csv
    from itap_engine.modes.cli import report_error
    from itap_engine.modes.render.output import print_json
    from itap_engine.store.sql import Store

    options = csv_options(args)
    store = Store(settings)
    reports = []
    failures = 0
    try:
        for path in args.files:
            try:
                report = import_csv(store, settings, path, options)
            except ItapError as error:
                if len(args.files) == 1:
                    raise
                report_error(str(error))
                failures += 1
                continue
            reports.append(report)
            record_file_problems(store, report, path)
            if not args.json:
                print_file_report(report)
    finally:
        store.close()
    if args.json:
        print_json([r.to_dict() for r in reports])
    if failures:
        return 2
    return 1 if any(r.status != "ok" for r in reports) else 0


def record_file_problems(store: Store, report: IngestReport, path: str) -> None:
    """The file's validation warnings and errors as problems in the console's panel, as
    the engine records an inbox file's: opened (or seen again) at the fleet's clock
    (:func:`~itap_engine.store.watermarks.fleet_clock`; the wall clock when no engine ever
    ran); the engine's next cycle resolves them."""
    from datetime import UTC, datetime

    from itap_engine.engine.results import validation_rows
    from itap_engine.store.queries import record_problems
    from itap_engine.store.sql import datetime_to_ms
    from itap_engine.store.watermarks import SIM_CLOCK_KEY, fleet_clock

    rows = [r for r in validation_rows(report, "stdin" if path == "-" else Path(path).name) if r.level != "info"]
    if not rows:
        return
    clock = fleet_clock(store.watermarks_like(SIM_CLOCK_KEY))  # a sharded fleet's too
    at_ms = datetime_to_ms(datetime.fromisoformat(clock)) if clock else int(datetime.now(UTC).timestamp() * 1000)
    record_problems(store, rows, at_ms, resolve_missing=False)


def print_file_report(r: IngestReport) -> None:
    """One file's outcome: the row accounting, quarantine reasons and validation alerts."""
    from rich.text import Text

    from itap_engine.modes.render.output import console

    out = console()
    colour = {"ok": "green", "warning": "yellow"}.get(r.status, "red")
    out.print(
        Text.assemble(
            (str(r.source), "bold"),
            f" ({r.profile}): ",
            f"{r.rows_in:,} rows in = {r.inserted:,} inserted + {r.duplicates:,} duplicates + "
            f"{r.conflicts:,} conflicts + {r.quarantined:,} quarantined  ",
            (r.status, colour),
            f"  {r.seconds:.2f} s",
        )
    )
    if r.conflicts:
        what = {
            "quarantine": "new values quarantined",
            "keep_first": "stored values kept",
            "replace": "stored values replaced",
        }.get(r.on_conflict, "")
        out.print(
            f"  conflicts: {r.conflicts:,} rows already stored with other values "
            f"(on_conflict = {r.on_conflict}: {what})"
        )
        for example in r.conflict_examples[:5]:
            line = example.get("line")
            where = f"line {line}" if line is not None else "row"
            out.print(Text(f"    {where}: {example.get('reason')}"))
    validation = r.validation
    counts = {k: v for k, v in validation.checks.items() if v}
    if counts:
        out.print("  quarantined: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))
        for example in validation.examples[:5]:
            line = example.get("line")
            where = f"line {line}" if line is not None else "row"
            out.print(Text(f"    {where}: {example.get('reason')}"))
    for alert in validation.alerts:
        out.print(Text(f"  {alert.level}: {alert.message}", style="yellow" if alert.level != "info" else "dim"))
