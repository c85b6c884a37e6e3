"""The two implementations of :class:`~itap_engine.snapshot.EngineFacade`.

* :class:`LocalFacade` runs the :class:`~itap_engine.engine.Engine` in the caller's
  asyncio loop (the console's, for ``itap``): snapshots come from the engine after
  each tick.
* :class:`AttachedFacade` runs no engine. It reads a database that another process
  writes (``itap engine`` or cron) and builds a snapshot from it about once a second.
  Commands go through the database too: a fault is a ``fault_command`` row that the
  engine (or the next ``itap --once``) carries out, an acknowledgement updates the
  ``alert`` row, and a retrain is a request in the ``command.retrain`` watermark that
  the engine picks up on its next tick.

Both build :meth:`device_detail` from stored rows (readings, scores, alerts, fault
commands, quarantined rows). Every blocking call runs in a worker thread, and
subscribers are called on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlmodel import select

from itap_engine import models
from itap_engine.config import Settings
from itap_engine.engine import (
    ENGINE_STATUS_KEY,
    RETRAIN_REQUEST_KEY,
    SIM_CLOCK_KEY,
    Engine,
    EngineCore,
    alert_row,
    command_view,
    write_fault_commands,
    configure_logging,
    contributors_of,
    device_status,
    injected_faults,
    latest_readings,
    latest_scores,
    open_and_recent_alerts,
    rank_anomalies,
    recent_reading_anomalies,
    recent_validation_alerts,
)
from itap_engine.errors import ItapError
from itap_engine.snapshot import (
    AnomalyRow,
    ContributorView,
    DeviceDetail,
    DeviceRow,
    EngineStats,
    FaultCommandView,
    ProfileInfo,
    Progress,
    QuarantineView,
    Snapshot,
    SnapshotPublisher,
)
from itap_engine.store import Store

__all__ = ["AttachedFacade", "LocalFacade", "device_detail", "snapshot_from_db"]

log = logging.getLogger(__name__)

DETAIL_ROWS = 20
"""Alerts, fault commands and quarantined rows listed in a device detail."""
Subscriber = Callable[[Snapshot], None]


class UnknownDevice(ItapError):
    exit_code = 2


# ---------------------------------------------------------------------- shared reads
def active_models(store: Store) -> dict[str, models.ModelVersion]:
    """profile -> its active model version (the newest active one)."""
    MV = models.ModelVersion
    with store.session() as session:
        rows = session.exec(select(MV).where(MV.active == True).order_by(MV.id))  # type: ignore[arg-type]  # noqa: E712
        return {row.profile: row for row in rows}


def device_detail(store: Store, settings: Settings, device_id: str, window_s: float = 3600) -> DeviceDetail:
    """The drill-down of one device over the last ``window_s`` seconds of its readings.

    Raises:
        UnknownDevice: no such device in the database.
    """
    with store.session() as session:
        device = session.get(models.Device, device_id)
        if device is None:
            raise UnknownDevice(f"unknown device {device_id!r}")
        profile = device.profile
        A, FC, Q = models.Alert, models.FaultCommand, models.Quarantine
        alerts = [
            alert_row(a)
            for a in session.exec(select(A).where(A.device_id == device_id).order_by(A.id.desc()).limit(DETAIL_ROWS))  # type: ignore[union-attr]
        ]
        faults = tuple(
            command_view(c)
            for c in session.exec(select(FC).where(FC.device_id == device_id).order_by(FC.id.desc()).limit(DETAIL_ROWS))  # type: ignore[union-attr]
        )
        quarantined = tuple(
            QuarantineView(created_at=q.created_at, line=q.line, ts=q.ts, reason=q.reason, raw=q.raw)
            for q in session.exec(select(Q).where(Q.device_id == device_id).order_by(Q.id.desc()).limit(DETAIL_ROWS))  # type: ignore[union-attr]
        )
        end = device.last_ts
    spec = settings.profile(profile)
    if end is None:
        end = store.latest_ts(profile)
    signals = list(spec.signals)
    if end is None:
        readings = pd.DataFrame(columns=["device_id", "ts", "state", *signals, "fault"])
    else:
        since = end - int(window_s * 1000)
        readings = store.read_readings(profile, device_ids=[device_id], since_ms=since, until_ms=end)
    ts = readings["ts"].astype("int64").tolist() if len(readings) else []
    scores_by_ts: dict[int, float] = {}
    latest_contributors: tuple[ContributorView, ...] = ()
    if ts:
        S = models.Score.__table__  # type: ignore[attr-defined]
        stmt = (
            sa.select(S.c.ts, S.c.score, S.c.contributors)
            .where(S.c.profile == profile, S.c.device_id == device_id, S.c.ts >= ts[0], S.c.ts <= ts[-1])
            .order_by(S.c.ts)
        )
        with store.engine.connect() as conn:
            for row_ts, score, contributors in conn.execute(stmt):
                scores_by_ts[int(row_ts)] = float(score)
                if contributors:
                    latest_contributors = contributors_of(contributors) or latest_contributors
    series = {
        signal: tuple(None if pd.isna(v) else float(v) for v in readings[signal].tolist()) if signal in readings else ()
        for signal in signals
    }
    labels = tuple(None if v is None or pd.isna(v) else str(v) for v in readings["fault"].tolist()) if "fault" in readings else ()
    current = next((a for a in alerts if a.status == "open"), alerts[0] if alerts else None)
    model = active_models(store).get(profile)
    known_good, source = known_good_window(model, device_id)
    return DeviceDetail(
        device_id=device_id,
        profile=profile,
        ts=tuple(ts),
        series=series,
        scores=tuple(scores_by_ts.get(t) for t in ts),
        threshold=device_threshold(model, device_id),
        fault_labels=labels,
        alerts=tuple(alerts),
        faults=faults,
        quarantined=quarantined,
        contributors=current.contributors if current is not None and current.contributors else latest_contributors,
        known_good=known_good,
        known_good_source=source,
    )


def device_threshold(model: models.ModelVersion | None, device_id: str) -> float | None:
    """A device's own calibrated threshold in a model version, else the version's."""
    if model is None:
        return None
    try:
        own = json.loads(model.metrics or "{}").get("device_thresholds", {}).get(device_id)
    except (ValueError, AttributeError):
        own = None
    return float(own) if own is not None else float(model.threshold)


def known_good_window(
    model: models.ModelVersion | None, device_id: str
) -> tuple[tuple[int | None, int | None] | None, str | None]:
    """The window a model version learned a device's normal from, and whose it is."""
    if model is None:
        return None, None
    try:
        windows = json.loads(model.metrics or "{}").get("device_windows", {})
    except ValueError:
        windows = {}
    own = windows.get(device_id)
    if own:
        return (own[0], own[1]), "device"
    return (model.train_start, model.train_end), "profile"


def acknowledge(store: Store, alert_id: int) -> None:
    """Mark an alert acknowledged (through scoring's own function when it has one)."""
    try:
        from itap_engine.scoring import acknowledge_alert
    except ImportError:  # pragma: no cover - scoring always ships it
        acknowledge_alert = None
    if acknowledge_alert is not None:
        acknowledge_alert(store, alert_id)
        return
    with store.session() as session:
        alert = session.get(models.Alert, alert_id)
        if alert is None:
            raise ItapError(f"no alert {alert_id}")
        alert.acknowledged = True
        alert.acknowledged_at = datetime.now(UTC)
        session.add(alert)
        session.commit()


def request_retrain(store: Store, profile: str | None) -> None:
    """Ask the engine (in any process) to retrain, through the ``command.retrain`` watermark."""
    store.set_watermark(RETRAIN_REQUEST_KEY, f"{profile or '*'} {datetime.now(UTC).isoformat()}")


def snapshot_from_db(store: Store, settings: Settings, seq: int, *, paused: bool = False) -> Snapshot:
    """A snapshot built from stored rows only (what an attached console shows)."""
    status: dict[str, Any] = {}
    raw = store.get_watermark(ENGINE_STATUS_KEY)
    if raw:
        with contextlib.suppress(ValueError):
            status = json.loads(raw)
    clock = store.get_watermark(SIM_CLOCK_KEY)
    sim_time = datetime.fromisoformat(clock) if clock else None
    model_rows = active_models(store)
    open_alerts, recent_closed = open_and_recent_alerts(store)
    device_alert: dict[str, AnomalyRow] = {}
    for alert in open_alerts:
        current = device_alert.get(alert.device_id)
        if current is None or (alert.severity == "critical" and current.severity != "critical"):
            device_alert[alert.device_id] = alert
    injected = injected_faults(store)
    with store.session() as session:
        devices = list(session.exec(select(models.Device).order_by(models.Device.id)))
    newest = max((d.last_ts for d in devices if d.last_ts is not None), default=None)
    clock_ms = int((sim_time - datetime(1970, 1, 1)).total_seconds() * 1000) if sim_time else newest
    step_s = settings.engine.sim_speed * settings.engine.tick_seconds
    stale_ms = int(max(5 * settings.simulation.freq_s, 3 * step_s) * 1000)
    rows: list[DeviceRow] = []
    for profile, spec in settings.profiles.items():
        members = [d for d in devices if d.profile == profile]
        if not members:
            continue
        latest = latest_readings(store, profile)
        by_device = latest.to_dict("index") if len(latest) else {}
        scores = latest_scores(store, profile)["score"].to_dict()
        model = model_rows.get(profile)
        for device in members:
            record = by_device.get(device.id)
            values = {
                s: (None if record is None or pd.isna(record.get(s)) else float(record[s])) for s in spec.signals
            }
            rows.append(
                DeviceRow(
                    device_id=device.id,
                    profile=profile,
                    site=device.site,
                    state=record["state"] if record is not None else None,
                    values=values,
                    score=scores.get(device.id),
                    threshold=float(model.threshold) if model is not None else None,
                    status=device_status(
                        device_alert.get(device.id), model is not None, device.last_ts, clock_ms, stale_ms
                    ),
                    last_ts=device.last_ts,
                    injected_fault=injected.get(device.id),
                )
            )
    readings: list[AnomalyRow] = []  # as the engine's: those of the last tick
    if clock_ms is not None:
        since = clock_ms - int(step_s * 1000)
        for profile, model in model_rows.items():
            readings += recent_reading_anomalies(store, profile, float(model.threshold), since)
    fresh = False
    if status.get("heartbeat"):
        with contextlib.suppress(ValueError):
            beat = datetime.fromisoformat(status["heartbeat"])
            fresh = datetime.now(UTC) - beat < timedelta(seconds=max(10.0, 5 * settings.engine.tick_seconds))
    phase = str(status.get("phase") or "idle") if fresh else "idle"
    stats = EngineStats(
        sim_time=sim_time,
        tick_ms=status.get("tick_ms"),
        rows_per_s=status.get("rows_per_s"),
        ticks=int(status.get("ticks") or 0),
        model_versions={p: int(m.id) for p, m in model_rows.items() if m.id is not None},
        paused=paused,
        mode="attached",
        last_error=status.get("last_error"),
        phase=phase,
    )
    return Snapshot(
        seq=seq,
        created_at=datetime.now(UTC),
        devices=tuple(rows),
        anomalies=rank_anomalies(open_alerts, readings, recent_closed),
        validation_alerts=tuple(recent_validation_alerts(store)),
        stats=stats,
        profiles=ProfileInfo.all_of(settings),
    )


# ---------------------------------------------------------------------- local
class LocalFacade:
    """The engine in this process, on the caller's event loop (``itap`` / ``itap console``).

    Args:
        settings: the loaded settings.
        lock: take the data directory's run lock (default True; one writer at a time).
    """

    mode = "live"

    def __init__(self, settings: Settings, *, lock: bool = True, schedule: bool = True) -> None:
        self.settings = settings
        self.engine = Engine(settings, lock=lock, schedule=schedule)

    async def start(self, progress: Callable[[Progress], None] | None = None) -> None:
        await self.engine.start(progress)

    async def stop(self) -> None:
        await self.engine.stop()

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        return self.engine.subscribe(callback)

    def latest(self) -> Snapshot | None:
        return self.engine.latest()

    def _core(self) -> EngineCore:
        if self.engine.core is None:
            raise ItapError("the engine is not running")
        return self.engine.core

    async def inject_fault(
        self, device_ids: list[str], fault: str, severity: float, duration_s: float
    ) -> list[FaultCommandView]:
        return await self.engine.inject_fault(device_ids, fault, severity, duration_s)

    async def acknowledge(self, alert_id: int) -> None:
        await asyncio.to_thread(acknowledge, self._core().store, alert_id)
        await self.engine.refresh()

    async def retrain(self, profile: str | None = None) -> Mapping[str, int | None] | None:
        return await self.engine.retrain(profile)

    def set_paused(self, paused: bool) -> None:
        self.engine.set_paused(paused)

    async def device_detail(self, device_id: str, window_s: float = 3600) -> DeviceDetail:
        core = self._core()
        return await asyncio.to_thread(device_detail, core.store, self.settings, device_id, window_s)


# ---------------------------------------------------------------------- attached
class AttachedFacade(SnapshotPublisher):
    """A console's view of a database another process writes; no engine here.

    Args:
        settings: the loaded settings (the database URL and the profiles).
        interval_s: seconds between two refreshes.
    """

    mode = "attached"

    def __init__(self, settings: Settings, *, interval_s: float = 1.0) -> None:
        self.settings = settings
        self.interval_s = interval_s
        self.paused = False
        self.store: Store | None = None
        self.seq = 0
        self.last_error: str | None = None
        SnapshotPublisher.__init__(self)
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None

    async def start(self, progress: Callable[[Progress], None] | None = None) -> None:
        """Open the database and build the first snapshot (no bootstrap: nothing is written)."""
        configure_logging(self.settings)
        if progress is not None:
            progress(Progress("attach", 0.0, "opening the database"))
        self.store = await asyncio.to_thread(Store, self.settings)
        await self.refresh()
        if progress is not None:
            progress(Progress("attach", 1.0, "attached"))
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
            self.store = None

    async def _poll(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            if not self.paused:
                await self.refresh()

    async def refresh(self) -> None:
        """Build and publish a snapshot now; a failure keeps the last one, with the error."""
        store = self._store()
        self.seq += 1
        try:
            snapshot = await asyncio.to_thread(snapshot_from_db, store, self.settings, self.seq, paused=self.paused)
            self.last_error = None
        except Exception as error:  # noqa: BLE001 - e.g. the database locked for too long
            self.last_error = f"{datetime.now():%H:%M:%S} refresh failed: {type(error).__name__}: {error}"
            log.exception("attached refresh failed")
            if self._latest is None:
                raise
            from dataclasses import replace

            snapshot = replace(
                self._latest, seq=self.seq, stats=replace(self._latest.stats, last_error=self.last_error)
            )
        self._deliver(snapshot)

    def _store(self) -> Store:
        if self.store is None:
            raise ItapError("not attached: call start() first")
        return self.store

    async def inject_fault(
        self, device_ids: list[str], fault: str, severity: float, duration_s: float
    ) -> list[FaultCommandView]:
        """Write pending ``fault_command`` rows; the engine writing the database applies them."""
        views = await asyncio.to_thread(
            write_fault_commands, self._store(), list(device_ids), fault, severity, duration_s
        )
        self._poke()
        return views

    async def acknowledge(self, alert_id: int) -> None:
        await asyncio.to_thread(acknowledge, self._store(), alert_id)
        self._poke()

    async def retrain(self, profile: str | None = None) -> Mapping[str, int | None] | None:
        """Ask the engine to retrain (a request row); it runs on the engine's next tick."""
        if profile is not None:
            self.settings.profile(profile)
        await asyncio.to_thread(request_retrain, self._store(), profile)
        return None

    def set_paused(self, paused: bool) -> None:
        """Pause or resume refreshing (the engine in the other process goes on)."""
        self.paused = paused
        if self._latest is not None:
            from dataclasses import replace

            self._latest = replace(self._latest, stats=replace(self._latest.stats, paused=paused))
        if not paused:
            self._poke()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def device_detail(self, device_id: str, window_s: float = 3600) -> DeviceDetail:
        return await asyncio.to_thread(device_detail, self._store(), self.settings, device_id, window_s)
