"""``itap replay``: stored history played through the console, never written to.

:class:`ReplayFacade` is an :class:`~itap_engine.snapshot.dto.EngineFacade` over a
:class:`~itap_engine.store.readonly.ReadOnlyStore`. Its clock walks from ``start`` to
``end`` (data time) at ``speed`` data seconds per wall second; every step publishes
the fleet as stored at the replay clock, with the time-travel assembler
(:func:`~itap_engine.facade.attached.snapshot_at`): each device's last reading and
score by then, the incidents open then (as stored), the validation problems seen by
then. ``stats.mode`` is ``"replay"`` and ``stats.replay`` says where it is.

Keys reach it as :meth:`set_paused`, :meth:`step`, :meth:`faster` and :meth:`slower`.
Every command that would write (faults, acknowledgements, notes, mutes, retrains)
is refused with one line; the store could not carry them out anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from itap_engine.config import Settings
from itap_engine.errors import ItapError
from itap_engine.facade.attached import snapshot_at, stop_reader
from itap_engine.facade.past import detail_at
from itap_engine.snapshot.dto import (
    AnomalyRow,
    DeviceDetail,
    EventRow,
    FaultCommandView,
    Progress,
    ReplayClock,
    Snapshot,
    SnapshotPublisher,
)
from itap_engine.store.queries import incident_history, recent_events
from itap_engine.store.readonly import ReadOnlyStore, stored_span

log = logging.getLogger(__name__)

SPEEDS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""The speeds ``+`` and ``-`` step through (data seconds per wall second)."""


class ReplayError(ItapError):
    """A replay that cannot start: bad interval, nothing stored in it."""


class ReadOnlyReplay(ItapError):
    """A command that would write, refused during a replay."""


def _ms(value: datetime) -> int:
    return int((value - datetime(1970, 1, 1)).total_seconds() * 1000)


def check_interval(start: datetime, end: datetime, span: tuple[datetime, datetime] | None) -> None:
    """Refuse an interval that is empty or holds no stored reading (one line).

    Raises:
        ReplayError: ``start`` is not before ``end``, nothing is stored, or the
            interval misses the stored readings.
    """
    if start >= end:
        raise ReplayError(f"--from {start:%Y-%m-%d %H:%M:%S} is not before --to {end:%Y-%m-%d %H:%M:%S}")
    if span is None:
        raise ReplayError("no readings are stored: nothing to replay (run itap or itap --once first)")
    first, last = span
    if end < first or start > last:
        raise ReplayError(
            f"nothing stored between {start:%Y-%m-%d %H:%M:%S} and {end:%Y-%m-%d %H:%M:%S}; "
            f"readings cover {first:%Y-%m-%d %H:%M:%S} .. {last:%Y-%m-%d %H:%M:%S} (UTC, data time)"
        )


def read_span(settings: Settings) -> tuple[datetime, datetime] | None:
    """The first and last stored reading (data time), read-only; None if none."""
    store = ReadOnlyStore(settings)
    try:
        return stored_span(store)
    finally:
        store.close()


class ReplayFacade(SnapshotPublisher):
    """Plays ``[start, end]`` of stored history; never writes.

    Args:
        settings: the loaded settings (the database URL and the profiles).
        start, end: the interval, data time (naive UTC).
        speed: data seconds per wall second.
        interval_s: wall seconds between two frames.
    """

    mode = "replay"

    def __init__(
        self, settings: Settings, start: datetime, end: datetime, *, speed: float = 60.0, interval_s: float = 1.0
    ) -> None:
        SnapshotPublisher.__init__(self)
        self.settings = settings
        self.start_at = start
        self.end_at = end
        self.clock = start
        self.speed = float(speed)
        self.interval_s = interval_s
        self.paused = False
        self.store: ReadOnlyStore | None = None
        self.seq = 0
        self._dirty = True
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self, progress: Callable[[Progress], None] | None = None) -> None:
        if progress is not None:
            progress(Progress("replay", 0.0, "opening the database read-only"))
        self.store = await asyncio.to_thread(ReadOnlyStore, self.settings)
        span = await asyncio.to_thread(stored_span, self.store)
        check_interval(self.start_at, self.end_at, span)
        await self._publish()
        if progress is not None:
            progress(Progress("replay", 1.0, "replaying"))
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await stop_reader(self)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            woken = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
                woken = True
            self._wake.clear()
            if not woken and not self.paused:
                self.advance(self.speed * self.interval_s)
            if self._dirty:
                await self._publish()

    # ------------------------------------------------------------------ the clock
    @property
    def ended(self) -> bool:
        return self.clock >= self.end_at

    def advance(self, seconds: float) -> None:
        """Move the replay clock forward, stopping (paused) at the end."""
        self.clock = min(self.end_at, self.clock + timedelta(seconds=seconds))
        if self.ended:
            self.paused = True
        self._dirty = True

    def step(self) -> datetime:
        """Pause, and move one frame forward (``speed`` x ``interval_s`` data seconds)."""
        self.paused = True
        if not self.ended:
            self.advance(self.speed * self.interval_s)
        self._dirty = True
        self._poke()
        return self.clock

    def faster(self) -> float:
        self.speed = next((s for s in SPEEDS if s > self.speed), SPEEDS[-1])
        self._dirty = True
        self._poke()
        return self.speed

    def slower(self) -> float:
        self.speed = next((s for s in reversed(SPEEDS) if s < self.speed), SPEEDS[0])
        self._dirty = True
        self._poke()
        return self.speed

    def set_paused(self, paused: bool) -> None:
        """Pause or play; playing at the end starts again from the beginning."""
        if not paused and self.ended:
            self.clock = self.start_at
        self.paused = paused
        self._dirty = True
        self._poke()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _store(self) -> ReadOnlyStore:
        if self.store is None:
            raise ItapError("the replay is not open: call start() first")
        return self.store

    async def _publish(self) -> None:
        self._dirty = False
        self.seq += 1
        snapshot = await asyncio.to_thread(snapshot_at, self._store(), self.settings, self.clock, self.seq)
        stats = replace(
            snapshot.stats,
            mode="replay",
            paused=self.paused,
            replay=ReplayClock(self.start_at, self.end_at, self.speed, self.ended),
        )
        self._deliver(replace(snapshot, stats=stats))

    # ------------------------------------------------------------------ reads
    async def snapshot_at(self, at: datetime) -> Snapshot:
        return await asyncio.to_thread(snapshot_at, self._store(), self.settings, at)

    async def events(self, limit: int = 300) -> list[EventRow]:
        """The events by the replay clock (those with a data time after it are left out)."""
        rows = await asyncio.to_thread(recent_events, self._store(), max(limit, 1000))
        clock = _ms(self.clock)
        return [r for r in rows if r.ts is None or r.ts <= clock][:limit]

    async def incident_history(self, since: datetime | None = None, until: datetime | None = None) -> list[AnomalyRow]:
        """The incidents by the replay clock (none opened after it; open then if closed after)."""
        end = self.clock if until is None else min(until, self.clock)
        return await asyncio.to_thread(incident_history, self._store(), since, end)

    async def device_detail(self, device_id: str, window_s: float = 3600, at: datetime | None = None) -> DeviceDetail:
        """The device's drill-down over the ``window_s`` before the replay clock (or ``at``, if earlier)."""
        end = self.clock if at is None else min(at, self.clock)
        return await asyncio.to_thread(detail_at, self._store(), self.settings, device_id, window_s, end)

    # ------------------------------------------------------------------ writes: refused
    def _refuse(self, what: str) -> ReadOnlyReplay:
        return ReadOnlyReplay(f"a replay is read-only: cannot {what} (run itap or itap console --attach for that)")

    async def inject_fault(
        self, device_ids: list[str], fault: str, severity: float, duration_s: float
    ) -> list[FaultCommandView]:
        raise self._refuse("inject a fault")

    async def acknowledge(self, alert_id: int, acknowledged: bool = True) -> None:
        raise self._refuse("acknowledge an incident")

    async def note(self, alert_id: int, text: str) -> None:
        raise self._refuse("note an incident")

    async def mute(self, device_id: str, seconds: float | None, reason: str = "") -> int | None:
        raise self._refuse("mute a device")

    async def retrain(self, profile: str | None = None) -> Mapping[str, int | None] | None:
        raise self._refuse("retrain")
