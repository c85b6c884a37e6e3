"""The console's engine in this process: :class:`LocalFacade` runs the
:class:`~itap_engine.engine.service.Engine` on the caller's asyncio loop (the
console's, for ``itap``); snapshots come from the engine after each tick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from itap_engine.config import Settings
from itap_engine.detection.alerts import acknowledge_alert, mute_device
from itap_engine.engine.core import EngineCore
from itap_engine.engine.service import Engine
from itap_engine.errors import ItapError
from itap_engine.snapshot.dto import (
    AnomalyRow,
    DeviceDetail,
    EventRow,
    FaultCommandView,
    Progress,
    Snapshot,
    Subscriber,
)
from itap_engine.store.queries import (
    device_detail,
    incident_history,
    recent_events,
    set_note,
)
from itap_engine.store.sql import datetime_to_ms

log = logging.getLogger(__name__)


class LocalFacade:
    """The engine in this process, on the caller's event loop (``itap`` / ``itap console``).

    Args:
        settings: the loaded settings.
        lock: take the database's run lock (default True; one writer at a time).
        purpose: who holds the lock, as a refused second run names it.
    """

    mode = "live"

    def __init__(
        self, settings: Settings, *, lock: bool = True, schedule: bool = True, purpose: str = "the itap console"
    ) -> None:
        self.settings = settings
        self.engine = Engine(settings, lock=lock, schedule=schedule, purpose=purpose)

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

    async def acknowledge(self, alert_id: int, acknowledged: bool = True) -> None:
        await asyncio.to_thread(acknowledge_alert, self._core().store, alert_id, acknowledged)
        await self.engine.refresh()

    async def events(self, limit: int = 300) -> list[EventRow]:
        return await asyncio.to_thread(recent_events, self._core().store, limit)

    async def incident_history(self, since: datetime | None = None, until: datetime | None = None) -> list[AnomalyRow]:
        return await asyncio.to_thread(incident_history, self._core().store, since, until)

    async def snapshot_at(self, at: datetime) -> Snapshot:
        from itap_engine.facade.attached import snapshot_at

        return await asyncio.to_thread(snapshot_at, self._core().store, self.settings, at)

    async def note(self, alert_id: int, text: str) -> None:
        await asyncio.to_thread(set_note, self._core().store, alert_id, text)
        await self.engine.refresh()

    async def mute(self, device_id: str, seconds: float | None, reason: str = "") -> int | None:
        """Mute in data time: ``seconds`` from the simulated clock."""
        core = self._core()
        until = clock = None
        if core.sim_time is not None:
            clock = datetime_to_ms(core.sim_time)
            until = None if seconds is None else clock + int(seconds * 1000)
        await asyncio.to_thread(mute_device, core.store, device_id, until, reason, clock)
        await self.engine.refresh()
        return until

    async def retrain(self, profile: str | None = None) -> Mapping[str, int | None] | None:
        done = await self.engine.retrain(profile)
        if done is None:
            return None
        from itap_engine.store.queries import model_numbers

        ids = {p: v for p, v in done.items() if v is not None}
        numbers = await asyncio.to_thread(model_numbers, self._core().store, ids)
        return {p: numbers.get(p) for p in done}

    def set_paused(self, paused: bool) -> None:
        self.engine.set_paused(paused)

    async def device_detail(self, device_id: str, window_s: float = 3600, at: datetime | None = None) -> DeviceDetail:
        core = self._core()
        if at is not None:
            from itap_engine.facade.past import detail_at

            return await asyncio.to_thread(detail_at, core.store, self.settings, device_id, window_s, at)
        return await asyncio.to_thread(device_detail, core.store, self.settings, device_id, window_s)
