"""The one snapshot assembler: the in-process engine and the attached reader both
build their :class:`~itap_engine.snapshot.dto.Snapshot` here, from the same inputs,
with the same rules (device status, one severity rule, the anomaly ranking).

Pure: no SQL, no I/O. The inputs come from the engine's memory (live) or from
:mod:`itap_engine.store.queries` (attached).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from itap_engine.snapshot.dto import (
    AnomalyRow,
    DeviceRow,
    EngineStats,
    IncidentCounts,
    ProfileInfo,
    Snapshot,
    ValidationAlertRow,
    ValidationProblemRow,
    contributors_of,
)

if TYPE_CHECKING:
    from itap_engine.config import Settings

MAX_TOP_ANOMALIES = 50


def rank_anomalies(
    open_alerts: Sequence[AnomalyRow], readings: Sequence[AnomalyRow], recent_closed: Sequence[AnomalyRow]
) -> tuple[AnomalyRow, ...]:
    """The anomalies list: open alerts, then anomalous readings of devices without one,
    by score; recently closed alerts fill what room is left."""
    alerted = {a.device_id for a in open_alerts}
    ranked = [*open_alerts, *(r for r in readings if r.device_id not in alerted)]
    ranked = sorted(ranked, key=lambda a: (a.status != "open", -a.score))[:MAX_TOP_ANOMALIES]
    return (*ranked, *recent_closed[: max(0, MAX_TOP_ANOMALIES - len(ranked))])


def reading_anomaly(device: Any, profile: str, ts: Any, score: Any, family: Any, contributors: Any) -> AnomalyRow:
    """An anomalous reading (no alert) as the anomalies list shows it."""
    return AnomalyRow(
        device_id=str(device),
        profile=profile,
        ts=int(ts),
        score=float(score),
        severity="reading",
        family=str(family or "other"),
        contributors=contributors_of(contributors),
        status="reading",
    )


def device_status(
    alert: AnomalyRow | None, trained: bool, last_ts: int | None, clock_ms: int | None, stale_ms: int
) -> str:
    if alert is not None:
        return "critical" if alert.severity == "critical" else "warning"
    if not trained:
        return "untrained"
    if last_ts is None or (clock_ms is not None and clock_ms - last_ts > stale_ms):
        return "stale"
    return "ok"


def strongest_alerts(open_alerts: Sequence[AnomalyRow]) -> dict[str, AnomalyRow]:
    """The one alert a device's status follows: its critical one if any, else its first."""
    by_device: dict[str, AnomalyRow] = {}
    for alert in open_alerts:
        current = by_device.get(alert.device_id)
        if current is None or (alert.severity == "critical" and current.severity != "critical"):
            by_device[alert.device_id] = alert
    return by_device


def _number(value: Any, default: float | None = None) -> float | None:
    """``value`` as a float when it is a finite number, else ``default``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def _text(value: Any) -> str | None:
    return None if value is None or pd.isna(value) else str(value)


def _numbers(values: np.ndarray) -> list[float | None]:
    """:func:`_number` of each value, a float column at once."""
    if values.dtype.kind == "f":
        out: list[float | None] = values.tolist()
        for k in np.flatnonzero(~np.isfinite(values)).tolist():
            out[k] = None
        return out
    if values.dtype.kind in "iub":
        return [float(v) for v in values.tolist()]
    return [_number(v) for v in values.tolist()]


def _latest_columns(
    latest: pd.DataFrame | None, devices: Sequence[FleetDevice], signals: list[str]
) -> tuple[list[bool], list[float | None], list[str | None], list[tuple[float | None, ...]]]:
    """Per device (in ``devices``' order): whether ``latest`` has a row for it, its
    time, state and signal values as the snapshot shows them (:func:`_number`,
    :func:`_text`), one column at a time rather than a dict per row."""
    n = len(devices)
    if latest is None or not len(latest) or n == 0:
        return [False] * n, [None] * n, [None] * n, [()] * n
    at = latest.index.get_indexer([d.device_id for d in devices])
    known = at >= 0
    take = np.where(known, at, 0)

    def column(name: str) -> np.ndarray | None:
        if name not in latest.columns:
            return None
        return np.asarray(latest[name].to_numpy()[take])

    nothing: list[Any] = [None] * n
    ts = column("ts")
    newest: list[float | None] = _numbers(ts) if ts is not None else nothing
    state = column("state")
    states: list[str | None] = [_text(v) for v in state.tolist()] if state is not None else nothing
    values = [_numbers(c) if (c := column(name)) is not None else nothing for name in signals]
    readings: list[tuple[float | None, ...]] = list(zip(*values, strict=True)) if values else [()] * n
    present: list[bool] = known.tolist()
    return present, newest, states, readings


@dataclass(frozen=True)
class FleetDevice:
    """A device as the snapshot lists it: where it sits and what it was last known at."""

    device_id: str
    site: str | None = None
    last_ts: int | None = None


@dataclass(frozen=True)
class ProfileState:
    """What the snapshot needs of one profile.

    Args:
        devices: the profile's devices, in display order.
        latest: the newest reading of each device (index ``device_id``; ``ts`` in
            epoch ms, ``state`` and one column per signal), or None.
        scores: device -> newest score.
        threshold: the active model's threshold (None: no model).
        device_thresholds: device -> its own calibrated threshold, where it has one.
    """

    devices: Sequence[FleetDevice]
    latest: pd.DataFrame | None
    scores: Mapping[str, float]
    threshold: float | None
    device_thresholds: Mapping[str, float] = field(default_factory=dict)


def build_snapshot(
    settings: Settings,
    *,
    seq: int,
    profiles: Mapping[str, ProfileState],
    open_alerts: Sequence[AnomalyRow],
    recent_closed: Sequence[AnomalyRow],
    reading_anomalies: Sequence[AnomalyRow],
    injected: Mapping[str, str],
    validation_alerts: Sequence[ValidationAlertRow],
    clock_ms: int | None,
    stats: EngineStats,
    silenced: Mapping[str, tuple[int, str]] | None = None,
    validation_problems: Sequence[ValidationProblemRow] = (),
) -> Snapshot:
    """The fleet at one moment, by the same rules whoever asks.

    A device is stale when its newest reading is older than five sampling intervals
    or three ticks of simulated time, whichever is longer, behind ``clock_ms``.
    """
    step_s = settings.engine.sim_speed * settings.engine.tick_seconds
    stale_ms = int(max(5 * settings.simulation.freq_s, 3 * step_s) * 1000)
    alert_of = strongest_alerts(open_alerts)
    rows: list[DeviceRow] = []
    for profile, spec in settings.profiles.items():
        state_of = profiles.get(profile)
        if state_of is None or not state_of.devices:
            continue
        signals = list(spec.signals)
        known, newest, states, readings = _latest_columns(state_of.latest, state_of.devices, signals)
        for i, device in enumerate(state_of.devices):
            if known[i]:
                values = dict(zip(signals, readings[i], strict=True))
                state = states[i]
                ts = newest[i]
                last_ts = int(ts) if ts is not None else device.last_ts
            else:
                values, state, last_ts = dict.fromkeys(spec.signals), None, device.last_ts
            rows.append(
                DeviceRow(
                    device_id=device.device_id,
                    profile=profile,
                    site=device.site,
                    state=state,
                    values=values,
                    score=_number(state_of.scores.get(device.device_id)),
                    threshold=_number(state_of.device_thresholds.get(device.device_id), state_of.threshold),
                    status=device_status(
                        alert_of.get(device.device_id), state_of.threshold is not None, last_ts, clock_ms, stale_ms
                    ),
                    last_ts=last_ts,
                    injected_fault=injected.get(device.device_id),
                )
            )
    return Snapshot(
        seq=seq,
        created_at=datetime.now(UTC),
        devices=tuple(rows),
        anomalies=rank_anomalies(open_alerts, reading_anomalies, recent_closed),
        validation_alerts=tuple(validation_alerts),
        stats=stats,
        profiles=ProfileInfo.all_of(settings),
        incidents=IncidentCounts.of(open_alerts),
        silenced=dict(silenced or {}),
        validation_problems=tuple(validation_problems),
    )
