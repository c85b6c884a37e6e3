"""The console over a database another process writes: :class:`AttachedFacade` runs
no engine. It builds a snapshot from stored rows about once a second, with the same
assembler as the engine (:func:`~itap_engine.snapshot.assemble.build_snapshot`).
Commands go through the database too: a fault is a ``fault_command`` row that the
engine (or the next ``itap --once``) carries out, an acknowledgement updates the
``alert`` row, and a retrain is a request in the ``command.retrain`` watermark that
the engine picks up on its next tick. Every blocking call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from itap_engine.config import Settings
from itap_engine.detection.alerts import acknowledge_alert, mute_device, silences
from itap_engine.engine.logs import configure_logging
from itap_engine.errors import ItapError
from itap_engine.facade.past import detail_at
from itap_engine.snapshot.assemble import ProfileState, build_snapshot
from itap_engine.snapshot.dto import (
    AnomalyRow,
    DeviceDetail,
    EngineStats,
    EventRow,
    FaultCommandView,
    Progress,
    Snapshot,
    SnapshotPublisher,
)
from itap_engine.store.queries import (
    active_models,
    alerts_at,
    device_detail,
    device_threshold,
    fleet_devices,
    incident_history,
    injected_faults,
    latest_readings,
    latest_scores,
    model_numbers,
    open_and_recent_alerts,
    problems_at,
    readings_at,
    recent_events,
    recent_reading_anomalies,
    recent_validation_alerts,
    request_retrain,
    scores_at,
    set_note,
    validation_problems,
    write_fault_commands,
)
from itap_engine.store.sql import Store
from itap_engine.store.watermarks import ENGINE_STATUS_KEY, SHARD_SUFFIX, SIM_CLOCK_KEY, fleet_clock

log = logging.getLogger(__name__)


def snapshot_from_db(store: Store, settings: Settings, seq: int, *, paused: bool = False) -> Snapshot:
    """A snapshot built from stored rows only (what an attached console shows)."""
    fresh_s = max(10.0, 5 * settings.engine.tick_seconds)
    status = _engine_status(store.watermarks_like(ENGINE_STATUS_KEY), fresh_s)
    clock = fleet_clock(store.watermarks_like(SIM_CLOCK_KEY), status.get("live"))
    sim_time = datetime.fromisoformat(clock) if clock else None
    model_rows = active_models(store)
    open_alerts, recent_closed = open_and_recent_alerts(store)
    devices = fleet_devices(store)
    newest = max((d.last_ts for ds in devices.values() for d in ds if d.last_ts is not None), default=None)
    clock_ms = int((sim_time - datetime(1970, 1, 1)).total_seconds() * 1000) if sim_time else newest
    profiles: dict[str, ProfileState] = {}
    for profile in settings.profiles:
        members = devices.get(profile, [])
        if not members:
            continue
        model = model_rows.get(profile)
        scores = latest_scores(store, profile)
        profiles[profile] = ProfileState(
            devices=members,
            latest=latest_readings(store, profile),
            scores=scores["score"].to_dict(),
            device_thresholds={d.device_id: device_threshold(model, d.device_id) for d in members} if model else {},  # type: ignore[misc]
            threshold=float(model.threshold) if model is not None else None,
        )
    readings: list[AnomalyRow] = []  # as the engine's: those of the last tick
    if clock_ms is not None:
        since = clock_ms - int(settings.engine.sim_speed * settings.engine.tick_seconds * 1000)
        for profile, model in model_rows.items():
            readings += recent_reading_anomalies(store, profile, float(model.threshold), since)
    fresh = _heard_within({**status, "phase": None}, fresh_s, datetime.now(UTC))
    phase = str(status.get("phase") or "idle") if fresh else "idle"
    stats = EngineStats(
        sim_time=sim_time,
        tick_ms=status.get("tick_ms"),
        rows_per_s=status.get("rows_per_s"),
        ticks=int(status.get("ticks") or 0),
        model_versions=model_numbers(store, {p: int(m.id) for p, m in model_rows.items() if m.id is not None}),
        paused=paused,
        mode="attached",
        last_error=status.get("last_error"),
        phase=phase,
    )
    return build_snapshot(
        settings,
        seq=seq,
        profiles=profiles,
        open_alerts=open_alerts,
        recent_closed=recent_closed,
        reading_anomalies=readings,
        injected=injected_faults(store),
        validation_alerts=recent_validation_alerts(store),
        validation_problems=validation_problems(store),
        clock_ms=clock_ms,
        stats=stats,
        silenced=silences(store, settings, [d.device_id for p in profiles.values() for d in p.devices], clock_ms or 0),
    )


def _heard_within(status: Mapping[str, Any], seconds: float, now: datetime) -> bool:
    """``status`` was written less than ``seconds`` ago by an engine that has not stopped."""
    if status.get("phase") == "stopped" or not status.get("heartbeat"):
        return False
    try:
        beat = datetime.fromisoformat(str(status["heartbeat"]))
    except ValueError:
        return False
    if beat.tzinfo is None:
        beat = beat.replace(tzinfo=UTC)
    return now - beat < timedelta(seconds=seconds)


def _engine_status(raw: Mapping[str, str], fresh_s: float = 10.0, now: datetime | None = None) -> dict[str, Any]:
    """The engine's status; with shards, theirs together: the newest heartbeat and
    phase, the slowest tick, ticks added up, the first error, ``live`` (the labels of
    the shards heard from within ``fresh_s``) and, when a shard of the running layout
    (the same N) is silent or stopped, an error saying so (its devices stop updating;
    an engine of another layout, e.g. a test run with ``--shard 0/5``, is history)."""
    now = now or datetime.now(UTC)
    statuses = []
    for key in sorted(raw):
        with contextlib.suppress(ValueError, TypeError):
            value = json.loads(raw[key])
            if isinstance(value, dict):
                statuses.append((key, value))
    sharded = {k.partition(SHARD_SUFFIX)[2]: v for k, v in statuses if SHARD_SUFFIX in k}
    if not sharded:
        return next((v for k, v in statuses if k == ENGINE_STATUS_KEY), {})
    live = sorted(label for label, v in sharded.items() if _heard_within(v, fresh_s, now))
    layouts = {label.partition("/")[2] for label in live}
    gone = sorted(label for label in sharded if label not in live and label.partition("/")[2] in layouts)
    newest = max(sharded.values(), key=lambda v: str(v.get("heartbeat") or ""))
    counted = [sharded[label] for label in live] or list(sharded.values())
    ticks = [float(v["tick_ms"]) for v in counted if v.get("tick_ms") is not None]
    rates = [float(v["rows_per_s"]) for v in counted if v.get("rows_per_s") is not None]
    error = next((v["last_error"] for v in counted if v.get("last_error")), None)
    if gone:
        what = "stopped" if all(sharded[g].get("phase") == "stopped" for g in gone) else "silent (stopped or died)"
        error = f"shard {', '.join(gone)} {what}: its devices are not updating" + (f"; {error}" if error else "")
    return {
        **newest,
        "tick_ms": max(ticks) if ticks else None,
        "rows_per_s": sum(rates) if rates else None,
        "ticks": sum(int(v.get("ticks") or 0) for v in sharded.values()),
        "last_error": error,
        "shards": sorted(sharded),
        "live": live,
    }


def snapshot_at(store: Store, settings: Settings, at: datetime, seq: int = -1) -> Snapshot:
    """The fleet as stored at a past moment ``at`` (data time, UTC): each device's
    last reading and score by then, the incidents open then, the validation problems
    seen by then. ``stats.mode`` is "past"."""
    at_naive = at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at
    at_ms = int((at_naive - datetime(1970, 1, 1)).total_seconds() * 1000)
    model_rows = active_models(store)
    open_alerts, recent_closed = alerts_at(store, at_ms)
    devices = fleet_devices(store)
    profiles: dict[str, ProfileState] = {}
    for profile in settings.profiles:
        members = devices.get(profile, [])
        if not members:
            continue
        model = model_rows.get(profile)
        profiles[profile] = ProfileState(
            devices=members,
            latest=readings_at(store, profile, at_ms),
            scores=scores_at(store, profile, at_ms),
            threshold=float(model.threshold) if model is not None else None,
        )
    stats = EngineStats(
        sim_time=at_naive,
        tick_ms=None,
        rows_per_s=None,
        ticks=0,
        model_versions=model_numbers(store, {p: int(m.id) for p, m in model_rows.items() if m.id is not None}),
        paused=False,
        mode="past",
    )
    return build_snapshot(
        settings,
        seq=seq,
        profiles=profiles,
        open_alerts=open_alerts,
        recent_closed=recent_closed,
        reading_anomalies=[],
        injected={},
        validation_alerts=[],
        clock_ms=at_ms,
        stats=stats,
        silenced=silences(store, settings, [d.device_id for p in profiles.values() for d in p.devices], at_ms),
        validation_problems=problems_at(store, at_ms),
    )


async def stop_reader(facade: Any) -> None:
    """Stop a facade that reads the database on a background task (attached, replay):
    cancel its ``_task``, then close its ``store`` off the event loop."""
    if facade._task is not None:
        facade._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await facade._task
        facade._task = None
    if facade.store is not None:
        await asyncio.to_thread(facade.store.close)
        facade.store = None


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
        await stop_reader(self)

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
        except Exception as error:
            self.last_error = f"{datetime.now():%H:%M:%S} refresh failed: {type(error).__name__}: {error}"
            log.exception("attached refresh failed")
            if self._latest is None:
                raise
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

    async def acknowledge(self, alert_id: int, acknowledged: bool = True) -> None:
        await asyncio.to_thread(acknowledge_alert, self._store(), alert_id, acknowledged)
        self._poke()

    async def events(self, limit: int = 300) -> list[EventRow]:
        return await asyncio.to_thread(recent_events, self._store(), limit)

    async def snapshot_at(self, at: datetime) -> Snapshot:
        return await asyncio.to_thread(snapshot_at, self._store(), self.settings, at)

    async def incident_history(self, since: datetime | None = None, until: datetime | None = None) -> list[AnomalyRow]:
        return await asyncio.to_thread(incident_history, self._store(), since, until)

    async def note(self, alert_id: int, text: str) -> None:
        await asyncio.to_thread(set_note, self._store(), alert_id, text)
        self._poke()

    async def mute(self, device_id: str, seconds: float | None, reason: str = "") -> int | None:
        """Mute in data time: from the newest snapshot's clock (the engine's, as stored)."""
        clock = self._latest.stats.sim_time if self._latest is not None else None
        now = (
            None
            if clock is None
            else int((clock.replace(tzinfo=UTC) if clock.tzinfo is None else clock).timestamp() * 1000)
        )
        until = None if seconds is None or now is None else now + int(seconds * 1000)
        await asyncio.to_thread(mute_device, self._store(), device_id, until, reason, now)
        self._poke()
        return until

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
            self._latest = replace(self._latest, stats=replace(self._latest.stats, paused=paused))
        if not paused:
            self._poke()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def device_detail(self, device_id: str, window_s: float = 3600, at: datetime | None = None) -> DeviceDetail:
        if at is not None:
            return await asyncio.to_thread(detail_at, self._store(), self.settings, device_id, window_s, at)
        return await asyncio.to_thread(device_detail, self._store(), self.settings, device_id, window_s)
