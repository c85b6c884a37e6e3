"""``itap anomalies``: the most anomalous readings or open alerts, ranked.

``--json`` prints one object, a stable shape (fields are only ever added)::

    {
      "kind": "alerts" | "readings",     # open alerts when there are any, else top readings
      "generated_at": "2026-01-01T12:00:00+00:00",   # UTC, ISO 8601
      "items": [                          # ranked, most anomalous first
        {
          "rank": 1,
          "device_id": "pump-007",
          "profile": "industrial",
          "time": "2026-01-01T11:58:40",  # reading time (alerts: last over-threshold reading), UTC
          "ts": 1767268720000,            # the same, epoch milliseconds
          "score": 7.41,                  # anomaly score, higher = more anomalous
          "threshold": 1.79,              # the model's alert threshold
          "severity": "critical",         # "warning" | "critical"; readings below the threshold: "normal"
          "family": "thermal",            # top sensor family
          "contributors": [               # top signals, shares sum to <= 1
            {"signal": "temp_c", "family": "thermal", "share": 0.93}
          ],
          "alert_id": 12,                 # alerts only (null for readings)
          "opened": "2026-01-01T11:40:10",# alerts only: when it opened (UTC)
          "acknowledged": false,          # alerts only
          "model_version_id": 3
        }
      ]
    }

Without open alerts (or with ``--readings``) the items are the highest-scoring stored
readings, one per device unless ``--all-readings``.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from itap_engine.errors import ItapError
from itap_engine.modes.cli_values import bounded_int

if TYPE_CHECKING:
    from itap_engine.config import Settings

HELP = "list the most anomalous open alerts (or readings), ranked, with their contributors"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=bounded_int(1, 10_000), default=10, help="how many, 1 to 10000 (default: 10)")
    parser.add_argument("--device", help="only this device")
    parser.add_argument("--profile", help="only this profile")
    parser.add_argument("--readings", action="store_true", help="rank scored readings even when alerts are open")
    parser.add_argument("--all-readings", action="store_true", help="with readings: allow several per device")
    parser.add_argument("--json", action="store_true", help="print the documented JSON shape")
    parser.add_argument(
        "--csv", action="store_true", help="print CSV (one row per item, contributors as 'signal share; ...')"
    )


def _iso(ms: Any) -> str | None:
    import pandas as pd

    if ms is None or pd.isna(ms):
        return None
    return pd.Timestamp(int(ms), unit="ms").isoformat()


def _contributors(text: Any) -> list[dict[str, Any]]:
    if not isinstance(text, str) or not text:
        return []
    return json.loads(text)


def collect(
    store,
    settings: Settings,
    *,
    limit: int,
    device: str | None = None,
    profile: str | None = None,
    readings: bool = False,
    all_readings: bool = False,
) -> dict[str, Any]:
    """The ranked items of ``itap anomalies`` (the JSON shape above)."""
    from itap_engine.detection.alerts import severity
    from itap_engine.store.queries import open_alert_records, top_score_records
    from itap_engine.store.schema import utcnow

    items: list[dict[str, Any]] = []
    kind = "alerts"
    if not readings:
        for row in open_alert_records(store, limit=limit, device=device, profile=profile):
            items.append(
                {
                    "device_id": row["device_id"],
                    "profile": row["profile"],
                    "time": _iso(row["last_ts"]),
                    "ts": int(row["last_ts"]),
                    "score": float(row["peak_score"]),
                    "threshold": float(row["threshold"]),
                    "severity": row["severity"],
                    "family": row["family"],
                    "contributors": _contributors(row["contributors"]),
                    "alert_id": int(row["id"]),
                    "opened": _iso(row["opened_ts"]),
                    "acknowledged": bool(row["acknowledged"]),
                    "model_version_id": row["model_version_id"],
                }
            )
    if not items:
        kind = "readings"
        for row in top_score_records(store, limit=limit, device=device, profile=profile, per_device=not all_readings):
            contributors = _contributors(row["contributors"])
            items.append(
                {
                    "device_id": row["device_id"],
                    "profile": row["profile"],
                    "time": _iso(row["ts"]),
                    "ts": int(row["ts"]),
                    "score": float(row["score"]),
                    "threshold": float(row["threshold"]),
                    "severity": severity(row["score"], row["threshold"], settings.alerts.critical_ratio),
                    "family": contributors[0]["family"] if contributors else None,
                    "contributors": contributors,
                    "alert_id": None,
                    "opened": None,
                    "acknowledged": False,
                    "model_version_id": row["model_version_id"],
                }
            )
    for rank, item in enumerate(items, start=1):
        item["rank"] = rank
    return {"kind": kind, "generated_at": utcnow().isoformat(), "items": [{"rank": i.pop("rank"), **i} for i in items]}


def _check_device(store, device_id: str) -> None:
    """Raise unless the device has a row in the device table (every stored reading's device has one)."""
    from itap_engine.store.queries import device_ids, stored_profile

    if stored_profile(store, device_id) is not None:
        return
    known = device_ids(store, limit=4)
    hint = f"; known devices include {', '.join(known)}" if known else "; the database has no devices yet"
    raise ItapError(f"unknown device {device_id!r}{hint}")


CSV_COLUMNS = (
    "rank",
    "kind",
    "device_id",
    "profile",
    "time",
    "score",
    "threshold",
    "severity",
    "family",
    "contributors",
    "alert_id",
    "opened",
    "acknowledged",
    "model_version_id",
)


def write_csv(payload: dict[str, Any]) -> None:
    """The items as CSV on stdout, the JSON's fields flattened (contributors: 'temp_c 0.93; ...')."""
    import csv
    import sys

    writer = csv.DictWriter(sys.stdout, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for item in payload["items"]:
        writer.writerow(
            {
                **item,
                "kind": payload["kind"],
                "contributors": "; ".join(f"{c['signal']} {float(c['share']):.2f}" for c in item["contributors"]),
            }
        )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from itap_engine.modes.render.output import console, print_json
    from itap_engine.snapshot import worth_showing
    from itap_engine.store.sql import Store

    if args.limit < 1:
        raise ItapError("--limit must be at least 1")
    if args.json and args.csv:
        raise ItapError("--json and --csv: choose one")
    if args.profile:
        settings.profile(args.profile)
    store = Store(settings)
    try:
        if args.device:
            _check_device(store, args.device)
        payload = collect(
            store,
            settings,
            limit=args.limit,
            device=args.device,
            profile=args.profile,
            readings=args.readings,
            all_readings=args.all_readings,
        )
    finally:
        store.close()
    if args.json:
        print_json(payload)
        return 0
    if args.csv:
        write_csv(payload)
        return 0
    out = console()
    if not payload["items"]:
        out.print("no anomalies: nothing scored yet (run `itap score`) or nothing matches")
        return 0
    title = "Open alerts" if payload["kind"] == "alerts" else "Most anomalous readings"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("#", "device", "time (UTC)", "score", "x thr", "severity", "family", "contributors"):
        table.add_column(
            col,
            justify="right" if col in ("#", "score", "x thr") else "left",
            no_wrap=col != "contributors",
            min_width=16 if col == "contributors" else None,
        )
    for item in payload["items"]:
        shown = worth_showing(item["contributors"])  # the JSON keeps them all
        contrib = " ".join(f"{c['signal']} {c['share']:.0%}" for c in shown)
        ratio = item["score"] / item["threshold"] if item["threshold"] else float("nan")
        time = (item["time"] or "-").replace("T", " ")[:19]
        table.add_row(
            str(item["rank"]),
            escape(item["device_id"]),
            time,
            f"{item['score']:.3g}",
            f"{ratio:.2f}",
            item["severity"],
            escape(item["family"] or "-"),
            escape(contrib),
        )
    out.print(table)
    return 0
