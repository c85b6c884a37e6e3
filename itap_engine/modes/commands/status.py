"""``itap status``: what the database holds: devices, rows, quarantine, last runs."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from itap_engine.config import Settings
    from itap_engine.store.sql import Store
from itap_engine.modes.cli_values import bounded_int

HELP = "devices, rows per profile, quarantine count and the last runs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runs", type=bounded_int(0, 10_000), default=8, help="how many recent runs to list (default: 8)"
    )
    parser.add_argument("--json", action="store_true", help="print as JSON")


def collect(store: Store, runs: int) -> dict[str, object]:
    from itap_engine.store import schema as models
    from itap_engine.store.sql import from_epoch_ms

    profiles = []
    for name in store.settings.profiles:
        rows = store.count_readings(name)
        latest = store.latest_ts(name)
        profiles.append(
            {
                "profile": name,
                "devices": store.count(models.Device, models.Device.profile == name),
                "rows": rows,
                "latest": None if latest is None else from_epoch_ms([latest])[0].isoformat(),
            }
        )
    return {
        "database": store.safe_url,
        "profiles": profiles,
        "quarantined": store.count(models.Quarantine),
        "open_alerts": store.count(models.Alert, models.Alert.status == "open"),
        "unacknowledged_alerts": store.count(
            models.Alert,
            models.Alert.status == "open",
            models.Alert.acknowledged == False,  # noqa: E712
        ),
        "runs": [
            {
                "id": run.id,
                "kind": run.kind,
                "source": run.source,
                "status": run.status,
                "started_at": run.started_at.isoformat(timespec="seconds"),
                "rows_in": run.rows_in,
                "inserted": run.inserted,
                "duplicates": run.duplicates,
                "conflicts": run.conflicts,
                "quarantined": run.quarantined,
            }
            for run in store.iter_runs(runs)
        ],
    }


def run(args: argparse.Namespace, settings: Settings) -> int:
    from rich.markup import escape
    from rich.table import Table

    from itap_engine.modes.render.output import console, print_json
    from itap_engine.store.sql import Store

    store = Store(settings)
    try:
        info = collect(store, args.runs)
    finally:
        store.close()
    if args.json:
        print_json(info)
        return 0
    out = console()
    out.print(f"database: {escape(str(info['database']))}")
    table = Table("profile", "devices", "rows", "latest reading", title="Readings", title_justify="left")
    for p in info["profiles"]:  # type: ignore[attr-defined]
        table.add_row(p["profile"], f"{p['devices']:,}", f"{p['rows']:,}", p["latest"] or "-")
    out.print(table)
    from itap_engine.snapshot import IncidentCounts

    incidents = IncidentCounts(int(info["open_alerts"]), int(info["unacknowledged_alerts"]))  # type: ignore[call-overload]
    out.print(f"quarantined rows: {info['quarantined']:,}    incidents: {incidents.label()}")
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
        title="Last runs",
        title_justify="left",
    )
    for r in info["runs"]:  # type: ignore[attr-defined]
        runs.add_row(
            str(r["id"]),
            r["kind"],
            r["status"],
            r["started_at"],
            f"{r['rows_in']:,}",
            f"{r['inserted']:,}",
            f"{r['duplicates']:,}",
            f"{r['conflicts']:,}",
            f"{r['quarantined']:,}",
            escape(r["source"]),
        )
    out.print(runs)
    return 0
