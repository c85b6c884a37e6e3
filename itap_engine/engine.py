"""The continuous engine: simulate or import, validate, ingest, score, alert, publish.

Why it is built this way:

* **Two layers.** :class:`EngineCore` is synchronous and does the work of one cycle
  (one *tick*): fault commands, simulation of the next interval, inbox CSV files,
  validation and ingestion (:mod:`itap_engine.pipeline`), streaming features and
  scores (:mod:`itap_engine.scoring`), alerts, and the snapshot. :class:`Engine` is
  the asyncio shell around it: APScheduler 3's ``AsyncIOScheduler`` runs the jobs
  ``tick``, ``retrain`` and ``housekeeping`` (``max_instances=1``, ``coalesce=True``)
  and every call into the core goes through :func:`asyncio.to_thread`, so the event
  loop (and a console drawn on it) never waits for pandas, SQL or scikit-learn.
  ``itap --once`` (:mod:`itap_engine.once`) drives the same core without a loop.
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

Logging goes to the rotating file ``settings.paths.log_file`` only (see
:func:`configure_logging`), never to stdout, where a console draws its screen.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import logging.handlers
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import sqlalchemy as sa
from sqlmodel import select

from itap_engine import models
from itap_engine.config import Settings
from itap_engine.errors import ItapError
from itap_engine.simulate import FaultEvent, Simulator, fleet_simulators
from itap_engine.snapshot import (
    AnomalyRow,
    ContributorView,
    DeviceRow,
    EngineStats,
    FaultCommandView,
    ProfileInfo,
    Progress,
    Snapshot,
    ValidationAlertRow,
    SnapshotPublisher,
)
from itap_engine.store import Store, datetime_to_ms

__all__ = [
    "Engine",
    "EngineCore",
    "LockHeld",
    "LoopLagMonitor",
    "RunLock",
    "TickResult",
    "configure_logging",
]

log = logging.getLogger(__name__)

SIM_CLOCK_KEY = "sim.clock"
SCORED_KEY = "scored:{profile}"
"""Shared with ``itap score`` (:data:`itap_engine.scoring.SCORED_WATERMARK`)."""
ENGINE_STATUS_KEY = "engine.status"
RETRAIN_REQUEST_KEY = "command.retrain"
RETRAIN_DONE_KEY = "command.retrain.done"
ONCE_WALL_KEY = "once.last_wall"

BOOTSTRAP_CHUNK_ROWS = 200_000
CHECKPOINT_TICKS = 10
"""The engine copies the SQLite write-ahead log into the database every this many ticks."""
"""Readings simulated per bootstrap step (bounds memory and paces progress)."""
MAX_TOP_ANOMALIES = 50
RECENT_VALIDATION = 20
RECENT_CLOSED_ALERTS = 10
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


def contributors_of(value: Any) -> tuple[ContributorView, ...]:
    """Contributors in any form the scorer or the database gives (objects, dicts, JSON)."""
    if value is None:
        return ()
    if isinstance(value, float) and math.isnan(value):
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value) if value else []
        except ValueError:
            return ()
    out = []
    for item in value or ():
        if isinstance(item, dict):
            signal, family, share = item.get("signal"), item.get("family"), item.get("share")
        else:
            signal = getattr(item, "signal", None)
            family = getattr(item, "family", None)
            share = getattr(item, "share", None)
        if signal is None:
            continue
        out.append(ContributorView(str(signal), str(family or "other"), float(share or 0.0)))
    return tuple(out)


def contributors_json(value: Any) -> str:
    return json.dumps([{"signal": c.signal, "family": c.family, "share": round(c.share, 4)} for c in contributors_of(value)])


def _model_version_id(model: Any) -> int | None:
    """The id of a trained model's ``model_version`` row, whatever the attribute is called."""
    if model is None:
        return None
    for name in ("version_id", "model_version_id", "id"):
        value = getattr(model, name, None)
        if isinstance(value, int):
            return value
    version = getattr(model, "version", None) or getattr(model, "model_version", None)
    if isinstance(version, int):
        return version
    value = getattr(version, "id", None)
    return int(value) if value is not None else None


def _model_threshold(model: Any) -> float | None:
    if model is None:
        return None
    value = getattr(model, "threshold", None)
    if value is None:
        value = getattr(getattr(model, "version", None), "threshold", None)
    return float(value) if value is not None else None


def _finite(value: Any, default: float | None) -> float | None:
    """``value`` as a float when it is a finite number, else ``default``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if np.isfinite(number) else default


# ---------------------------------------------------------------------- logging
_LOG_LOCK = threading.Lock()
_LOG_PATH: Path | None = None


def configure_logging(settings: Settings, level: int = logging.INFO) -> Path:
    """Send ITAP's and APScheduler's logs to the rotating file ``paths.log_file``.

    Nothing is printed: the loggers stop propagating (so Python's last-resort
    handler never writes to stderr under a console) and warnings are captured into
    the same file. Idempotent; a later call with another file moves the handler.
    """
    global _LOG_PATH
    path = settings.resolve(settings.paths.log_file)
    with _LOG_LOCK:
        if _LOG_PATH == path:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=3, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"))
        handler.set_name("itap-file")
        logging.captureWarnings(True)
        for name in ("itap_engine", "itap_tui", "apscheduler", "py.warnings"):
            logger = logging.getLogger(name)
            for old in [h for h in logger.handlers if h.get_name() == "itap-file"]:
                logger.removeHandler(old)
                old.close()
            logger.addHandler(handler)
            logger.setLevel(level if name != "apscheduler" else logging.WARNING)
            logger.propagate = False
        _LOG_PATH = path
    return path


# ---------------------------------------------------------------------- run lock
class LockHeld(ItapError):
    """Another ITAP process owns the data directory's run lock."""

    exit_code = 3


class RunLock:
    """One writer of the simulated timeline at a time: a pid file made with ``O_EXCL``.

    ``itap --once`` and the engine (``itap engine``, or the console's in-process
    engine) take it. A lock whose process is gone (or whose pid now belongs to
    another process: the start time is recorded) is stale and taken over; the
    check-and-take-over runs under ``flock`` on a guard file so two processes
    cannot both take over the same stale lock.
    """

    def __init__(self, settings: Settings, purpose: str) -> None:
        self.path = settings.resolve(settings.paths.data_dir) / "itap.lock"
        self.purpose = purpose
        self.held = False

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        guard = self.path.with_name(self.path.name + ".guard")
        with open(guard, "a+") as guard_file:
            fcntl.flock(guard_file, fcntl.LOCK_EX)
            try:
                for _ in range(2):
                    try:
                        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                    except FileExistsError:
                        holder = self._holder()
                        if holder is not None:
                            pid, purpose, since = holder
                            raise LockHeld(
                                f"another ITAP run holds {self.path} (pid {pid}, {purpose}, since {since}); "
                                "try again when it has finished"
                            ) from None
                        log.warning("taking over stale lock %s", self.path)
                        with contextlib.suppress(FileNotFoundError):
                            self.path.unlink()
                        continue
                    me = psutil.Process()
                    payload = {
                        "pid": os.getpid(),
                        "create_time": me.create_time(),
                        "purpose": self.purpose,
                        "since": _utcnow().isoformat(timespec="seconds"),
                    }
                    with os.fdopen(fd, "w") as handle:
                        handle.write(json.dumps(payload) + "\n")
                    self.held = True
                    return self
            finally:
                fcntl.flock(guard_file, fcntl.LOCK_UN)
        raise LockHeld(f"could not take the lock {self.path}")

    def _holder(self) -> tuple[int, str, str] | None:
        """(pid, purpose, since) of a live holder, or None when the lock is stale."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
            pid = int(data["pid"])
        except (ValueError, KeyError, TypeError):
            try:
                pid, data = int(text.split()[0]), {}
            except (ValueError, IndexError):
                return None
        if pid == os.getpid():
            return None
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            created = data.get("create_time")
            if created is not None and abs(process.create_time() - float(created)) > 1.0:
                return None  # the pid was reused by another process
        except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            return None
        return pid, str(data.get("purpose", "?")), str(data.get("since", "?"))

    def release(self) -> None:
        if not self.held:
            return
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
            data = json.loads(self.path.read_text())
            if int(data["pid"]) == os.getpid():
                self.path.unlink()
        self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


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


@dataclass
class TickResult:
    """The outcome of one :meth:`EngineCore.tick`."""

    sim_from: datetime
    sim_to: datetime
    sources: list[SourceResult] = field(default_factory=list)
    validation_alerts: list[ValidationAlertRow] = field(default_factory=list)
    scored: int = 0
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
    def quarantined(self) -> int:
        return sum(s.quarantined for s in self.sources)

    @property
    def seconds(self) -> float:
        return self.timings.get("total", 0.0)


# ---------------------------------------------------------------------- the core
class EngineCore:
    """The synchronous work of the engine; every method may block (call it in a thread).

    Args:
        settings: the loaded settings.
        store: an open store (default: one on ``settings.database_url``).
    """

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        # the tick checkpoints the write-ahead log itself, every CHECKPOINT_TICKS ticks
        self.store = store or Store(settings, wal_autocheckpoint=0)
        self.simulators: dict[str, Simulator] = {s.profile_name: s for s in fleet_simulators(settings)}
        self.device_profile: dict[str, str] = {
            d: profile for profile, sim in self.simulators.items() for d in sim.device_ids
        }
        self.sites: dict[str, str | None] = {}
        for group in settings.simulation.fleet:
            for i, device in enumerate(group.device_ids()):
                self.sites[device] = group.sites[i % len(group.sites)] if group.sites else None
        self.models: dict[str, Any] = {}
        self.scorers: dict[str, Any] = {}
        self.tracker: Any = None
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

    # ------------------------------------------------------------------ lifecycle
    @property
    def step_s(self) -> float:
        """Simulated seconds one tick covers: ``sim_speed`` x ``tick_seconds``."""
        return self.settings.engine.sim_speed * self.settings.engine.tick_seconds

    def close(self) -> None:
        self.store.close()

    def needs_bootstrap(self) -> bool:
        """True when there is no simulated clock (an empty database) or a profile lacks a model."""
        if self.store.get_watermark(SIM_CLOCK_KEY) is None:
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
        with self._lock:
            for group in settings.simulation.fleet:
                self.store.register_devices(group.profile, group.device_ids(), group.sites)
            clock = self.store.get_watermark(SIM_CLOCK_KEY)
            if clock is None:
                latest = [t for t in (self.store.latest_ts(p) for p in self.simulators) if t is not None]
                if latest:
                    end = _from_ms(max(latest)) + timedelta(seconds=settings.simulation.freq_s)
                    report(Progress("history", 1.0, "history found in the database"))
                else:
                    end = self._simulate_history(report)
                self.store.set_watermark(SIM_CLOCK_KEY, end.isoformat())
                for profile in self.simulators:
                    # History is not scored: the watermark is its last reading (readings
                    # newer than the watermark get scored, and the clock is exclusive).
                    if self.store.get_watermark(SCORED_KEY.format(profile=profile)) is None:
                        last = self.store.latest_ts(profile)
                        mark = last if last is not None else _ms(end) - 1
                        self.store.set_watermark(SCORED_KEY.format(profile=profile), str(mark))
            profiles = [p for p in self._scored_profiles() if self._load_model(p) is None]
            for i, profile in enumerate(profiles):
                report(Progress("training", i / max(1, len(profiles)), f"training the {profile} model"))
                try:
                    self._train(profile)
                except ItapError as error:
                    if profile in self.simulators:
                        raise
                    # Imported-only data (e.g. a CSV profile) may be too short to train on:
                    # it is stored and shown, and scored once `itap train` made a model.
                    log.warning("no model for imported profile %s: %s", profile, error)
            report(Progress("training", 1.0, "models ready"))

    def _simulate_history(self, report: Callable[[Progress], None]) -> datetime:
        from itap_engine.pipeline import ingest_frame

        settings = self.settings
        start = _naive(settings.simulation.start)
        end = start + timedelta(hours=settings.detection.bootstrap_hours)
        sims = fleet_simulators(settings, fault_rate_per_device_day=0.0)
        devices = max(1, sum(len(s.device_ids) for s in sims))
        chunk_s = max(settings.simulation.freq_s, BOOTSTRAP_CHUNK_ROWS // devices * settings.simulation.freq_s)
        total = (end - start).total_seconds()
        t0 = start
        report(Progress("history", 0.0, f"simulating {settings.detection.bootstrap_hours:g} h of normal operation"))
        while t0 < end:
            t1 = min(end, t0 + timedelta(seconds=chunk_s))
            for sim in sims:
                frame = sim.generate(t0, t1)
                if len(frame):
                    ingest_frame(
                        self.store, settings, sim.profile_name, frame,
                        source=f"bootstrap:{sim.profile_name}", kind="bootstrap", now=t1,
                    )
            t0 = t1
            self.store.checkpoint()  # this store does not checkpoint on its own
            done = (t0 - start).total_seconds() / total
            report(Progress("history", done, f"simulated {done * total / 3600:.1f} of {total / 3600:g} h"))
        return end

    def resume(self) -> None:
        """Load the stored state: clock, scored watermarks, models, active fault commands."""
        with self._lock:
            from itap_engine.pipeline import abort_dead_runs

            abort_dead_runs(self.store)
            clock = self.store.get_watermark(SIM_CLOCK_KEY)
            self.sim_time = _naive(datetime.fromisoformat(clock)) if clock else _naive(self.settings.simulation.start)
            now_ms = _ms(self.sim_time)
            with self.store.session() as session:
                for device in session.exec(select(models.Device)):
                    self.sites.setdefault(device.id, device.site)
            for profile in self._scored_profiles():
                mark = self.store.get_watermark(SCORED_KEY.format(profile=profile))
                last = self.store.latest_ts(profile) if not mark else None
                self.scored_ms[profile] = int(mark) if mark else (last if last is not None else now_ms - 1)
                model = self._load_model(profile)
                if model is not None:
                    self._install(profile, model)
                latest = latest_readings(self.store, profile)
                if len(latest):
                    self._latest_rows[profile] = latest
                scores = latest_scores(self.store, profile)
                if len(scores):
                    self._latest_scores[profile] = scores
            from itap_engine.scoring import AlertTracker

            self.tracker = AlertTracker(self.store, self.settings)
            self._reschedule_active_commands()

    # ------------------------------------------------------------------ models
    def _load_model(self, profile: str) -> Any:
        from itap_engine.scoring import load_active_model

        return load_active_model(self.store, self.settings, profile)

    def _train(self, profile: str, until_ms: int | None = None, from_ms: int | None = None) -> Any:
        from itap_engine.scoring import train_model

        log.info("training %s model (from %s until %s)", profile, from_ms, until_ms)
        return train_model(self.store, self.settings, profile, train_until_ms=until_ms, train_from_ms=from_ms)

    def _warm_history(self, scorer: Any, until_ms: int) -> pd.DataFrame:
        from itap_engine.scoring import warm_up_span_ms

        span_ms = warm_up_span_ms(scorer.model.features)
        return self.store.read_readings(scorer.profile, since_ms=until_ms - span_ms, until_ms=until_ms)

    def _install(self, profile: str, model: Any) -> None:
        """Make ``model`` the scorer of ``profile``, warmed up on the readings before the watermark."""
        from itap_engine.scoring import StreamingScorer

        scorer = StreamingScorer(self.settings, profile, model)
        until = self.scored_ms.get(profile, _ms(self.sim_time) if self.sim_time else 0)
        history = self._warm_history(scorer, until)
        if len(history):
            scorer.warm_up(history)
        self.models[profile] = model
        self.scorers[profile] = scorer
        log.info("model %s installed for %s", _model_version_id(model), profile)

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
            done[name] = _model_version_id(model)
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

    def apply_commands(self) -> list[FaultCommandView]:
        """Pending commands become active (from the current clock) or rejected; ended ones done."""
        assert self.sim_time is not None
        start = self.sim_time
        start_ms = _ms(start)
        changed = []
        FC = models.FaultCommand
        with self.store.session() as session:
            pending = list(session.exec(select(FC).where(FC.status == "pending").order_by(FC.id)))  # type: ignore[arg-type]
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
            for command in ended:
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
        if value and value != self.store.get_watermark(RETRAIN_DONE_KEY):
            self.store.set_watermark(RETRAIN_DONE_KEY, value)
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
        from itap_engine.pipeline import ingest_frame

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
        if inbox:
            self._import_inbox(result, kind)
            t = lap("inbox", t)
        self.sim_time = t1
        self.store.set_watermark(SIM_CLOCK_KEY, t1.isoformat())

        self._score(result, _ms(t1), lap)
        t = time.perf_counter()
        self.ticks += 1
        timings["total"] = time.perf_counter() - started
        if self.ticks % CHECKPOINT_TICKS == 0:
            t = time.perf_counter()
            self.store.checkpoint()
            timings["checkpoint"] = time.perf_counter() - t  # after the tick's work: not in its total
        result.timings = timings
        self.last_tick = result
        if result.errors:
            self.last_error = result.errors[-1]
        return result

    @staticmethod
    def _source_result(report: Any, source: str, profile: str | None) -> SourceResult:
        return SourceResult(
            source=source,
            profile=profile,
            run_id=getattr(report, "run_id", None),
            rows_in=int(getattr(report, "rows_in", 0)),
            inserted=int(getattr(report, "inserted", 0)),
            duplicates=int(getattr(report, "duplicates", 0)),
            quarantined=int(getattr(report, "quarantined", 0)),
            status=str(getattr(report, "status", "ok")),
        )

    @staticmethod
    def _validation_rows(report: Any) -> list[ValidationAlertRow]:
        validation = getattr(report, "validation", None)
        alerts = getattr(validation, "alerts", None) or []
        now = _utcnow()
        return [
            ValidationAlertRow(
                created_at=now,
                level=str(getattr(a, "level", "warning")),
                check=str(getattr(a, "check", "")),
                device_id=getattr(a, "device_id", None),
                signal=getattr(a, "signal", None),
                message=str(getattr(a, "message", "")),
            )
            for a in alerts
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
        from itap_engine import csv_import

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
                reports = [reports]
            for report in reports:
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
            readings = self.store.read_readings(profile, since_ms=since, until_ms=until)
            t = lap("read", t)
            if readings.empty:
                continue
            self._remember_latest(profile, readings)
            scored = scorer.score(readings)
            t = lap("score", t)
            if scored is None or len(scored) == 0:
                self.scored_ms[profile] = int(readings["ts"].max())
                self.store.set_watermark(SCORED_KEY.format(profile=profile), str(self.scored_ms[profile]))
                continue
            self._store_scores(profile, scored)
            t = lap("store_scores", t)
            changes = self.tracker.update(profile, scored)
            t = lap("alerts", t)
            result.opened.extend(getattr(changes, "opened", ()) or ())
            result.updated.extend(getattr(changes, "updated", ()) or ())
            result.closed.extend(getattr(changes, "closed", ()) or ())
            result.scored += len(scored)
            self._remember_scores(profile, scored)
            self.scored_ms[profile] = int(readings["ts"].max())
            self.store.set_watermark(SCORED_KEY.format(profile=profile), str(self.scored_ms[profile]))

    def _store_scores(self, profile: str, scored: pd.DataFrame) -> None:
        """Scores as ``score`` rows, one bulk insert (contributors kept for anomalous rows)."""
        from itap_engine.scoring import insert_scores

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
        """Delete old readings and scores, per source and per device.

        A device's cutoff is its own newest reading minus the retention of its source:
        ``engine.retention_hours`` for the devices this engine simulates,
        ``engine.retention_hours_imported`` for every other device (imported data;
        0, the default, keeps them forever). The simulated clock never deletes real
        data: an imported history from 2020 is not "old" because the simulation runs
        in 2026. Deletes go device by device along the primary key, so each statement
        is an index range and the write lock is held briefly.
        """
        if self.sim_time is None:
            return {}
        rules = self.settings.engine
        with self.store.session() as session:
            devices = [(d.id, d.profile, d.last_ts) for d in session.exec(select(models.Device))]
        deleted: dict[str, int] = {}
        score_table = models.Score.__table__  # type: ignore[attr-defined]
        for profile in self.settings.profiles:
            params = []
            for device, p, last in devices:
                if p != profile or last is None:
                    continue
                hours = rules.retention_hours if device in self.device_profile else rules.retention_hours_imported
                if hours and hours > 0:
                    params.append({"d": device, "cut": int(last) - int(hours * 3600 * 1000)})
            if not params:
                continue
            table = self.store.readings_table(profile)
            with self.store.engine.begin() as conn:
                r = conn.execute(
                    sa.delete(table).where(table.c.device_id == sa.bindparam("d"), table.c.ts < sa.bindparam("cut")),
                    params,
                )
                s = conn.execute(
                    sa.delete(score_table).where(
                        score_table.c.profile == profile,
                        score_table.c.device_id == sa.bindparam("d"),
                        score_table.c.ts < sa.bindparam("cut"),
                    ),
                    params,
                )
            deleted[f"readings_{profile}"] = max(r.rowcount, 0)
            deleted[f"scores_{profile}"] = max(s.rowcount, 0)
        wall_cutoff = _utcnow() - timedelta(hours=self.settings.engine.retention_hours)
        with self.store.engine.begin() as conn:
            run = models.Run.__table__  # type: ignore[attr-defined]
            conn.execute(sa.delete(run).where(run.c.kind == TICK_RUN_KIND, run.c.started_at < wall_cutoff))
        log.info("housekeeping: %s", deleted)
        return deleted

    # ------------------------------------------------------------------ snapshot
    def snapshot(self, seq: int, stats: EngineStats) -> Snapshot:
        """An immutable picture of the fleet after the last tick."""
        open_alerts, recent_closed = open_and_recent_alerts(self.store)
        device_alert = {}
        for alert in open_alerts:
            current = device_alert.get(alert.device_id)
            if current is None or (alert.severity == "critical" and current.severity != "critical"):
                device_alert[alert.device_id] = alert
        injected = injected_faults(self.store)
        rows = []
        clock_ms = _ms(self.sim_time) if self.sim_time else None
        stale_ms = int(max(5 * self.settings.simulation.freq_s, 3 * self.step_s) * 1000)
        for profile, spec in self.settings.profiles.items():
            latest = self._latest_rows.get(profile)
            scores = self._latest_scores.get(profile)
            devices = list(self.simulators[profile].device_ids) if profile in self.simulators else []
            if latest is not None:
                devices += [d for d in latest.index if d not in self.device_profile]
            if not devices:
                continue
            threshold = _model_threshold(self.models.get(profile))
            columns = [c for c in ("ts", "state", *spec.signals) if latest is not None and c in latest.columns]
            records = latest[columns].to_dict("index") if latest is not None else {}
            score_of = scores["score"].to_dict() if scores is not None else {}
            # each device's own threshold (per-device calibration), else the model's
            limit_of = scores["threshold"].to_dict() if scores is not None and "threshold" in scores else {}
            for device in devices:
                record = records.get(device)
                values: dict[str, float | None] = {}
                state = None
                last_ts = None
                if record is not None:
                    for signal in spec.signals:
                        v = record.get(signal)
                        values[signal] = None if v is None or pd.isna(v) else float(v)
                    state = record.get("state")
                    state = None if state is None or pd.isna(state) else str(state)
                    ts = record.get("ts")
                    last_ts = None if ts is None or pd.isna(ts) else int(ts)
                else:
                    values = dict.fromkeys(spec.signals)
                score = score_of.get(device)
                score = None if score is None or pd.isna(score) else float(score)
                rows.append(
                    DeviceRow(
                        device_id=device,
                        profile=profile,
                        site=self.sites.get(device),
                        state=state,
                        values=values,
                        score=score,
                        threshold=_finite(limit_of.get(device), threshold),
                        status=device_status(
                            device_alert.get(device), profile in self.models, last_ts, clock_ms, stale_ms
                        ),
                        last_ts=last_ts,
                        injected_fault=injected.get(device),
                    )
                )
        return Snapshot(
            seq=seq,
            created_at=_utcnow(),
            devices=tuple(rows),
            anomalies=rank_anomalies(open_alerts, self._reading_anomalies, recent_closed),
            validation_alerts=tuple(recent_validation_alerts(self.store)),
            stats=stats,
            profiles=dict(self.profile_infos),
        )

    def model_versions(self) -> dict[str, int]:
        return {p: v for p, m in self.models.items() if (v := _model_version_id(m)) is not None}


# ---------------------------------------------------------------------- shared queries
def write_fault_commands(
    store: Store, device_ids: Sequence[str], fault: str, severity: float, duration_s: float
) -> list[FaultCommandView]:
    """One pending ``fault_command`` row per device, as any process may write them."""
    with store.session() as session:
        rows = [
            models.FaultCommand(device_id=d, fault=fault, severity=float(severity), duration_s=float(duration_s))
            for d in device_ids
        ]
        session.add_all(rows)
        session.commit()
        for row in rows:
            session.refresh(row)
        return [command_view(row) for row in rows]


def command_view(command: models.FaultCommand) -> FaultCommandView:
    return FaultCommandView(
        id=int(command.id or 0),
        device_id=command.device_id,
        fault=command.fault,
        severity=float(command.severity),
        duration_s=float(command.duration_s),
        status=command.status,
        start_ts=command.start_ts,
        message=command.message or "",
    )


def alert_row(alert: models.Alert) -> AnomalyRow:
    return AnomalyRow(
        device_id=alert.device_id,
        profile=alert.profile,
        ts=int(alert.last_ts),
        score=float(alert.peak_score),
        severity=alert.severity,
        family=alert.family,
        contributors=contributors_of(alert.contributors),
        alert_id=alert.id,
        status=alert.status,
        acknowledged=bool(alert.acknowledged),
        opened_ts=int(alert.opened_ts),
    )


def open_and_recent_alerts(store: Store, closed_limit: int = RECENT_CLOSED_ALERTS) -> tuple[list[AnomalyRow], list[AnomalyRow]]:
    """Open alerts (highest peak first) and the most recently closed ones."""
    A = models.Alert
    with store.session() as session:
        open_ = [alert_row(a) for a in session.exec(select(A).where(A.status == "open").order_by(A.peak_score.desc()))]  # type: ignore[attr-defined]
        closed = [
            alert_row(a)
            for a in session.exec(select(A).where(A.status == "closed").order_by(A.id.desc()).limit(closed_limit))  # type: ignore[union-attr]
        ]
    return open_, closed


def recent_validation_alerts(store: Store, limit: int = RECENT_VALIDATION) -> list[ValidationAlertRow]:
    V = models.ValidationEvent
    with store.session() as session:
        events = session.exec(select(V).order_by(V.id.desc()).limit(limit))  # type: ignore[union-attr]
        return [
            ValidationAlertRow(
                created_at=e.created_at, level=e.level, check=e.check, device_id=e.device_id,
                signal=e.signal, message=e.message,
            )
            for e in events
        ]


def injected_faults(store: Store) -> dict[str, str]:
    """device -> fault of its pending or active operator command."""
    FC = models.FaultCommand
    with store.session() as session:
        commands = session.exec(select(FC).where(FC.status.in_(["pending", "active"])).order_by(FC.id))  # type: ignore[attr-defined,arg-type]
        return {c.device_id: c.fault for c in commands}


def latest_readings(store: Store, profile: str) -> pd.DataFrame:
    """The newest stored reading of each device of a profile (index device_id; ts in epoch ms).

    One index seek per device: the ``device`` table's ``last_ts`` joins the readings'
    primary key.
    """
    table = store.readings_table(profile)
    D = models.Device.__table__  # type: ignore[attr-defined]
    stmt = sa.select(table).select_from(table).join(D, sa.and_(D.c.id == table.c.device_id, D.c.last_ts == table.c.ts)).where(
        D.c.profile == profile
    )
    with store.engine.connect() as conn:
        result = conn.execute(stmt)
        frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    return frame.set_index("device_id") if len(frame) else frame


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
        device_id=str(device), profile=profile, ts=int(ts), score=float(score),
        severity="reading", family=str(family or "other"), contributors=contributors_of(contributors),
        status="reading",
    )


def recent_reading_anomalies(
    store: Store, profile: str, threshold: float, since_ms: int, limit: int = MAX_TOP_ANOMALIES
) -> list[AnomalyRow]:
    """The highest stored scores above ``threshold`` newer than ``since_ms``: the top
    readings an attached console lists, as the engine lists those of its last tick.
    Their family is that of their top contributor."""
    D = models.Device.__table__  # type: ignore[attr-defined]
    S = models.Score.__table__  # type: ignore[attr-defined]
    stmt = (
        sa.select(S.c.device_id, S.c.ts, S.c.score, S.c.contributors)
        .where(S.c.profile == profile, S.c.device_id.in_(sa.select(D.c.id)), S.c.ts > since_ms, S.c.score > threshold)
        .order_by(S.c.score.desc())
        .limit(limit)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).fetchall()
    out = []
    for device, ts, score, contributors in rows:
        views = contributors_of(contributors)
        out.append(reading_anomaly(device, profile, ts, score, views[0].family if views else None, views))
    return out


def latest_scores(store: Store, profile: str) -> pd.DataFrame:
    """The newest score of each device of a profile (index device_id; columns ts, score)."""
    D = models.Device.__table__  # type: ignore[attr-defined]
    S = models.Score.__table__  # type: ignore[attr-defined]
    inner = S.alias("newest")
    newest = (
        sa.select(sa.func.max(inner.c.ts))
        .where(inner.c.profile == profile, inner.c.device_id == D.c.id)
        .correlate(D)
        .scalar_subquery()
    )
    stmt = (
        sa.select(D.c.id.label("device_id"), S.c.ts, S.c.score)
        .select_from(D)
        .join(S, sa.and_(S.c.profile == profile, S.c.device_id == D.c.id, S.c.ts == newest))
        .where(D.c.profile == profile)
    )
    with store.engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(stmt).fetchall(), columns=["device_id", "ts", "score"])
    return frame.set_index("device_id")


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


# ---------------------------------------------------------------------- loop lag
class LoopLagMonitor:
    """Measures how late the event loop wakes a sleeper: the stall a console would feel.

    Use as ``async with LoopLagMonitor() as lag: ...`` then read :attr:`samples_ms`.
    """

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.samples_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval_s)
            self.samples_ms.append(max(0.0, (loop.time() - before - self.interval_s) * 1000))

    async def __aenter__(self) -> LoopLagMonitor:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def max_ms(self) -> float:
        return max(self.samples_ms, default=0.0)

    @property
    def p95_ms(self) -> float:
        if not self.samples_ms:
            return 0.0
        return float(np.percentile(self.samples_ms, 95))


# ---------------------------------------------------------------------- the engine
Subscriber = Callable[[Snapshot], None]


class Engine(SnapshotPublisher):
    """The engine on asyncio: scheduled jobs around an :class:`EngineCore`.

    Subscribers and progress callbacks are always called on the event loop's thread.

    Args:
        settings: the loaded settings.
        lock: take the data directory's run lock (one writer of the timeline).
        schedule: run the jobs on APScheduler; False leaves ticking to the caller
            (:meth:`tick_now`), as tests and benchmarks do.
    """

    def __init__(self, settings: Settings, *, lock: bool = True, schedule: bool = True) -> None:
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
        self._lock = RunLock(settings, "itap engine") if lock else None
        SnapshotPublisher.__init__(self)
        self._scheduler: Any = None
        self._tick_lock: asyncio.Lock | None = None
        self._retrain_lock: asyncio.Lock | None = None
        self._busy = 0
        self._idle: asyncio.Event | None = None
        self._background: set[asyncio.Task[Any]] = set()

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
            self.core = await asyncio.to_thread(EngineCore, self.settings)
            if await asyncio.to_thread(self.core.needs_bootstrap):
                self.phase = "bootstrapping"
                log.info("bootstrapping %s", self.core.store.safe_url)

                def report(p: Progress) -> None:
                    if progress is not None:
                        loop.call_soon_threadsafe(progress, p)

                await asyncio.to_thread(self.core.bootstrap, report)
            await asyncio.to_thread(self.core.resume)
        except BaseException:
            if self.core is not None:
                self.core.close()
            if self._lock is not None:
                self._lock.release()
            raise
        self.phase = "running"
        await self._publish()
        log.info("engine started at simulated %s", self.core.sim_time)
        if self._schedule:
            self._start_scheduler()

    def _start_scheduler(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        e = self.settings.engine
        scheduler = AsyncIOScheduler(timezone=UTC, event_loop=asyncio.get_running_loop())
        common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        scheduler.add_job(self._job_tick, "interval", seconds=e.tick_seconds, id="tick", name="tick",
                          next_run_time=datetime.now(UTC), **common)
        scheduler.add_job(self._job_retrain, "interval", minutes=e.retrain_minutes, id="retrain", name="retrain", **common)
        scheduler.add_job(self._job_housekeeping, "interval", minutes=e.housekeeping_minutes, id="housekeeping",
                          name="housekeeping", next_run_time=datetime.now(UTC) + timedelta(seconds=5), **common)
        scheduler.start(paused=False)
        if self.paused:
            scheduler.pause_job("tick")
        self._scheduler = scheduler

    async def stop(self) -> None:
        """Stop the jobs, let a running tick finish, write the status, close the database."""
        if self.core is None:
            return
        self.phase = "stopping"
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if self._idle is not None:
            await self._idle.wait()
        core, self.core = self.core, None
        self.phase = "stopped"
        try:
            await asyncio.to_thread(self._write_status, core)
        except Exception:  # noqa: BLE001 - the database may be the problem
            log.exception("could not write the final engine status")
        await asyncio.to_thread(core.close)
        if self._lock is not None:
            self._lock.release()
        log.info("engine stopped after %d ticks", core.ticks)

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
        core.store.set_watermark(ENGINE_STATUS_KEY, json.dumps(payload))

    def _snapshot_work(self, core: EngineCore, seq: int, stats: EngineStats) -> Snapshot:
        self._write_status(core)
        return core.snapshot(seq, stats)

    async def _publish(self) -> None:
        core = self.core
        if core is None:
            return
        self.seq += 1
        try:
            snapshot = await asyncio.to_thread(self._snapshot_work, core, self.seq, self._stats())
        except Exception as error:  # noqa: BLE001 - keep showing the last picture, with the error
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
        async with self._work(), self._tick_lock:
            try:
                result = await asyncio.to_thread(core.tick, sim_seconds)
            except Exception as error:  # noqa: BLE001 - a failing tick is shown, the next one runs
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
            except Exception as error:  # noqa: BLE001
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
            except Exception as error:  # noqa: BLE001
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
