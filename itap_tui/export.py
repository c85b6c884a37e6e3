"""``e`` / ``E``: the table on screen, as filtered and sorted, to a CSV or JSON file.

Pure functions turn what a screen shows into records (one dict per row, the same
keys in CSV and JSON, times as ISO 8601 data time, UTC); :func:`write_records` writes
them. The console calls these in a worker thread and says where the file went.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from itap_engine.snapshot import AnomalyRow, DeviceDetail, DeviceRow, ValidationProblemRow


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).replace(tzinfo=None).isoformat()


def fleet_records(
    rows: Iterable[DeviceRow], silenced: dict[str, tuple[int, str]] | None = None
) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        quiet = (silenced or {}).get(r.device_id)
        out.append(
            {
                "device_id": r.device_id,
                "profile": r.profile,
                "site": r.site,
                "status": r.status,
                "state": r.state,
                "score": r.score,
                "threshold": r.threshold,
                "last_reading": iso(r.last_ts),
                "injected_fault": r.injected_fault,
                "silenced_until": iso(quiet[0]) if quiet else None,
                **{f"value.{name}": value for name, value in r.values.items()},
            }
        )
    return out


def anomaly_records(rows: Iterable[AnomalyRow]) -> list[dict[str, Any]]:
    return [
        {
            "incident_id": r.alert_id,
            "device_id": r.device_id,
            "profile": r.profile,
            "kind": "incident" if r.alert_id is not None else "reading",
            "status": r.status,
            "severity": r.severity,
            "family": r.family,
            "score": r.score,
            "opened": iso(r.opened_ts),
            "last": iso(r.ts),
            "acknowledged": r.acknowledged,
            "note": r.note,
            "contributors": "; ".join(f"{c.signal} {c.share:.2f}" for c in r.contributors),
        }
        for r in rows
    ]


def problem_records(rows: Iterable[ValidationProblemRow]) -> list[dict[str, Any]]:
    return [
        {
            "level": p.level,
            "device_id": p.device_id,
            "signal": p.signal,
            "check": p.check,
            "first_seen": iso(p.first_ts),
            "last_seen": iso(p.last_ts),
            "count": p.count,
            "resolved": iso(p.resolved_ts),
            "message": p.message,
        }
        for p in rows
    ]


def series_records(detail: DeviceDetail) -> list[dict[str, Any]]:
    out = []
    for i, ts in enumerate(detail.ts):
        record: dict[str, Any] = {"time": iso(ts), "score": detail.scores[i] if i < len(detail.scores) else None}
        for name, values in detail.series.items():
            record[name] = values[i] if i < len(values) else None
        record["fault"] = detail.fault_labels[i] if i < len(detail.fault_labels) else None
        out.append(record)
    return out


def write_records(
    records: Sequence[dict[str, Any]], folder: Path, name: str, fmt: str, now: datetime | None = None
) -> Path:
    """Write ``records`` to ``folder/name-<UTC time>.csv|json``; returns the path."""
    folder.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "export"  # device ids come from data
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    path = folder / f"{name}-{stamp}.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(list(records), indent=2, default=str) + "\n", encoding="utf-8")
        return path
    keys: list[str] = []
    for record in records:
        keys.extend(k for k in record if k not in keys)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys or ["empty"])
        writer.writeheader()
        writer.writerows(records)
    return path
