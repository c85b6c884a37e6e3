"""The ingestion pipeline: validate, store, quarantine, account. The one write path.

Every writer (``itap generate``, ``itap ingest``, the async engine, cron) goes through
:class:`IngestRun`, so every write gets the same guarantees:

* **Nothing is lost.** Each input row is stored in the profile's readings table,
  counted as a duplicate (its key is stored with the same values), counted as a
  conflict (its key is stored with other values; ``[import] on_conflict`` says what
  happens: quarantined with the differences, dropped, or replacing the stored row) or
  quarantined with its reason; ``rows_in == inserted + duplicates + conflicts +
  quarantined`` holds for every run (:class:`IngestReport`). A row the database
  refuses (found by bisecting its batch) is quarantined with the database's error.
  Quarantine is idempotent: a row quarantined again (same source, line, reason and
  text) is not stored twice.
* **Idempotent.** Rows whose ``(device_id, ts)`` is already stored are skipped by
  the store's ``INSERT ... ON CONFLICT DO NOTHING`` and counted as duplicates, so
  re-running an input inserts nothing, and re-running an input whose first run was
  killed inserts exactly what is missing.
* **Accounted.** A run row (``run`` table) is opened on enter and closed on exit
  with counts and a status: ``ok``, ``warning`` (rows quarantined or validation
  alerts, which are also stored in ``validationevent``) or ``error``. Runs left
  ``running`` by a process that died are marked ``aborted`` when the next run starts.

Each :meth:`IngestRun.add` validates one chunk with a :class:`~itap_engine.ingest.validate.Validator`
that lives for the whole run, so duplicates and ordering are checked across chunks.
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

import numpy as np
import pandas as pd
import psutil

from itap_engine.config import Settings
from itap_engine.errors import ItapError
from itap_engine.ingest.source import FrameSource, TelemetrySource
from itap_engine.ingest.validate import ValidationReport, ValidationResult, Validator
from itap_engine.ingest.validate.values import raw_json
from itap_engine.store.protocol import TelemetryStore
from itap_engine.store.schema import utcnow
from itap_engine.store.sql import InsertResult

__all__ = ["IngestCounts", "IngestReport", "IngestRun", "abort_dead_runs", "ingest_frame", "ingest_source"]

_OWNER = re.compile(r"^pid (\d+) on (\S+)")


class IngestCounts(Protocol):
    """The row accounting of one or more ingestion runs, as an operator reads it:
    an :class:`IngestReport`, or the runs of a fleet simulated in partitions added up
    (:class:`~itap_engine.compute.simulate.SimulateResult`)."""

    @property
    def run_id(self) -> int | str:
        """The run, or the runs as text (``12..31``)."""

    @property
    def runs(self) -> int:
        """How many runs the counts add up."""

    @property
    def source(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def rows_in(self) -> int: ...
    @property
    def inserted(self) -> int: ...
    @property
    def duplicates(self) -> int: ...
    @property
    def conflicts(self) -> int: ...
    @property
    def quarantined(self) -> int: ...
    @property
    def seconds(self) -> float: ...


@dataclass(frozen=True)
class IngestReport:
    """What one ingestion run did. Invariant: rows_in == inserted + duplicates + conflicts + quarantined."""

    run_id: int
    profile: str
    source: str
    rows_in: int
    inserted: int
    duplicates: int
    quarantined: int
    status: str
    """ok, warning (rows quarantined, conflicts or validation alerts) or error."""
    seconds: float
    validation: ValidationReport
    conflicts: int = 0
    """Rows whose (device_id, ts) was stored with other values ([import] on_conflict)."""
    conflict_examples: tuple[dict[str, Any], ...] = ()
    """The first conflicts: line, device_id, reason."""
    on_conflict: str = "quarantine"
    """What was done with conflicts: quarantine, keep_first or replace."""
    timings: dict[str, float] = field(default_factory=dict, compare=False)
    """Seconds per step: validate, ingest (store the accepted rows), conflicts (the
    comparison of keys already stored) and runs (run rows, quarantine, validation events)."""

    @property
    def runs(self) -> int:
        """One report is one run (:class:`IngestCounts`)."""
        return 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "profile": self.profile,
            "source": self.source,
            "rows_in": self.rows_in,
            "inserted": self.inserted,
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "quarantined": self.quarantined,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "on_conflict": self.on_conflict,
            "conflict_examples": list(self.conflict_examples),
            "validation": self.validation.to_dict(),
        }


def _owner_tag() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


def abort_dead_runs(store: TelemetryStore) -> int:
    """Mark runs left 'running' by a process that no longer exists as aborted.

    A running run records its owner (``pid N on HOST``) in its message; a run whose
    owner is alive on this host (another engine or cron job working right now) is
    left alone. Runs without an owner, or owned by another host, are treated as
    :meth:`Store.abort_stale_runs` treats them: aborted.
    """
    host = socket.gethostname()
    stale = []
    for run_id, message in store.running_runs():
        match = _OWNER.match(message)
        if match and match.group(2) == host and _alive(int(match.group(1))):
            continue
        stale.append(run_id)
    return store.abort_stale_runs(ids=stale) if stale else 0


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        return psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class IngestRun:
    """One ingestion run, used as a context manager.

    Args:
        store: where readings, quarantined rows, the run and its alerts go.
        settings: the loaded settings (profile, validation, batch size).
        profile: the profile the rows belong to.
        kind: the run's kind (``ingest``, ``generate``, ``tick``, ...).
        source: a file name or a description, kept with the run and quarantined rows.
        now: the clock for the "too far in the future" check (the engine passes its
            simulated time).

    Example::

        with IngestRun(store, settings, "industrial", source="a.csv") as run:
            for chunk in chunks:
                run.add(chunk)
        print(run.report.inserted)
    """

    def __init__(
        self,
        store: TelemetryStore,
        settings: Settings,
        profile: str,
        *,
        kind: str = "ingest",
        source: str = "",
        now: datetime | None = None,
        reap: bool = True,
    ) -> None:
        self.store = store
        self.settings = settings
        self.profile = profile
        self.spec = settings.profile(profile)
        self.kind = kind
        self.source = source
        self.now = now
        self.reap = reap
        """Mark runs of dead processes aborted first (the engine's ticks leave it to
        the engine's start, which does it once)."""
        self.run_id: int | None = None
        self.validator: Validator | None = None
        self.inserted = 0
        self.duplicates = 0
        self.conflicts = 0
        self.quarantined = 0
        self.rows_in = 0
        self.on_conflict = settings.import_.on_conflict
        self._conflict_examples: list[dict[str, Any]] = []
        self._started = 0.0
        self._report: IngestReport | None = None
        self.timings: dict[str, float] = {"validate": 0.0, "ingest": 0.0, "conflicts": 0.0, "runs": 0.0}
        self.kept: list[pd.DataFrame] | None = None
        """Set to a list to keep each chunk's accepted rows when all of them are now
        stored as they are (inserted, or duplicates with equal values); None from the
        first chunk that is not (conflicts, refusals, absent columns)."""

    def __enter__(self) -> IngestRun:
        began = time.perf_counter()
        with self.store.writing():
            self.store.ensure_profile(self.profile, self.spec)
            if self.reap:
                abort_dead_runs(self.store)
            # the owner tag lets abort_dead_runs spare a live run
            self.run_id = self.store.start_run(self.kind, self.source, self.profile, message=_owner_tag())
        self.validator = Validator(self.spec, self.settings.validation, now=self.now, source=self.source)
        self._started = time.perf_counter()
        self.timings["runs"] += self._started - began
        return self

    def add(self, frame: pd.DataFrame) -> None:
        """Validate one chunk, store its accepted rows and quarantine the rest."""
        if self.validator is None or self.run_id is None:
            raise RuntimeError("IngestRun.add() outside 'with IngestRun(...)'")
        began = time.perf_counter()
        result = self.validator.validate(frame)
        self.timings["validate"] += time.perf_counter() - began
        self.store_validated(frame, result)

    def store_validated(self, frame: pd.DataFrame, result: ValidationResult) -> None:
        """Store a validated chunk's accepted rows, quarantine the rest, and count them
        (rows in = inserted + duplicates + conflicts + quarantined)."""
        accepted = result.accepted
        absent = [c for c in self.spec.signal_names if c not in frame.columns and c in accepted.columns]
        if absent:  # a signal this input lacks is stored as NULL, and is no conflict with a stored value
            accepted = accepted.drop(columns=absent)
        if len(accepted):
            began = time.perf_counter()
            inserted = self.store.insert_readings(self.profile, accepted, on_conflict=self.on_conflict)
            self.timings["ingest"] += time.perf_counter() - began - inserted.conflict_seconds
            self.timings["conflicts"] += inserted.conflict_seconds
            self.inserted += inserted.inserted
            self.duplicates += inserted.duplicates
            self.conflicts += inserted.conflicts
            if self.kept is not None:
                stored_as_is = not absent and not inserted.conflicts and not len(inserted.failed)
                self.kept = [*self.kept, accepted] if stored_as_is else None
            began = time.perf_counter()
            self._store_refusals(result, inserted)
            self.timings["runs"] += time.perf_counter() - began
        if len(result.rejected):
            began = time.perf_counter()
            self.quarantined += self.store.quarantine(result.rejected, source=self.source, run_id=self.run_id)
            self.timings["runs"] += time.perf_counter() - began
        self.rows_in += result.report.rows

    def _store_refusals(self, result: ValidationResult, inserted: InsertResult) -> None:
        """Quarantine the rows the database refused (counted as quarantined) and, under
        ``on_conflict = "quarantine"``, the conflicting rows (counted as conflicts)."""
        for rows, check in ((inserted.failed, "store"), (inserted.conflicting, "conflict")):
            if not len(rows):
                continue
            positions = rows["position"].to_numpy(dtype=np.int64)
            lines: list[int | None] = [None] * len(rows)
            if result.accepted_lines is not None:
                numbers = pd.to_numeric(pd.Series(result.accepted_lines[positions]), errors="coerce")
                lines = [None if pd.isna(v) else int(v) for v in numbers]
            if check == "conflict":
                room = 20 - len(self._conflict_examples)
                self._conflict_examples.extend(
                    {"line": line, "device_id": d, "reason": r}
                    for line, d, r in list(zip(lines, rows["device_id"], rows["reason"]))[: max(room, 0)]
                )
                if self.on_conflict != "quarantine":
                    continue
            assert self.validator is not None
            quarantined = pd.DataFrame(
                {
                    "reason": rows["reason"].to_numpy(dtype=object),
                    "check": check,
                    "line": pd.array(lines, dtype="Int64"),
                    "device_id": rows["device_id"].to_numpy(dtype=object),
                    "ts": rows["ts"].to_numpy(dtype=np.int64),
                    "raw": raw_json(result.accepted, positions, self.validator.raw_names),
                }
            )
            count = self.store.quarantine(quarantined, source=self.source, run_id=self.run_id)
            if check == "store":
                self.quarantined += count

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.run_id is None or self.validator is None:
            return
        began = time.perf_counter()
        validation = self.validator.finish()
        counts = {
            "rows_in": self.rows_in,
            "inserted": self.inserted,
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "quarantined": self.quarantined,
        }
        if exc is not None:
            status = "error"
            message = str(exc) if isinstance(exc, ItapError) else f"{type(exc).__name__}: {exc}"
        else:
            self._store_alerts(validation)
            status = "warning" if (self.quarantined or self.conflicts or validation.warnings) else "ok"
            message = _summary(counts, validation)
        try:
            self.store.close_run(self.run_id, status=status, message=message[:2000], **counts)
        except Exception:
            if exc is None:
                raise
        self._report = IngestReport(
            run_id=self.run_id,
            profile=self.profile,
            source=self.source,
            status=status,
            seconds=time.perf_counter() - self._started,
            validation=validation,
            conflict_examples=tuple(self._conflict_examples),
            on_conflict=self.on_conflict,
            timings={**self.timings, "runs": self.timings["runs"] + time.perf_counter() - began},
            **counts,
        )

    def _store_alerts(self, validation: ValidationReport) -> None:
        if not validation.alerts:
            return
        now = utcnow()
        records = [
            {
                "run_id": self.run_id,
                "created_at": now,
                "level": alert.level,
                "check": alert.check,
                "device_id": alert.device_id,
                "signal": alert.signal,
                "value": alert.value,
                "message": alert.message,
            }
            for alert in validation.alerts
        ]
        self.store.record_validation_alerts(records)

    @property
    def report(self) -> IngestReport:
        """The run's report; available once the ``with`` block has exited."""
        if self._report is None:
            raise RuntimeError("IngestRun.report is available after the 'with' block")
        return self._report


def _summary(counts: dict[str, int], validation: ValidationReport) -> str:
    text = (
        f"{counts['rows_in']} rows: {counts['inserted']} inserted, {counts['duplicates']} duplicates, "
        f"{counts['conflicts']} conflicts, {counts['quarantined']} quarantined"
    )
    warnings = validation.warnings
    if warnings:
        text += f"; {len(warnings)} validation alert(s)"
    return text


def ingest_source(
    store: TelemetryStore,
    settings: Settings,
    source: TelemetrySource,
    *,
    kind: str = "ingest",
    now: datetime | None = None,
    reap: bool = True,
) -> IngestReport:
    """Validate and store every chunk of one source as one run (``reap``: see :attr:`IngestRun.reap`)."""
    with IngestRun(store, settings, source.profile, kind=kind, source=source.name, now=now, reap=reap) as run:
        assert run.validator is not None
        run.validator.raw_names = source.raw_names
        for frame in source.frames():
            run.add(frame)
    return run.report


def ingest_frame(
    store: TelemetryStore,
    settings: Settings,
    profile: str,
    frame: pd.DataFrame,
    *,
    source: str,
    kind: str = "ingest",
    now: datetime | None = None,
    reap: bool = True,
) -> IngestReport:
    """Validate and store one frame as one run (``reap``: see :attr:`IngestRun.reap`)."""
    return ingest_source(store, settings, FrameSource(source, profile, frame), kind=kind, now=now, reap=reap)
