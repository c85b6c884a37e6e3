"""``itap status``: what the database holds: devices, rows, quarantine, the engines
writing to it (per shard) and the last runs."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from itap_engine.modes.cli_values import bounded_int

if TYPE_CHECKING:
    from itap_engine.config import Settings

HELP = "devices, rows per profile, quarantine count, the engines (per shard) and the last runs"

SILENT_S = 60
"""An engine not stopped that has written no status for this long is flagged: a tick
writes one every few seconds, so it died, hangs, or its clock is off."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runs", type=bounded_int(0, 10_000), default=8, help="how many recent runs to list (default: 8)"
    )
    parser.add_argument(
        "--ticks",
        action="store_true",
        help="list the engine's ticks that went ok too (hidden: shards write several a second)",
    )
    parser.add_argument("--json", action="store_true", help="print as JSON")


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def run(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from rich.markup import escape
    from rich.table import Table

    from itap_engine.modes.render.output import console, print_json
    from itap_engine.safe_text import visible
    from itap_engine.snapshot import IncidentCounts
    from itap_engine.store.summary import read_summary

    info = read_summary(settings, args.runs, ticks=args.ticks)
    if args.json:
        print_json(info.as_dict())
        return 0
    out = console()
    out.print(f"database: {escape(info.database)}")
    table = Table("profile", "devices", "rows", "latest reading", title="Readings", title_justify="left")
    for p in info.profiles:
        latest = "-" if p.latest is None else p.latest.isoformat()
        table.add_row(p.profile, f"{p.devices:,}", f"{p.rows:,}", latest)
    out.print(table)
    incidents = IncidentCounts(info.open_alerts, info.unacknowledged_alerts)
    out.print(f"quarantined rows: {info.quarantined:,}    incidents: {incidents.label()}")
    if info.engines:
        now = datetime.now(UTC)
        engines = Table(
            "engine",
            "pid",
            "phase",
            "ticks",
            "sim time",
            "last heard",
            "last error",
            title="Engines",
            title_justify="left",
        )
        for e in info.engines:
            heard = "-"
            if e.heartbeat is not None:
                age = (now - e.heartbeat).total_seconds()
                heard = _ago(age)
                if e.phase != "stopped" and age > SILENT_S:
                    heard = f"[bold red]{heard}: silent[/]"
            engines.add_row(
                "whole fleet" if e.shard is None else f"shard {escape(visible(e.shard))}",
                "-" if e.pid is None else str(e.pid),
                escape(visible(e.phase)),
                f"{e.ticks:,}",
                escape(visible(e.sim_time or "-")),
                heard,
                escape(visible(e.last_error or "")),
            )
        out.print(engines)
    runs = Table(
        "run",
        "kind",
        "status",
        "started (UTC)",
        "in",
        "inserted",
        "dup",
        "conf",
        "quar",
        "source",
        title="Last runs" if args.ticks else "Last runs (engine ticks that went ok not listed: --ticks)",
        title_justify="left",
    )
    for r in info.runs:
        runs.add_row(
            str(r.id),
            r.kind,
            r.status,
            r.started_at.isoformat(timespec="seconds"),
            f"{r.rows_in:,}",
            f"{r.inserted:,}",
            f"{r.duplicates:,}",
            f"{r.conflicts:,}",
            f"{r.quarantined:,}",
            escape(r.source),
        )
    out.print(runs)
    return 0
