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

Logging goes to the rotating file ``settings.paths.log_file`` only (see
:func:`configure_logging`), never to stdout, where a console draws its screen.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import logging.handlers
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlmodel import select

from itap_engine.config import Settings
from itap_engine.detection.alerts import AlertTracker
from itap_engine.detection.scoring import (
    StreamingScorer,
    TrainedModel,
    insert_scores,
    load_active_model,
    train_model,
    warm_up_span_ms,
)
from itap_engine.engine.shards import Shard
from itap_engine.errors import ItapError
from itap_engine.ingest import csv_source as csv_import
from itap_engine.ingest.pipeline import IngestReport, abort_dead_runs, ingest_frame
from itap_engine.ingest.simulator import FaultEvent, Simulator, fleet_simulators
from itap_engine.snapshot import (
    AnomalyRow,
    EngineStats,
    FaultCommandView,
    ProfileInfo,
    Progress,
    Snapshot,
    ValidationAlertRow,
)
from itap_engine.snapshot.assemble import (
    MAX_TOP_ANOMALIES,
    FleetDevice,
    ProfileState,
    build_snapshot,
    reading_anomaly,
)
from itap_engine.store import schema as models
from itap_engine.store.queries import (
    command_view,
    injected_faults,
    latest_readings,
    latest_scores,
    model_numbers,
    open_and_recent_alerts,
    recent_validation_alerts,
    record_events,
    record_problems,
    validation_problems,
    write_fault_commands,
)
from itap_engine.store.sql import Store, datetime_to_ms
from itap_engine.store.watermarks import (
    RETRAIN_DONE_KEY,
    RETRAIN_REQUEST_KEY,
    SIM_CLOCK_KEY,
    for_shard,
    scored_key,
)

log = logging.getLogger(__name__)

BOOTSTRAP_CHUNK_ROWS = 200_000
CHECKPOINT_TICKS = 10
"""The engine copies the SQLite write-ahead log into the database every this many ticks."""
"""Readings simulated per bootstrap step (bounds memory and paces progress)."""
TICK_RUN_KIND = "tick"


# ---------------------------------------------------------------------- helpers
def _utcnow() -> datetime:
    return datetime.now(UTC)


def _naive(value: datetime) -> datetime:
    """Simulated times are naive UTC, like the simulator's grid."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _ms(value: datetime) -> int:
    return datetime_to_ms(_naive(value))


def _from_ms(value: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(milliseconds=int(value))


def _short_error(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    name = type(error).__name__
    return f"{name}: {text}" if text and not isinstance(error, ItapError) else (text or name)


# ---------------------------------------------------------------------- results
@dataclass
class SourceResult:
    """What one ingested source (a simulated profile interval, an inbox file) gave."""

    source: str
    profile: str | None
    run_id: int | None
    rows_in: int = 0
    inserted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    status: str = "ok"
    error: str | None = None
    conflicts: int = 0
    """Rows whose (device_id, ts) was stored with other values."""


@dataclass
class TickResult:
    """The outcome of one :meth:`EngineCore.tick`."""

    sim_from: datetime
    sim_to: datetime
    sources: list[SourceResult] = field(default_factory=list)
    validation_alerts: list[ValidationAlertRow] = field(default_factory=list)
    scored: int = 0
    scored_by_profile: dict[str, int] = field(default_factory=dict)
    """Readings scored per profile (``itap --once --profile``)."""
    opened: list[Any] = field(default_factory=list)
    updated: list[Any] = field(default_factory=list)
    closed: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    retrain_requested: str | None = None

    @property
    def rows_in(self) -> int:
        return sum(s.rows_in for s in self.sources)

    @property
    def inserted(self) -> int:
        return sum(s.inserted for s in self.sources)

    @property
    def duplicates(self) -> int:
        return sum(s.duplicates for s in self.sources)

    @property
    def conflicts(self) -> int:
        return sum(s.conflicts for s in self.sources)

    @property
    def quarantined(self) -> int:
        return sum(s.quarantined for s in self.sources)

    @property
    def seconds(self) -> float:
        return self.timings.get("total", 0.0)


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
                (_ms(clock) if clock is not None else None, record.levelname.lower(), record.name, record.getMessage())
            )

    def flush_to(self, store: Store) -> None:
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
        self.store = store or Store(settings, wal_autocheckpoint=0)
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
        self.device_profile: dict[str, str] = {
            d: profile for profile, sim in self.simulators.items() for d in sim.device_ids
        }
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
        self._latest_rows: dict[str, pd.DataFrame] = {}
        self._latest_scores: dict[str, pd.DataFrame] = {}
        self._reading_anomalies: list[AnomalyRow] = []
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
        ``simulation.start``, with random faults off. A database that already holds
        readings but no clock resumes after its newest reading instead. Progress is
        reported for the stages ``history`` and ``training``.
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
                    end = _from_ms(max(latest)) + timedelta(seconds=settings.simulation.freq_s)
                    report(Progress("history", 1.0, "history found in the database"))
                else:
                    end = self._simulate_history(report, executor)
                self.store.set_watermark(self.clock_key, end.isoformat())
                for profile in self.simulators:
                    # History is not scored: the watermark is its last reading (readings
                    # newer than the watermark get scored, and the clock is exclusive).
                    if self.store.get_watermark(self._key(scored_key(profile))) is None:
                        last = self._latest_ts(profile)
                        mark = last if last is not None else _ms(end) - 1
                        self.store.set_watermark(self._key(scored_key(profile)), str(mark))
            profiles = [p for p in self._scored_profiles() if self._load_model(p) is None]
            for i, profile in enumerate(profiles):
                report(Progress("training", i / max(1, len(profiles)), f"training the {profile} model"))

                def trained(done: int, total: int, i: int = i, profile: str = profile) -> None:
                    share = (i + done / max(1, total)) / max(1, len(profiles))
                    report(Progress("training", share, f"training the {profile} model: {done}/{total} device groups"))

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

    def _simulate_history(self, report: Callable[[Progress], None], executor: Any = None) -> datetime:
        """Simulate the bootstrap history by device groups (on the cluster, if one is set).

        Each group is simulated over the whole window in chunks and stored as one
        ingest run; progress counts finished groups over every profile.
        """
        from itap_engine.compute.cluster import LocalExecutor
        from itap_engine.compute.simulate import simulate_fleet

        settings = self.settings
        start = _naive(settings.simulation.start)
        end = start + timedelta(hours=settings.detection.bootstrap_hours)
        sims = fleet_simulators(settings, fault_rate_per_device_day=0.0)
        hours = settings.detection.bootstrap_hours
        report(Progress("history", 0.0, f"simulating {hours:g} h of normal operation"))
        weights = [len(sim.device_ids) for sim in sims]
        total = max(1, sum(weights))
        for k, sim in enumerate(sims):
            before = sum(weights[:k])

            def simulated(done: int, count: int, before: int = before, size: int = weights[k]) -> None:
                share = (before + size * done / max(1, count)) / total
                report(Progress("history", share, f"simulated {hours:g} h for {share:.0%} of the fleet"))

            simulate_fleet(
                executor or LocalExecutor(),
                settings,
                sim.profile_name,
                sim.device_ids,
                start,
                end,
                options={"fault_rate_per_device_day": 0.0},
                source=f"bootstrap:{sim.profile_name}",
                kind="bootstrap",
                simulated_now=True,
                progress=simulated,
                url=self.store.url,
            )
            self.store.checkpoint()  # this store does not checkpoint on its own
        report(Progress("history", 1.0, f"simulated {hours:g} h of normal operation"))
        return end

    def resume(self) -> None:
        """Load the stored state: clock, scored watermarks, models, active fault commands."""
        with self._lock:
            abort_dead_runs(self.store)
            clock = self.store.get_watermark(self.clock_key)
            self.sim_time = _naive(datetime.fromisoformat(clock)) if clock else _naive(self.settings.simulation.start)
            now_ms = _ms(self.sim_time)
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
                if len(latest):
                    self._latest_rows[profile] = latest
                if len(scores):
                    self._latest_scores[profile] = scores
            self.tracker = AlertTracker(self.store, self.settings)
            self._reschedule_active_commands()

    # ------------------------------------------------------------------ models
    def _load_model(self, profile: str) -> TrainedModel | None:
        return load_active_model(self.store, self.settings, profile)

    def _train(
        self,
        profile: str,
        until_ms: int | None = None,
        from_ms: int | None = None,
        *,
        executor: Any = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> TrainedModel:
        """Train a new model version of ``profile`` on its known-good window.

        ``executor`` and ``progress`` are accepted for the bootstrap's cluster, but
        training runs in this process (see :mod:`itap_engine.compute.train`).
        """
        log.info("training %s model (from %s until %s)", profile, from_ms, until_ms)
        return train_model(self.store, self.settings, profile, train_until_ms=until_ms, train_from_ms=from_ms)

    def _warm_history(self, scorer: StreamingScorer, until_ms: int) -> pd.DataFrame:
        span_ms = warm_up_span_ms(scorer.model.features)  # type: ignore[arg-type]
        return self.store.read_readings(scorer.profile, since_ms=until_ms - span_ms, until_ms=until_ms)

    def _install(self, profile: str, model: TrainedModel) -> None:
        """Make ``model`` the scorer of ``profile``, warmed up on the readings before the watermark."""
        scorer = StreamingScorer(self.settings, profile, model)
        until = self.scored_ms.get(profile, _ms(self.sim_time) if self.sim_time else 0)
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
            until = self.scored_ms.get(name) or (_ms(self.sim_time) if self.sim_time else None)
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
        return write_fault_commands(self.store, device_ids, fault, severity, duration_s)

    def _reject(self, command: models.FaultCommand) -> str | None:
        profile = self.device_profile.get(command.device_id)
        if profile is None:
            known = ", ".join(list(self.device_profile)[:3])
            return f"unknown device {command.device_id!r}: faults go to simulated devices ({known}, ...)"
        faults = self.settings.profile(profile).faults
        if command.fault not in faults:
            return f"profile {profile} has no fault {command.fault!r}; known: {', '.join(faults)}"
        if not command.severity > 0 or not command.duration_s > 0:
            return "severity and duration must be positive"
        return None

    def _schedule(self, command: models.FaultCommand, start: datetime) -> None:
        profile = self.device_profile[command.device_id]
        self.simulators[profile].schedule(
            FaultEvent(
                device_id=command.device_id,
                fault=command.fault,
                start=start,
                duration_s=float(command.duration_s),
                severity=float(command.severity),
                source="operator",
            )
        )

    def _commands(self, device_id: str) -> bool:
        """Whether this engine carries out commands for a device: every engine of an
        unsharded fleet; the owning shard's (it also rejects unknown devices it owns)."""
        return self.shard is None or self.shard.owns(device_id)

    def apply_commands(self) -> list[FaultCommandView]:
        """Pending commands become active (from the current clock) or rejected; ended ones done."""
        assert self.sim_time is not None
        start = self.sim_time
        start_ms = _ms(start)
        changed = []
        FC = models.FaultCommand
        with self.store.session() as session:
            pending = list(session.exec(select(FC).where(FC.status == "pending").order_by(FC.id)))  # type: ignore[arg-type]
            pending = [c for c in pending if self._commands(c.device_id)]
            for command in pending:
                reason = self._reject(command)
                if reason:
                    command.status, command.message = "rejected", reason
                    log.info("fault command %s rejected: %s", command.id, reason)
                else:
                    self._schedule(command, start)
                    command.status = "active"
                    command.start_ts = start_ms
                    command.end_ts = start_ms + int(command.duration_s * 1000)
                    command.message = f"active from {start.isoformat(sep=' ')} (simulated)"
                    log.info("fault command %s active: %s on %s", command.id, command.fault, command.device_id)
                session.add(command)
                changed.append(command)
            ended = session.exec(select(FC).where(FC.status == "active", FC.end_ts <= start_ms))  # type: ignore[arg-type,operator]
            for command in (c for c in ended if self._commands(c.device_id)):
                command.status = "done"
                command.message = "finished"
                session.add(command)
                changed.append(command)
            session.commit()
            views = [command_view(c) for c in changed]
        for sim in self.simulators.values():
            sim.scheduled = [e for e in sim.scheduled if e.end > start - timedelta(hours=1)]
        return views

    def _reschedule_active_commands(self) -> None:
        FC = models.FaultCommand
        with self.store.session() as session:
            for command in session.exec(select(FC).where(FC.status == "active")):  # type: ignore[arg-type]
                if command.device_id in self.device_profile and command.start_ts is not None:
                    self._schedule(command, _from_ms(command.start_ts))

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
        :attr:`TickResult.errors`.
        """
        with self._lock:
            return self._tick(self.step_s if sim_seconds is None else sim_seconds, kind, inbox)

    def _tick(self, sim_seconds: float, kind: str, inbox: bool) -> TickResult:
        assert self.sim_time is not None, "resume() first"
        started = time.perf_counter()
        timings: dict[str, float] = {}

        def lap(name: str, since: float) -> float:
            now = time.perf_counter()
            timings[name] = timings.get(name, 0.0) + now - since
            return now

        t = started
        self._swap_models()
        self.apply_commands()
        result = TickResult(self.sim_time, self.sim_time + timedelta(seconds=sim_seconds))
        result.retrain_requested = self.check_retrain_request()
        t = lap("commands", t)

        t0, t1 = result.sim_from, result.sim_to
        for profile, sim in self.simulators.items():
            frame = sim.generate(t0, t1)
            t = lap("simulate", t)
            if len(frame):
                report = ingest_frame(
                    self.store, self.settings, profile, frame, source=f"sim:{profile}", kind=kind, now=t1
                )
                result.sources.append(self._source_result(report, f"sim:{profile}", profile))
                result.validation_alerts.extend(self._validation_rows(report))
            t = lap("ingest", t)
        if inbox and (self.shard is None or self.shard.index == 0):  # one shard imports files
            self._import_inbox(result, kind)
            t = lap("inbox", t)
        self.sim_time = t1
        self.store.set_watermark(self.clock_key, t1.isoformat())
        record_problems(self.store, result.validation_alerts, _ms(t1))  # one per (device, signal, check)

        self._score(result, _ms(t1), lap)
        t = time.perf_counter()
        self.ticks += 1
        timings["total"] = time.perf_counter() - started
        if self.ticks % CHECKPOINT_TICKS == 0:
            t = time.perf_counter()
            self.store.checkpoint()
            timings["checkpoint"] = time.perf_counter() - t  # after the tick's work: not in its total
        result.timings = timings
        self._warnings.flush_to(self.store)  # the tick's warnings, for the events view
        self.last_tick = result
        if result.errors:
            self.last_error = result.errors[-1]
        return result

    @staticmethod
    def _source_result(report: IngestReport, source: str, profile: str | None) -> SourceResult:
        return SourceResult(
            source=source,
            profile=profile,
            run_id=report.run_id,
            rows_in=report.rows_in,
            inserted=report.inserted,
            duplicates=report.duplicates,
            conflicts=report.conflicts,
            quarantined=report.quarantined,
            status=report.status,
        )

    @staticmethod
    def _validation_rows(report: IngestReport) -> list[ValidationAlertRow]:
        now = _utcnow()
        return [
            ValidationAlertRow(
                created_at=now, level=a.level, check=a.check, device_id=a.device_id, signal=a.signal, message=a.message
            )
            for a in report.validation.alerts
        ]

    # ------------------------------------------------------------------ inbox
    def inbox_files(self) -> list[Path]:
        inbox = self.settings.resolve(self.settings.paths.inbox_dir)
        if not inbox.is_dir():
            return []
        return sorted(p for p in inbox.iterdir() if p.is_file() and p.suffix.lower() == ".csv")

    def _import_inbox(self, result: TickResult, kind: str) -> None:
        files = self.inbox_files()
        if not files:
            return
        inbox = files[0].parent
        for path in files:
            try:
                wall = datetime.now(UTC).replace(tzinfo=None)
                clock = self.sim_time or wall
                reports = csv_import.import_csv(self.store, self.settings, path, now=max(wall, clock))
            except Exception as error:  # a bad file must not stop the engine
                message = f"{path.name}: {_short_error(error)}"
                log.exception("inbox file %s failed", path)
                result.errors.append(message)
                result.sources.append(SourceResult(str(path.name), None, None, status="error", error=message))
                self._move(path, inbox / "failed")
                continue
            if not isinstance(reports, list | tuple):
                reports = [reports]  # type: ignore[assignment]
            for report in reports:  # type: ignore[attr-defined]
                profile = getattr(report, "profile", None)
                result.sources.append(self._source_result(report, path.name, profile))
                result.validation_alerts.extend(self._validation_rows(report))
            self._move(path, inbox / "done")

    @staticmethod
    def _move(path: Path, folder: Path) -> None:
        folder.mkdir(exist_ok=True)
        target = folder / path.name
        if target.exists():
            target = folder / f"{path.stem}.{int(time.time() * 1000)}{path.suffix}"
        shutil.move(str(path), target)

    # ------------------------------------------------------------------ scoring
    def _score(self, result: TickResult, clock_ms: int, lap: Callable[[str, float], float]) -> None:
        """Score what is new per profile; timings: read, score (features + detector), alerts."""
        self._reading_anomalies = []
        for profile, scorer in self.scorers.items():
            t = time.perf_counter()
            since = self.scored_ms.get(profile, clock_ms)
            until = clock_ms if profile in self.simulators else None
            owned = self.owned_devices(profile)
            readings = self.store.read_readings(profile, device_ids=owned, since_ms=since, until_ms=until)
            t = lap("read", t)
            if readings.empty:
                continue
            self._remember_latest(profile, readings)
            scored = scorer.score(readings)
            t = lap("score", t)
            if scored is None or len(scored) == 0:
                self.scored_ms[profile] = int(readings["ts"].max())
                self.store.set_watermark(self._key(scored_key(profile)), str(self.scored_ms[profile]))
                continue
            self._store_scores(profile, scored)
            t = lap("store_scores", t)
            changes = self.tracker.update(profile, scored)  # type: ignore[union-attr]
            t = lap("alerts", t)
            result.opened.extend(changes.opened)
            result.updated.extend(changes.updated)
            result.closed.extend(changes.closed)
            result.scored += len(scored)
            result.scored_by_profile[profile] = result.scored_by_profile.get(profile, 0) + len(scored)
            self._remember_scores(profile, scored)
            self.scored_ms[profile] = int(readings["ts"].max())
            self.store.set_watermark(self._key(scored_key(profile)), str(self.scored_ms[profile]))

    def _store_scores(self, profile: str, scored: pd.DataFrame) -> None:
        """Scores as ``score`` rows, one bulk insert (contributors kept for anomalous rows)."""
        insert_scores(self.store, profile, scored)

    def _remember_latest(self, profile: str, readings: pd.DataFrame) -> None:
        last = readings.groupby("device_id", sort=False).tail(1).set_index("device_id")
        previous = self._latest_rows.get(profile)
        if previous is not None and len(previous):
            last = pd.concat([previous[~previous.index.isin(last.index)], last])
        self._latest_rows[profile] = last

    def _remember_scores(self, profile: str, scored: pd.DataFrame) -> None:
        frame = scored.copy()
        if not pd.api.types.is_integer_dtype(frame["ts"].dtype):
            frame["ts"] = [_ms(v) for v in pd.to_datetime(frame["ts"])]
        last = frame.groupby("device_id", sort=False).tail(1).set_index("device_id")
        previous = self._latest_scores.get(profile)
        if previous is not None and len(previous):
            last = pd.concat([previous[~previous.index.isin(last.index)], last])
        self._latest_scores[profile] = last
        if "is_anomalous" in frame:
            hot = frame[frame["is_anomalous"].astype(bool)].nlargest(MAX_TOP_ANOMALIES, "score")
            family = hot["family"].tolist() if "family" in hot else ["other"] * len(hot)
            contributors = hot["contributors"].tolist() if "contributors" in hot else [None] * len(hot)
            self._reading_anomalies.extend(
                reading_anomaly(device, profile, ts, score, fam, contrib)
                for device, ts, score, fam, contrib in zip(
                    hot["device_id"].tolist(), hot["ts"].tolist(), hot["score"].tolist(), family, contributors
                )
            )

    # ------------------------------------------------------------------ housekeeping
    def housekeeping(self) -> dict[str, int]:
        """Delete old readings and scores, per source and per device; real data is never
        deleted by the simulated clock.

        The devices this engine simulates keep ``engine.retention_hours`` of simulated
        time behind the clock (with shards, the clock furthest behind: partitions hold
        every shard's rows). Every other device (imported data) keeps
        ``engine.retention_hours_imported`` behind its own newest reading; 0, the
        default, keeps it forever. The store decides how (:meth:`Store.expire_before`):
        whole time partitions on PostgreSQL where a partition holds only expiring
        devices, device by device along the primary key otherwise.
        """
        if self.sim_time is None:
            return {}
        rules = self.settings.engine
        clock = self.sim_time
        if self.shard is not None:
            clocks = self.store.watermarks_like(SIM_CLOCK_KEY).values()
            clock = min([clock, *(_naive(datetime.fromisoformat(v)) for v in clocks)])
        cutoff = _ms(clock) - int(rules.retention_hours * 3600 * 1000)
        with self.store.session() as session:
            devices = [(d.id, d.profile, d.last_ts) for d in session.exec(select(models.Device))]
        simulated = {
            profile: [d for d, p, _ in devices if p == profile and d in self.device_profile and self._commands(d)]
            for profile in self.settings.profiles
        }
        deleted = self.store.expire_before(cutoff, simulated)
        if rules.retention_hours_imported > 0 and self.shard is None:
            keep_ms = int(rules.retention_hours_imported * 3600 * 1000)
            for device, profile, last in devices:
                if device in self.device_profile or last is None:
                    continue
                for key, count in self.store.expire_before(int(last) - keep_ms, {profile: [device]}).items():
                    deleted[key] = deleted.get(key, 0) + count
        wall_cutoff = _utcnow() - timedelta(hours=self.settings.engine.retention_hours)
        with self.store.engine.begin() as conn:
            run = models.Run.__table__  # type: ignore[attr-defined]
            conn.execute(sa.delete(run).where(run.c.kind == TICK_RUN_KIND, run.c.started_at < wall_cutoff))
        log.info("housekeeping: %s", deleted)
        return deleted

    # ------------------------------------------------------------------ snapshot
    def snapshot(self, seq: int, stats: EngineStats) -> Snapshot:
        """An immutable picture of the fleet after the last tick."""
        from itap_engine.detection.alerts import silences

        open_alerts, recent_closed = open_and_recent_alerts(self.store)
        profiles: dict[str, ProfileState] = {}
        for profile in self.settings.profiles:
            latest = self._latest_rows.get(profile)
            scores = self._latest_scores.get(profile)
            devices = list(self.simulators[profile].device_ids) if profile in self.simulators else []
            if latest is not None:
                devices += [d for d in latest.index if d not in self.device_profile]
            profiles[profile] = ProfileState(
                devices=[FleetDevice(d, self.sites.get(d)) for d in devices],
                latest=latest,
                scores=scores["score"].to_dict() if scores is not None else {},
                device_thresholds=scores["threshold"].to_dict() if scores is not None and "threshold" in scores else {},
                threshold=model.threshold if (model := self.models.get(profile)) is not None else None,
            )
        return build_snapshot(
            self.settings,
            seq=seq,
            profiles=profiles,
            open_alerts=open_alerts,
            recent_closed=recent_closed,
            reading_anomalies=self._reading_anomalies,
            injected=injected_faults(self.store),
            validation_alerts=recent_validation_alerts(self.store),
            validation_problems=validation_problems(self.store),
            clock_ms=_ms(self.sim_time) if self.sim_time else None,
            silenced=silences(
                self.store,
                self.settings,
                [d.device_id for p in profiles.values() for d in p.devices],
                _ms(self.sim_time) if self.sim_time else 0,
            ),
            stats=stats,
        )

    def model_versions(self) -> dict[str, int]:
        """profile -> its active model's number among the profile's versions (v1, v2, ...),
        looked up again only when a model changes."""
        ids = {p: m.version_id for p, m in self.models.items()}
        key = tuple(sorted(ids.items()))
        if self._model_numbers[0] != key:
            self._model_numbers = (key, model_numbers(self.store, ids))
        return dict(self._model_numbers[1])
