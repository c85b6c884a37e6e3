"""The continuous engine: simulate or import, validate, ingest, score, alert, publish.

Why it is built this way:

* **Two layers.** :class:`EngineCore` is synchronous and does the work of one cycle
  (one *tick*): fault commands, simulation of the next interval, inbox CSV files,
  validation and ingestion (:mod:`itap_engine.ingest.pipeline`), streaming features and
  scores (:mod:`itap_engine.detection.scoring`), alerts, and the snapshot. :class:`Engine` is
  the asyncio shell around it: APScheduler 3's ``AsyncIOScheduler`` runs the jobs
  ``tick``, ``retrain`` and ``housekeeping`` (``max_instances=1``, ``coalesce=True``)
  and every call into the core goes through :func:`asyncio.to_thread`, so the event
  loop (and a console drawn on it) never waits for pandas, SQL or scikit-learn.
  ``itap --once`` (:mod:`itap_engine.modes.once`) drives the same core without a loop.
* **State lives in the database.** The simulated clock, the last scored reading of
  each profile, the active model, and operator commands are rows, so a restart
  resumes where the previous process stopped, and a console attached to the same
  database (another process) sees and commands the engine through
  ``fault_command`` rows and the ``command.retrain`` watermark.
* **Idempotent ticks.** The simulated clock advances only after an interval is
  stored; a tick that fails (a bad file, a database locked for longer than the busy
  timeout) leaves the clock where it was, so the next tick simulates the same
  interval again and ``INSERT ... ON CONFLICT DO NOTHING`` keeps whatever had already
  been stored. The error is logged and published in ``stats.last_error``.
* **Scoring follows a watermark.** Each tick scores the readings of a profile newer
  than the profile's scored watermark (and not newer than the simulated clock, for a
  simulated profile), so readings imported from inbox files are scored with the
  simulated ones. Rows imported with timestamps older than the watermark are stored
  but not scored live (``itap score`` scores history in batch).

Watermark keys: ``sim.clock`` (ISO time of the simulated clock), ``scored:<profile>``
(epoch ms of the last scored reading), ``engine.status`` (JSON: the engine's stats,
written each tick for attached consoles), ``command.retrain`` (a retrain request:
``<profile or *> <ISO time>``), ``once.last_wall`` (wall time of the last ``--once``).

Shards (``[engine] shard = "i/N"``, :mod:`itap_engine.engine.shards`): the engine
simulates, scores and commands only its shard's devices, and keeps its clock, scored
watermarks, status and served retrain request under keys suffixed ``@shard:i/N``, so
engines sharing a fleet never move each other's clock. Only shard 0 imports inbox
files; retention goes by the clock furthest behind.

The core is split along the tick's seams: :mod:`~itap_engine.engine.results` (what a
tick gave and its step timings), :mod:`~itap_engine.engine.commands` (fault
commands), :mod:`~itap_engine.engine.inbox` (inbox files),
:mod:`~itap_engine.engine.fleet_view` (the newest reading and score per device, and
the snapshot), :mod:`~itap_engine.engine.history` (the bootstrap history) and
:mod:`~itap_engine.engine.housekeeping` (retention). :class:`EngineCore` holds the
state and runs the steps in order.

Logging goes to the rotating file ``settings.paths.log_file`` only (see
:func:`configure_logging`), never to stdout, where a console draws its screen.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlmodel import select

from itap_engine.config import Settings
from itap_engine.detection.alerts import AlertTracker
from itap_engine.detection.scoring import (
    ModelOutdatedError,
    StreamingScorer,
    TrainedModel,
    insert_scores,
    load_active_model,
    train_model,
    warm_up_span_ms,
)
from itap_engine.engine import housekeeping as _housekeeping
from itap_engine.engine.commands import FaultCommands
from itap_engine.engine.fleet_view import FleetView
from itap_engine.engine.history import simulate_history
from itap_engine.engine.inbox import import_inbox, inbox_files
from itap_engine.engine.results import (
    TICK_STEPS,
    Laps,
    SourceResult,
    TickResult,
    from_ms,
    naive,
    short_error,
    source_result,
    to_ms,
    utcnow,
    validation_rows,
)
from itap_engine.engine.shards import Shard
from itap_engine.errors import ItapError
from itap_engine.ingest.pipeline import IngestRun, abort_dead_runs
from itap_engine.ingest.simulator import Simulator, fleet_simulators
from itap_engine.snapshot import EngineStats, FaultCommandView, ProfileInfo, Progress, Snapshot
from itap_engine.store import schema as models
from itap_engine.store.queries import (
    latest_readings,
    latest_scores,
    model_numbers,
    record_events,
    record_problems,
)
from itap_engine.store.sql import Store
from itap_engine.store.watermarks import (
    RETRAIN_DONE_KEY,
    RETRAIN_REQUEST_KEY,
    SIM_CLOCK_KEY,
    for_shard,
    scored_key,
)

__all__ = ["TICK_STEPS", "EngineCore", "SourceResult", "TickResult"]

log = logging.getLogger(__name__)

CHECKPOINT_TICKS = 10
"""The engine copies the SQLite write-ahead log into the database every this many ticks."""
TICK_RUN_KIND = _housekeeping.TICK_RUN_KIND

# kept for the modules that imported them from here
_utcnow, _short_error, _ms, _from_ms, _naive = utcnow, short_error, to_ms, from_ms, naive


CACHE_KIB_PER_DEVICE = 16
"""SQLite page cache the engine's store gets per simulated device: a tick writes a
readings row and a score row per device, each on its own leaf page (4 KiB), plus the
B-tree pages above them, the device and alert rows."""
MIN_CACHE_KIB = 8192


def engine_cache_kib(settings: Settings) -> int:
    """The SQLite page cache (KiB) of the engine's store: enough to keep the pages a
    tick writes between ticks (:data:`CACHE_KIB_PER_DEVICE` per device of the fleet)."""
    devices = sum(group.devices for group in settings.simulation.fleet)
    return max(MIN_CACHE_KIB, CACHE_KIB_PER_DEVICE * devices)


class _WarningBuffer(logging.Handler):
    """Collects the engine's WARNING+ log records with the simulated clock at that
    moment; the core stores them after each tick (never from inside a log call)."""

    def __init__(self, core: EngineCore) -> None:
        super().__init__(level=logging.WARNING)
        self.core = core
        self.records: collections.deque[tuple[int | None, str, str, str]] = collections.deque(maxlen=500)

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a log record must never break the caller
            clock = self.core.sim_time
            self.records.append(
                (
                    to_ms(clock) if clock is not None else None,
                    record.levelname.lower(),
                    record.name,
                    record.getMessage(),
                )
            )

    def flush_to(self, store: Store) -> None:
        if not self.records:
            return
        records = []
        while self.records:
            records.append(self.records.popleft())
        with contextlib.suppress(Exception):  # no log call here: it would come back to this handler
            record_events(store, records)


# ---------------------------------------------------------------------- the core
class EngineCore:
    """The synchronous work of the engine; every method may block (call it in a thread).

    Args:
        settings: the loaded settings.
        store: an open store (default: one on ``settings.database_url``).
    """

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.shard: Shard | None = Shard.parse(settings.engine.shard) if settings.engine.shard else None
        """The shard of the fleet this engine runs (None: the whole fleet)."""
        # the tick checkpoints the write-ahead log itself, every CHECKPOINT_TICKS ticks
        self.store = store or Store(settings, wal_autocheckpoint=0, cache_kib=engine_cache_kib(settings))
        self.simulators: dict[str, Simulator] = {s.profile_name: s for s in fleet_simulators(settings)}
        if self.shard is not None:
            shard = self.shard
            self.simulators = {
                profile: Simulator(settings, profile, owned)
                for profile, sim in self.simulators.items()
                if (owned := [d for d in sim.device_ids if shard.owns(d)])
            }
        self.clock_key = for_shard(SIM_CLOCK_KEY, self.shard.label if self.shard else None)
        self._owned: dict[str, list[str]] = {}
        self._outdated: set[str] = set()
        """Profiles whose model was made by an older ITAP (said once in the log)."""
        self.commands = FaultCommands(self.store, settings, self.simulators, self._commands)
        self.device_profile: dict[str, str] = self.commands.device_profile
        self.sites: dict[str, str | None] = {}
        for group in settings.simulation.fleet:
            for i, device in enumerate(group.device_ids()):
                self.sites[device] = group.sites[i % len(group.sites)] if group.sites else None
        self.models: dict[str, TrainedModel] = {}
        self._model_numbers: tuple[tuple[tuple[str, int], ...], dict[str, int]] = ((), {})
        self.scorers: dict[str, StreamingScorer] = {}
        self.tracker: AlertTracker | None = None
        self.sim_time: datetime | None = None
        self.scored_ms: dict[str, int] = {}
        self.ticks = 0
        self.last_tick: TickResult | None = None
        self.last_error: str | None = None
        self.view = FleetView()
        # reading back a tick's own rows from memory (see _new_readings)
        self._fresh: dict[str, list[pd.DataFrame]] = {}
        self._covered: dict[str, tuple[int, int]] = {}
        """profile -> (scored watermark, clock) after the last read: every reading up
        to the clock had been read then."""
        self._runs_seen: int | None = None
        self._others_running: set[int] = set()
        self._writers_checked: TickResult | None = None
        self._writers_quiet = False
        self._pending_models: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._swap_lock = threading.Lock()
        self.profile_infos = ProfileInfo.all_of(settings)
        self._warnings = _WarningBuffer(self)
        logging.getLogger("itap_engine").addHandler(self._warnings)

    # ------------------------------------------------------------------ lifecycle
    @property
    def step_s(self) -> float:
        """Simulated seconds one tick covers: ``sim_speed`` x ``tick_seconds``."""
        return self.settings.engine.sim_speed * self.settings.engine.tick_seconds

    def close(self) -> None:
        logging.getLogger("itap_engine").removeHandler(self._warnings)
        self._warnings.flush_to(self.store)
        self.store.close()

    def _key(self, key: str) -> str:
        """A watermark key as this engine keeps it (per shard when sharded)."""
        return for_shard(key, self.shard.label if self.shard else None)

    def owned_devices(self, profile: str) -> list[str] | None:
        """The registered devices of a profile this shard owns (refreshed at each
        call); None when the engine runs the whole fleet."""
        if self.shard is None:
            return None
        shard = self.shard
        owned = [d for d in self.store.device_ids(profile) if shard.owns(d)]
        self._owned[profile] = owned
        return owned

    def needs_bootstrap(self) -> bool:
        """True when there is no simulated clock (an empty database) or a profile lacks a model."""
        if self.store.get_watermark(self.clock_key) is None:
            return True
        return any(self._load_model(p) is None for p in self.simulators)

    def _scored_profiles(self) -> list[str]:
        """Profiles that get a model: the simulated ones and any with stored readings."""
        names = list(self.simulators)
        for name in self.settings.profiles:
            if name not in names and self.store.latest_ts(name) is not None:
                names.append(name)
        return names

    def bootstrap(self, progress: Callable[[Progress], None] | None = None) -> None:
        """Fill an empty database with normal history, then train a model per profile.

        History covers ``detection.bootstrap_hours`` of simulated time from
        ``simulation.start``, with random faults off, for the devices this engine
        simulates (a shard's own devices only). A database that already holds
        readings of them but no clock resumes after their newest reading instead.
        Progress is reported for the stages ``history`` and ``training``.
        """
        report = progress or (lambda _p: None)
        settings = self.settings
        from itap_engine.compute.cluster import open_executor

        with self._lock, open_executor(settings) as executor:
            for group in settings.simulation.fleet:
                self.store.register_devices(group.profile, group.device_ids(), group.sites)
            clock = self.store.get_watermark(self.clock_key)
            if clock is None:
                latest = [t for t in (self._latest_ts(p) for p in self.simulators) if t is not None]
                if latest:
                    end = from_ms(max(latest)) + timedelta(seconds=settings.simulation.freq_s)
                    report(Progress("history", 1.0, "history found in the database"))
                else:
                    devices = {p: sim.device_ids for p, sim in self.simulators.items()}
                    end = simulate_history(self.store, settings, devices, report, executor)
                self.store.set_watermark(self.clock_key, end.isoformat())
                for profile in self.simulators:
                    # History is not scored: the watermark is its last reading (readings
                    # newer than the watermark get scored, and the clock is exclusive).
                    if self.store.get_watermark(self._key(scored_key(profile))) is None:
                        last = self._latest_ts(profile)
                        mark = last if last is not None else to_ms(end) - 1
                        self.store.set_watermark(self._key(scored_key(profile)), str(mark))
            profiles = [p for p in self._scored_profiles() if self._load_model(p) is None]
            for i, profile in enumerate(profiles):
                report(Progress("training", i / max(1, len(profiles)), f"training the {profile} model"))

                def trained(done: int, total: int, i: int = i, profile: str = profile) -> None:
                    share = (i + done / max(1, total)) / max(1, len(profiles))
                    report(Progress("training", share, f"training the {profile} model: {done}/{total} group tasks"))

                try:
                    self._train(profile, executor=executor, progress=trained)
                except ItapError as error:
                    if profile in self.simulators:
                        raise
                    # Imported-only data (e.g. a CSV profile) may be too short to train on:
                    # it is stored and shown, and scored once `itap train` made a model.
                    log.warning("no model for imported profile %s: %s", profile, error)
            report(Progress("training", 1.0, "models ready"))

    def _latest_ts(self, profile: str) -> int | None:
        """The newest stored reading of a profile (of this shard's devices, when sharded)."""
        owned = self.owned_devices(profile)
        return self.store.latest_ts(profile) if owned is None else self.store.latest_device_ts(owned)

    def resume(self) -> None:
        """Load the stored state: clock, scored watermarks, models, active fault commands."""
        with self._lock:
            abort_dead_runs(self.store)
            clock = self.store.get_watermark(self.clock_key)
            self.sim_time = naive(datetime.fromisoformat(clock)) if clock else naive(self.settings.simulation.start)
            now_ms = to_ms(self.sim_time)
            with self.store.session() as session:
                for device in session.exec(select(models.Device)):
                    self.sites.setdefault(device.id, device.site)
            for profile in self._scored_profiles():
                mark = self.store.get_watermark(self._key(scored_key(profile)))
                last = self._latest_ts(profile) if not mark else None
                self.scored_ms[profile] = int(mark) if mark else (last if last is not None else now_ms - 1)
                model = self._load_model(profile)
                if model is not None:
                    self._install(profile, model)
                latest = latest_readings(self.store, profile)
                scores = latest_scores(self.store, profile)
                owned = self.owned_devices(profile)
                if owned is not None:  # sharded: this engine shows its own devices
                    latest = latest[latest.index.isin(owned)] if len(latest) else latest
                    scores = scores[scores.index.isin(owned)]
                self.view.load(profile, latest, scores)
            self.tracker = AlertTracker(self.store, self.settings)
            self.commands.reschedule_active()

    # ------------------------------------------------------------------ models
    def _load_model(self, profile: str) -> TrainedModel | None:
        """The profile's active model; None when there is none or it was made by an older
        ITAP (its features differ): the bootstrap then trains a new one from the stored
        history, as for a profile that never had one."""
        try:
            return load_active_model(self.store, self.settings, profile)
        except ModelOutdatedError as error:
            if profile not in self._outdated:
                self._outdated.add(profile)
                log.warning("%s; training a new one from the stored history", error.what)
            return None

    def _train(
        self,
        profile: str,
        until_ms: int | None = None,
        from_ms: int | None = None,
        *,
        executor: Any = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> TrainedModel:
        """Train a new model version of ``profile`` on its known-good window; with the
        bootstrap's ``executor`` (a cluster), its per-device half runs there
        (:func:`~itap_engine.compute.train.train_profile`), reporting device groups to ``progress``.
        """
        log.info("training %s model (from %s until %s)", profile, from_ms, until_ms)
        if executor is None:
            return train_model(self.store, self.settings, profile, train_until_ms=until_ms, train_from_ms=from_ms)
        from itap_engine.compute.train import train_profile

        return train_profile(
            executor,
            self.store,
            self.settings,
            profile,
            train_until_ms=until_ms,
            train_from_ms=from_ms,
            progress=progress,
        )

    def _warm_history(self, scorer: StreamingScorer, until_ms: int) -> pd.DataFrame:
        span_ms = warm_up_span_ms(scorer.model.features)  # type: ignore[arg-type]
        owned = self.owned_devices(scorer.profile)
        return self.store.read_readings(
            scorer.profile, device_ids=owned, since_ms=until_ms - span_ms, until_ms=until_ms
        )

    def _install(self, profile: str, model: TrainedModel) -> None:
        """Make ``model`` the scorer of ``profile``, warmed up on the readings before the watermark."""
        scorer = StreamingScorer(self.settings, profile, model)
        until = self.scored_ms.get(profile, to_ms(self.sim_time) if self.sim_time else 0)
        history = self._warm_history(scorer, until)
        if len(history):
            scorer.warm_up(history)
        self.models[profile] = model
        self.scorers[profile] = scorer
        log.info("model %s installed for %s", model.version_id, profile)

    def retrain(self, profile: str | None = None) -> dict[str, int | None]:
        """Train new models on recent normal operation; they score from the next tick.

        The window is the last ``detection.bootstrap_hours`` of simulated time before
        the scored watermark. Training runs without the tick lock (it only reads);
        the new model is swapped in at the start of the next tick.
        """
        profiles = [profile] if profile else self._scored_profiles()
        done: dict[str, int | None] = {}
        hours = self.settings.detection.bootstrap_hours
        for name in profiles:
            self.settings.profile(name)
            until = self.scored_ms.get(name) or (to_ms(self.sim_time) if self.sim_time else None)
            since = until - int(hours * 3600 * 1000) if until is not None else None
            model = self._train(name, until_ms=until, from_ms=since)
            with self._swap_lock:
                self._pending_models[name] = model
            done[name] = model.version_id
        return done

    def _swap_models(self) -> None:
        with self._swap_lock:
            pending, self._pending_models = self._pending_models, {}
        for profile, model in pending.items():
            self._install(profile, model)

    # ------------------------------------------------------------------ fault commands
    def inject_fault(
        self, device_ids: Sequence[str], fault: str, severity: float, duration_s: float
    ) -> list[FaultCommandView]:
        """Write one pending ``fault_command`` row per device; the next tick applies them."""
        return self.commands.inject(device_ids, fault, severity, duration_s)

    def _commands(self, device_id: str) -> bool:
        """Whether this engine carries out commands for a device: every engine of an
        unsharded fleet; the owning shard's (it also rejects unknown devices it owns)."""
        return self.shard is None or self.shard.owns(device_id)

    def apply_commands(self) -> list[FaultCommandView]:
        """Pending commands become active (from the current clock) or rejected; ended ones done."""
        assert self.sim_time is not None
        return self.commands.apply(self.sim_time)

    # ------------------------------------------------------------------ the tick
    def check_retrain_request(self) -> str | None:
        """A retrain asked for through ``command.retrain`` and not yet taken: its profile or ``*``.

        Taking it writes the request into ``command.retrain.done``, so a request made
        while no engine ran is carried out by the next one (or the next ``--once``).
        """
        value = self.store.get_watermark(RETRAIN_REQUEST_KEY)
        if value and value != self.store.get_watermark(self._key(RETRAIN_DONE_KEY)):
            self.store.set_watermark(self._key(RETRAIN_DONE_KEY), value)
            return value.split()[0]
        return None

    def tick(self, sim_seconds: float | None = None, *, kind: str = TICK_RUN_KIND, inbox: bool = True) -> TickResult:
        """One cycle: commands, the next simulated interval, inbox files, scores, alerts.

        Raises whatever stops the cycle (the clock then stays where it was); a bad
        inbox file does not raise: it is moved to ``inbox/failed`` and reported in
        :attr:`TickResult.errors`. ``TickResult.timings`` splits it by step
        (:data:`~itap_engine.engine.results.TICK_STEPS`).
        """
        with self._lock:
            return self._tick(self.step_s if sim_seconds is None else sim_seconds, kind, inbox)

    def _tick(self, sim_seconds: float, kind: str, inbox: bool) -> TickResult:
        assert self.sim_time is not None, "resume() first"
        laps = Laps()
        self._fresh = {}
        self._swap_models()
        self.apply_commands()
        result = TickResult(self.sim_time, self.sim_time + timedelta(seconds=sim_seconds))
        result.retrain_requested = self.check_retrain_request()
        laps.lap("commands")

        self._simulate_and_ingest(result, kind, laps)
        if inbox and (self.shard is None or self.shard.index == 0):  # one shard imports files
            import_inbox(self.store, self.settings, result, self.sim_time)
            laps.lap("inbox")
        t1 = result.sim_to
        self.sim_time = t1
        self.store.set_watermark(self.clock_key, t1.isoformat())
        laps.lap("clock")
        record_problems(self.store, result.validation_alerts, to_ms(t1))  # one per (device, signal, check)
        laps.lap("problems")

        self._score(result, to_ms(t1), laps)
        self._warnings.flush_to(self.store)  # the tick's warnings, for the events view
        laps.lap("events")
        self.ticks += 1
        timings = laps.timings
        timings["total"] = time.perf_counter() - laps.started
        if self.ticks % CHECKPOINT_TICKS == 0:
            began = time.perf_counter()
            self.store.checkpoint()
            timings["checkpoint"] = time.perf_counter() - began  # after the tick's work: not in its total
        result.timings = timings
        self.last_tick = result
        if result.errors:
            self.last_error = result.errors[-1]
        return result

    def _simulate_and_ingest(self, result: TickResult, kind: str, laps: Laps) -> None:
        """Simulate the tick's interval per profile; validate and store it as one run each."""
        t0, t1 = result.sim_from, result.sim_to
        for profile, sim in self.simulators.items():
            frame = sim.generate(t0, t1)
            laps.lap("simulate")
            if len(frame):
                run = IngestRun(
                    self.store, self.settings, profile, kind=kind, source=f"sim:{profile}", now=t1, reap=False
                )
                run.kept = [] if self.store.is_sqlite else None
                with run:  # as ingest_frame does, keeping the rows stored
                    assert run.validator is not None
                    run.validator.raw_names = {}
                    run.add(frame)
                report = run.report
                if run.kept is not None:
                    self._fresh[profile] = run.kept
                result.sources.append(source_result(report, f"sim:{profile}", profile))
                result.validation_alerts.extend(validation_rows(report))
                laps.add(report.timings)
            laps.skip()  # the ingest's own timings split its time

    # ------------------------------------------------------------------ inbox
    def inbox_files(self) -> list[Path]:
        return inbox_files(self.settings)

    # ------------------------------------------------------------------ scoring
    def _score(self, result: TickResult, clock_ms: int, laps: Laps) -> None:
        """Score what is new per profile: read, score (features + detector), store the
        scores, alerts (the incident tracker), the fleet view, the scored watermark."""
        self.view.start_tick()
        marks: dict[str, str] = {}
        for profile, scorer in self.scorers.items():
            laps.skip()
            since = self.scored_ms.get(profile, clock_ms)
            until = clock_ms if profile in self.simulators else None
            owned = self.owned_devices(profile)
            readings = self._new_readings(profile, since, until, owned, result)
            laps.lap("read")
            if until is not None:
                # every reading of (since, until] was read now (none newer than what is scored next)
                self._covered[profile] = (int(readings["ts"].max()) if len(readings) else since, until)
            if readings.empty:
                continue
            self.view.readings(profile, readings)
            laps.lap("fleet_view")
            scored = scorer.score(readings)
            laps.lap("score")
            newest = int(readings["ts"].max())
            if scored is None or len(scored) == 0:
                self.scored_ms[profile] = newest
                marks[self._key(scored_key(profile))] = str(newest)
                continue
            insert_scores(self.store, profile, scored)
            laps.lap("store_scores")
            changes = self.tracker.update(profile, scored)  # type: ignore[union-attr]
            laps.lap("alerts")
            result.opened.extend(changes.opened)
            result.updated.extend(changes.updated)
            result.closed.extend(changes.closed)
            result.scored += len(scored)
            result.scored_by_profile[profile] = result.scored_by_profile.get(profile, 0) + len(scored)
            self.view.scores(profile, scored)
            self.scored_ms[profile] = newest
            marks[self._key(scored_key(profile))] = str(newest)
            laps.lap("fleet_view")
        laps.skip()
        self.store.set_watermarks(marks)
        laps.lap("watermarks")

    def _new_readings(
        self, profile: str, since: int, until: int | None, owned: list[str] | None, result: TickResult
    ) -> pd.DataFrame:
        """The readings of ``(since, until]`` to score: on SQLite, when this tick stored
        all of them itself (its simulated interval, stored as it is) and nothing else can
        have (the window before it was read whole by the tick before; no inbox rows for
        the profile; no other writer's run since the last look), the tick's own rows in
        the form the read gives; otherwise read from the database."""
        fresh = self._fresh.pop(profile, None)
        t0 = to_ms(result.sim_from)
        if (
            fresh
            and until is not None
            and self._covered.get(profile) == (since, t0)
            and not any(s.profile == profile and s.source != f"sim:{profile}" for s in result.sources)
            and self._no_other_writer(result)
        ):
            frame = fresh[0] if len(fresh) == 1 else pd.concat(fresh, ignore_index=True)
            if owned is not None:
                frame = frame[frame["device_id"].isin(owned)]
            return self.store.readings_like_read(profile, frame, since_ms=since, until_ms=until)
        return self.store.read_readings(profile, device_ids=owned, since_ms=since, until_ms=until)

    def _no_other_writer(self, result: TickResult) -> bool:
        """Whether no run but this engine's stored anything since the last look, none
        is running now, and none was running at the last look (its rows may have come
        after that tick's read). Every writer of readings stores them in a run
        (:class:`~itap_engine.ingest.pipeline.IngestRun`). Looked at once per tick."""
        if self._writers_checked is result:
            return self._writers_quiet
        ours = {s.run_id for s in result.sources if s.run_id is not None}
        table = models.Run.__table__  # type: ignore[attr-defined]
        first = self._runs_seen is None
        with self.store.engine.connect() as conn:
            if first:
                where = table.c.status == "running"
                newest = conn.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0
            else:
                where = table.c.id > self._runs_seen
                if self._others_running:
                    where = sa.or_(where, table.c.id.in_(sorted(self._others_running)))
            rows = [
                (int(i), str(status)) for i, status in conn.execute(sa.select(table.c.id, table.c.status).where(where))
            ]
        seen = self._runs_seen or 0
        new_others = [i for i, _ in rows if i > seen and i not in ours]
        running = {i for i, status in rows if status == "running" and i not in ours}
        quiet = not first and not new_others and not running and not self._others_running
        self._others_running = running
        self._runs_seen = max([newest if first else seen, *(i for i, _ in rows)])
        self._writers_checked, self._writers_quiet = result, quiet
        return quiet

    # ------------------------------------------------------------------ housekeeping
    def housekeeping(self) -> dict[str, int]:
        """Delete old readings and scores (see :func:`itap_engine.engine.housekeeping.expire`)."""
        if self.sim_time is None:
            return {}
        return _housekeeping.expire(self.store, self.settings, self.sim_time, self.device_profile, self.shard)

    # ------------------------------------------------------------------ snapshot
    def snapshot(self, seq: int, stats: EngineStats) -> Snapshot:
        """An immutable picture of the fleet after the last tick."""
        return self.view.snapshot(
            self.store,
            self.settings,
            seq=seq,
            stats=stats,
            simulated={p: sim.device_ids for p, sim in self.simulators.items()},
            sites=self.sites,
            models=self.models,
            clock_ms=to_ms(self.sim_time) if self.sim_time else None,
        )

    def model_versions(self) -> dict[str, int]:
        """profile -> its active model's number among the profile's versions (v1, v2, ...),
        looked up again only when a model changes."""
        ids = {p: m.version_id for p, m in self.models.items()}
        key = tuple(sorted(ids.items()))
        if self._model_numbers[0] != key:
            self._model_numbers = (key, model_numbers(self.store, ids))
        return dict(self._model_numbers[1])
