"""The engine on asyncio: APScheduler 3 jobs around an :class:`~itap_engine.engine.core.EngineCore`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import logging.handlers
import os
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from itap_engine.config import Settings
from itap_engine.engine.core import EngineCore, TickResult
from itap_engine.engine.logs import configure_logging
from itap_engine.engine.results import short_error as _short_error
from itap_engine.engine.results import utcnow as _utcnow
from itap_engine.errors import ItapError
from itap_engine.snapshot import (
    EngineStats,
    FaultCommandView,
    Progress,
    Snapshot,
    SnapshotPublisher,
)
from itap_engine.store.run_lock import RunLock
from itap_engine.store.watermarks import (
    ENGINE_STATUS_KEY,
    for_shard,
)

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------- the engine
Subscriber = Callable[[Snapshot], None]


T = TypeVar("T")

STOP_GRACE_S = 2.0
"""How long stopping waits for a running tick before leaving it to end on its thread."""


class Engine(SnapshotPublisher):
    """The engine on asyncio: scheduled jobs around an :class:`EngineCore`.

    Subscribers and progress callbacks are always called on the event loop's thread.

    Args:
        settings: the loaded settings.
        lock: take the database's run lock (one writer of the timeline); a sharded
            engine (``[engine] shard``) takes its shard's database lock instead,
            waiting while another engine holds it.
        schedule: run the jobs on APScheduler; False leaves ticking to the caller
            (:meth:`tick_now`), as tests and benchmarks do.
        purpose: who holds the run lock, as a refused second run names it.
    """

    def __init__(
        self, settings: Settings, *, lock: bool = True, schedule: bool = True, purpose: str = "itap engine"
    ) -> None:
        self.settings = settings
        self.core: EngineCore | None = None
        self.paused = False
        self.phase = "starting"
        self.seq = 0
        self.last_error: str | None = None
        self.tick_ms: float | None = None
        self.rows_per_s: float | None = None
        self.tick_durations_ms: list[float] = []
        self._schedule = schedule
        self._lock = RunLock(settings, purpose) if lock and not settings.engine.shard else None
        self._shard_lock: Any = None
        self.on_shard_wait: Callable[[], None] | None = None
        """Called (from a worker thread) once the shard's lock is found held by another engine."""
        self._take_shard_lock = lock and bool(settings.engine.shard)
        self._stopping = False
        SnapshotPublisher.__init__(self)
        self._scheduler: Any = None
        self._tick_lock: asyncio.Lock | None = None
        self._retrain_lock: asyncio.Lock | None = None
        self._busy = 0
        self._idle: asyncio.Event | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.stop_grace_s = STOP_GRACE_S
        """How long :meth:`stop` waits for a running tick before leaving it behind."""
        self._threads = 0
        self._threads_lock = threading.Lock()
        self._left: EngineCore | None = None
        self.left_running = False
        """True when the last :meth:`stop` left a tick running on its thread."""

    # ------------------------------------------------------------------ lifecycle
    async def start(self, progress: Callable[[Progress], None] | None = None) -> None:
        """Open (bootstrapping an empty database), publish a first snapshot, start the jobs."""
        configure_logging(self.settings)
        loop = asyncio.get_running_loop()
        self._tick_lock = asyncio.Lock()
        self._retrain_lock = asyncio.Lock()
        self._idle = asyncio.Event()
        self._idle.set()
        if self._lock is not None:
            await asyncio.to_thread(self._lock.acquire)
        try:
            if self._take_shard_lock:
                await asyncio.to_thread(self._acquire_shard_lock)
            self.core = await asyncio.to_thread(EngineCore, self.settings)
            if await asyncio.to_thread(self.core.needs_bootstrap):
                self.phase = "bootstrapping"
                log.info("bootstrapping %s", self.core.store.safe_url)

                def report(p: Progress) -> None:
                    if progress is not None:
                        loop.call_soon_threadsafe(progress, p)

                await asyncio.to_thread(self._bootstrap, self.core, report)
            await asyncio.to_thread(self.core.resume)
        except BaseException:
            if self.core is not None:
                self.core.close()
            if self._lock is not None:
                self._lock.release()
            if self._shard_lock is not None:
                self._shard_lock.close()
            raise
        self.phase = "running"
        await self._publish()
        log.info("engine started at simulated %s", self.core.sim_time)
        if self._schedule:
            self._start_scheduler()

    def _acquire_shard_lock(self) -> None:
        """Hold this shard's database lock, waiting while another engine holds it (it
        frees when that engine stops or dies: its connection closes)."""
        from itap_engine.engine.shards import Shard
        from itap_engine.store.run_lock import ShardLocks

        shard = Shard.parse(str(self.settings.engine.shard))
        lock = ShardLocks(self.settings.database_url, shard.lock_name, shard.index, shard.count)

        def waiting() -> None:
            self.phase = "waiting for shard"
            log.warning("shard %s is held by another engine; waiting to take it over", shard.label)
            if self.on_shard_wait is not None:
                self.on_shard_wait()

        lock.acquire(wait=True, on_wait=waiting, stop=lambda: self._stopping)  # closes itself on failure
        log.info("holding shard %s", shard.label)
        self._shard_lock = lock

    def _bootstrap(self, core: EngineCore, report: Callable[[Progress], None]) -> None:
        """Bootstrap; sharded engines one at a time: each simulates its own devices'
        history, the first also trains the profile's model (on the history stored by
        then), the next ones find it."""
        if self._shard_lock is None:
            core.bootstrap(report)
            return
        from itap_engine.store.run_lock import DatabaseLock

        with DatabaseLock(self.settings.database_url, "itap.bootstrap"):
            core.bootstrap(report)

    def _start_scheduler(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        e = self.settings.engine
        scheduler = AsyncIOScheduler(timezone=UTC, event_loop=asyncio.get_running_loop())
        common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        scheduler.add_job(
            self._job_tick,
            "interval",
            seconds=e.tick_seconds,
            id="tick",
            name="tick",
            next_run_time=datetime.now(UTC),
            **common,
        )
        scheduler.add_job(
            self._job_retrain, "interval", minutes=e.retrain_minutes, id="retrain", name="retrain", **common
        )
        scheduler.add_job(
            self._job_housekeeping,
            "interval",
            minutes=e.housekeeping_minutes,
            id="housekeeping",
            name="housekeeping",
            next_run_time=datetime.now(UTC) + timedelta(seconds=5),
            **common,
        )
        scheduler.start(paused=False)
        if self.paused:
            scheduler.pause_job("tick")
        self._scheduler = scheduler

    def request_stop(self) -> None:
        """Ask a start that is still waiting for its shard to give up."""
        self._stopping = True

    async def stop(self) -> None:
        """Stop the jobs, write the status, close the database, release the lock.

        A running tick gets :attr:`stop_grace_s` to finish. A longer one (a 10,000
        device tick under load takes tens of seconds) is left on its own daemon
        thread, so the caller returns now and the process can exit: the tick's thread
        closes the store and releases the lock when it ends, and if the process exits
        first the database rolls back the transaction it had open and frees the lock
        with its connection. Each of the tick's writes is one transaction; a tick cut
        short resumes as after a crash (the clock watermark moves only after the
        interval is stored, and a stored interval is inserted again without conflict).
        """
        if self.core is None:
            return
        self.phase = "stopping"  # a job that starts now returns at once
        if self._scheduler is not None:
            self._scheduler.pause()
        if self._idle is not None and not self._idle.is_set():
            # let the running tick finish first: shutting the scheduler down cancels its
            # task, while the tick's thread would go on writing into a closing store
            try:
                await asyncio.wait_for(self._idle.wait(), self.stop_grace_s)
            except TimeoutError:
                with self._threads_lock:
                    in_thread = self._threads
                if not in_thread:  # a short step in a worker thread: wait for it as before
                    await self._idle.wait()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        core, self.core = self.core, None
        self.phase = "stopped"
        with self._threads_lock:
            self.left_running = self._threads > 0
            if self.left_running:
                self._left = core  # the last thread out closes it
        if self.left_running:
            log.warning("stopped during a tick: it ends on its own thread, which then closes the store")
            return
        await asyncio.to_thread(self._close, core)

    def _close(self, core: EngineCore) -> None:
        try:
            self._write_status(core)
        except Exception:
            log.exception("could not write the final engine status")
        try:
            core.close()
        finally:
            if self._lock is not None:
                self._lock.release()
            if self._shard_lock is not None:
                self._shard_lock.close()
                self._shard_lock = None
        log.info("engine stopped after %d ticks", core.ticks)

    def _in_thread(self, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``function(*args)`` on a daemon thread (a tick, a snapshot): unlike
        ``asyncio.to_thread``, whose pool the interpreter joins at exit, it cannot keep
        the process alive after :meth:`stop` left it running."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._threads_lock:
            self._threads += 1

        def settle(result: Any, error: BaseException | None) -> None:
            if future.cancelled():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        def run() -> None:
            result: Any = None
            error: BaseException | None = None
            try:
                result = function(*args)
            except BaseException as raised:  # handed to the awaiting task
                error = raised
            finally:
                with self._threads_lock:
                    self._threads -= 1
                    left = self._left if self._threads == 0 else None
                    if left is not None:
                        self._left = None
                if left is not None:
                    self._close(left)
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(settle, result, error)

        threading.Thread(target=run, name="itap-engine-work", daemon=True).start()
        return future

    # ------------------------------------------------------------------ subscribers
    async def refresh(self) -> None:
        """Publish a fresh snapshot now (after an operator command)."""
        await self._publish()

    def _stats(self) -> EngineStats:
        core = self.core
        return EngineStats(
            sim_time=core.sim_time if core else None,
            tick_ms=self.tick_ms,
            rows_per_s=self.rows_per_s,
            ticks=core.ticks if core else 0,
            model_versions=core.model_versions() if core else {},
            paused=self.paused,
            mode="live",
            last_error=self.last_error,
            phase=self.phase,
        )

    def _write_status(self, core: EngineCore) -> None:
        payload = {
            "pid": os.getpid(),
            "heartbeat": _utcnow().isoformat(timespec="seconds"),
            "sim_time": core.sim_time.isoformat() if core.sim_time else None,
            "tick_ms": self.tick_ms,
            "rows_per_s": self.rows_per_s,
            "ticks": core.ticks,
            "last_error": self.last_error,
            "phase": self.phase,
            "paused": self.paused,
        }
        if core.shard is not None:
            payload["shard"] = core.shard.label
        core.store.set_watermark(
            for_shard(ENGINE_STATUS_KEY, core.shard.label if core.shard else None), json.dumps(payload)
        )

    def _snapshot_work(self, core: EngineCore, seq: int, stats: EngineStats) -> Snapshot:
        self._write_status(core)
        return core.snapshot(seq, stats)

    async def _publish(self) -> None:
        core = self.core
        if core is None:
            return
        self.seq += 1
        try:
            snapshot = await self._in_thread(self._snapshot_work, core, self.seq, self._stats())
        except Exception as error:
            self.last_error = self._error_text("snapshot", error)
            if self._latest is None:
                raise
            snapshot = replace(self._latest, seq=self.seq, created_at=_utcnow(), stats=self._stats())
        self._deliver(snapshot)

    def _error_text(self, what: str, error: BaseException) -> str:
        stamp = datetime.now().strftime("%H:%M:%S")
        text = f"{stamp} {what} failed: {_short_error(error)}"
        log.error("%s", text, exc_info=error)
        return text

    # ------------------------------------------------------------------ jobs
    @contextlib.asynccontextmanager
    async def _work(self) -> Any:
        """Counts work in flight, so :meth:`stop` can wait for it to finish."""
        assert self._idle is not None
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._idle.set()

    async def _job_tick(self) -> None:
        if self.paused or self.phase != "running":
            return
        await self.tick_now()

    async def tick_now(self, sim_seconds: float | None = None) -> TickResult | None:
        """Run one tick now (the scheduled job calls this); None when the tick failed."""
        core = self.core
        if core is None or self._tick_lock is None:
            return None
        if self._lock is not None and self._lock.lost:  # another run took the database's lock: stop writing
            self.last_error = "the run lock was taken over by another run; ticks stopped (restart the engine)"
            await self._publish()
            return None
        async with self._work(), self._tick_lock:
            if self._shard_lock is not None and not await asyncio.to_thread(self._hold_shard):
                self.last_error = self._error_text(
                    "tick", ItapError("lost the shard lock; not ticking until it is back")
                )
                await self._publish()
                return None
            try:
                result = await self._in_thread(core.tick, sim_seconds)
            except Exception as error:
                self.last_error = self._error_text("tick", error)
                await self._publish()
                return None
            seconds = result.seconds
            self.tick_ms = seconds * 1000
            self.tick_durations_ms.append(self.tick_ms)
            del self.tick_durations_ms[:-1000]
            self.rows_per_s = result.inserted / seconds if seconds > 0 else None
            if result.errors:
                self.last_error = f"{datetime.now():%H:%M:%S} {result.errors[-1]}"
            await self._publish()
        if result.retrain_requested:
            profile = None if result.retrain_requested == "*" else result.retrain_requested
            task = asyncio.create_task(self.retrain(profile))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return result

    def _hold_shard(self) -> bool:
        """Whether this engine still holds its shard (retaking it if its connection
        dropped and no other engine took it meanwhile)."""
        lock = self._shard_lock
        return lock.check() or lock.try_acquire()

    async def _job_retrain(self) -> None:
        await self.retrain()

    async def retrain(self, profile: str | None = None) -> dict[str, int | None]:
        """Train new models now (in a thread); they score from the next tick."""
        core = self.core
        if core is None or self._retrain_lock is None:
            return {}
        async with self._work(), self._retrain_lock:
            try:
                return await asyncio.to_thread(core.retrain, profile)
            except Exception as error:
                self.last_error = self._error_text("retrain", error)
                return {}

    async def _job_housekeeping(self) -> None:
        await self.housekeeping()

    async def housekeeping(self) -> dict[str, int]:
        core = self.core
        if core is None or self._tick_lock is None:
            return {}
        async with self._work(), self._tick_lock:
            try:
                return await asyncio.to_thread(core.housekeeping)
            except Exception as error:
                self.last_error = self._error_text("housekeeping", error)
                return {}

    # ------------------------------------------------------------------ commands
    async def inject_fault(
        self, device_ids: list[str], fault: str, severity: float, duration_s: float
    ) -> list[FaultCommandView]:
        """Schedule an operator fault on devices; it takes effect from the next tick."""
        if self.core is None:
            raise ItapError("the engine is not running")
        return await asyncio.to_thread(self.core.inject_fault, device_ids, fault, severity, duration_s)

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        if self._scheduler is not None:
            (self._scheduler.pause_job if paused else self._scheduler.resume_job)("tick")
        if self._latest is not None:
            self._latest = replace(self._latest, stats=self._stats())
