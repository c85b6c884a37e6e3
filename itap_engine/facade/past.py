"""A device's drill-down as it was at a past moment: for time travel (``t``) and replay."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from itap_engine.config import Settings
from itap_engine.snapshot.dto import DeviceDetail
from itap_engine.store.queries import alerts_at, device_detail
from itap_engine.store.sql import Store

MAX_DETAIL_S = 7 * 86400.0
"""The furthest back a past drill-down reads (its window plus the time since then)."""


def detail_at(store: Store, settings: Settings, device_id: str, window_s: float, at: datetime) -> DeviceDetail:
    """The drill-down of ``device_id`` over the ``window_s`` before ``at`` (data time):
    readings, scores and fault labels of that window, incidents opened and faults
    started by then, and the incidents open then shown open."""
    clock = _ms(at)
    newest = store.latest_device_ts([device_id]) or clock
    reach = min(MAX_DETAIL_S, window_s + max(0, newest - clock) / 1000)
    detail = device_detail(store, settings, device_id, reach)
    open_then = {a.alert_id for a in alerts_at(store, clock, closed_limit=0)[0]}
    return cut_detail(detail, clock - int(window_s * 1000), clock, open_then)


def _ms(value: datetime) -> int:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return int(aware.timestamp() * 1000)


def cut_detail(
    detail: DeviceDetail, since_ms: int, until_ms: int, open_then: set[int | None] | None = None
) -> DeviceDetail:
    """``detail`` as it was at ``until_ms``: readings in (since, until], incidents
    opened and faults started by then; the incidents in ``open_then`` shown open."""
    open_then = open_then or set()
    keep = [i for i, ts in enumerate(detail.ts) if since_ms < ts <= until_ms]

    def pick(values: tuple) -> tuple:  # type: ignore[type-arg]
        return tuple(values[i] for i in keep) if len(values) == len(detail.ts) else values

    return replace(
        detail,
        ts=tuple(detail.ts[i] for i in keep),
        series={k: pick(v) for k, v in detail.series.items()},
        scores=pick(detail.scores),
        fault_labels=pick(detail.fault_labels),
        alerts=tuple(
            replace(a, status="open") if a.alert_id in open_then else a
            for a in detail.alerts
            if a.opened_ts is None or a.opened_ts <= until_ms
        ),
        faults=tuple(f for f in detail.faults if f.start_ts is None or f.start_ts <= until_ms),
    )
