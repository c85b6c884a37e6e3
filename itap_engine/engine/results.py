"""What one tick gave (:class:`TickResult`), its step timings (:class:`Laps`), and the
time helpers every part of the engine shares."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from itap_engine.errors import ItapError
from itap_engine.ingest.pipeline import IngestReport
from itap_engine.snapshot import ValidationAlertRow
from itap_engine.store.sql import datetime_to_ms

__all__ = ["Laps", "SourceResult", "TickResult", "source_result", "validation_rows"]


# ---------------------------------------------------------------------- time helpers
def utcnow() -> datetime:
    return datetime.now(UTC)


def naive(value: datetime) -> datetime:
    """Simulated times are naive UTC, like the simulator's grid."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def to_ms(value: datetime) -> int:
    return datetime_to_ms(naive(value))


def from_ms(value: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(milliseconds=int(value))


def short_error(error: BaseException) -> str:
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
    """The outcome of one :meth:`EngineCore.tick`.

    ``timings`` holds seconds per step (see :data:`TICK_STEPS`), ``total`` (the
    tick's work) and, every tenth tick, ``checkpoint`` (after the work, not in total).
    """

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


TICK_STEPS = (
    "commands",
    "simulate",
    "validate",
    "ingest",
    "conflicts",
    "runs",
    "inbox",
    "clock",
    "problems",
    "read",
    "score",
    "store_scores",
    "alerts",
    "fleet_view",
    "watermarks",
    "events",
)
"""The steps of a tick, in order, as ``TickResult.timings`` names them: fault
commands and model swaps; simulate; validate, ingest (the readings insert and device
spans), conflicts (the stored-value comparison of keys already stored) and runs (run
rows and validation events) of each source; inbox files; the clock watermark; the
validation problems; read the new readings; score (features and detector); store
scores; alerts (the incident tracker, mutes and maintenance windows included); the
fleet view kept for snapshots; scored watermarks; engine events."""


class Laps:
    """Accumulates seconds per step: ``laps.lap("simulate")`` charges the time since
    the previous lap (or the start) to ``simulate``; ``add`` charges measured time."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.timings: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - self.last
        self.last = now

    def skip(self) -> None:
        """Start the next lap now (the time since the last one is charged to nobody)."""
        self.last = time.perf_counter()

    def add(self, timings: dict[str, float]) -> None:
        for name, seconds in timings.items():
            self.timings[name] = self.timings.get(name, 0.0) + seconds


def source_result(report: IngestReport, source: str, profile: str | None) -> SourceResult:
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


def validation_rows(report: IngestReport, source: str | None = None) -> list[ValidationAlertRow]:
    """The report's validation alerts as rows; with ``source`` (the file's name) each
    message starts with it, so the console's problems panel says which file."""
    now = utcnow()
    prefix = f"{source}: " if source else ""
    return [
        ValidationAlertRow(
            created_at=now,
            level=a.level,
            check=a.check,
            device_id=a.device_id,
            signal=a.signal,
            message=prefix + a.message,
        )
        for a in report.validation.alerts
    ]
