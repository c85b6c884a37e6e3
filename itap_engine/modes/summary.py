"""The typed, frozen summary of one ``itap --once`` run.

The run builds one :class:`OnceSummary`; the status line, the plain and rich
printers read its attributes, and :meth:`OnceSummary.to_dict` gives the stable JSON
document (``schema`` ``itap.once/1``, described in :mod:`itap_engine.modes.once`)
that ``--json`` prints and the HTML report renders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from itap_engine.snapshot.dto import ContributorView

SCHEMA = "itap.once/1"
EXIT_CODES = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class Interval:
    """The simulated interval a run covered (UTC, ISO 8601)."""

    start: str | None = None
    end: str | None = None
    simulated_seconds: float = 0.0


@dataclass(frozen=True)
class RowCounts:
    """Every input row is one of: inserted, duplicate, conflict, quarantined."""

    rows_in: int = 0
    inserted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    quarantined: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "in": self.rows_in,
            "inserted": self.inserted,
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "quarantined": self.quarantined,
        }


@dataclass(frozen=True)
class SourceOutcome:
    """One simulated profile or inbox file of the run, with its accounting."""

    source: str
    profile: str | None
    """None for an inbox file that could not be read far enough to choose a profile."""
    run_id: int | None
    rows: RowCounts
    status: str
    """ok, warning or error."""
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        rows = self.rows
        return {
            "source": self.source,
            "profile": self.profile,
            "run_id": self.run_id,
            "rows_in": rows.rows_in,
            "inserted": rows.inserted,
            "duplicates": rows.duplicates,
            "conflicts": rows.conflicts,
            "quarantined": rows.quarantined,
            "status": self.status,
            "error": self.error,
        }


@dataclass(frozen=True)
class OpenIncident:
    """An incident open at the end of the run (opened by it or earlier)."""

    id: int
    device_id: str
    profile: str
    severity: str
    family: str
    opened_at: str | None
    last_at: str | None
    peak_score: float
    threshold: float
    acknowledged: bool
    contributors: tuple[ContributorView, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ValidationNote:
    """A validation alert the run raised."""

    level: str
    check: str
    device_id: str | None
    signal: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OnceSummary:
    """What one ``--once`` run did and how the fleet is now."""

    started_at: str | None
    status: str = "UNKNOWN"
    message: str = ""
    error: str | None = None
    run_id: int | None = None
    finished_at: str | None = None
    bootstrapped: bool = False
    interval: Interval = field(default_factory=Interval)
    rows: RowCounts = field(default_factory=RowCounts)
    sources: tuple[SourceOutcome, ...] = ()
    scored: int = 0
    validation_alerts: tuple[ValidationNote, ...] = ()
    opened: int = 0
    closed: int = 0
    open_incidents: tuple[OpenIncident, ...] = ()
    passed_incidents: tuple[OpenIncident, ...] = ()
    """Incidents this run opened and closed again (a fault between two runs)."""
    models: Mapping[str, int] = field(default_factory=dict)
    timings_s: Mapping[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    @property
    def total_seconds(self) -> float:
        return float(self.timings_s.get("total", 0.0))

    @classmethod
    def failed(cls, error: str, started: datetime, finished: datetime) -> OnceSummary:
        """A run that could not start or finish: UNKNOWN with its one-line error."""
        return cls(
            started_at=iso(started),
            error=error,
            message="the cycle could not run",
            finished_at=iso(finished),
        )

    def with_status(self, status: str, message: str, finished: datetime) -> OnceSummary:
        return replace(self, status=status, message=message, finished_at=iso(finished))

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON document (``--json``, the HTML report)."""
        iv = self.interval
        return {
            "schema": SCHEMA,
            "status": self.status,
            "exit_code": self.exit_code,
            "message": self.message,
            "error": self.error,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "bootstrapped": self.bootstrapped,
            "interval": {"from": iv.start, "to": iv.end, "simulated_seconds": iv.simulated_seconds},
            "rows": self.rows.to_dict(),
            "sources": [s.to_dict() for s in self.sources],
            "scored": self.scored,
            "validation_alerts": [v.to_dict() for v in self.validation_alerts],
            "alerts": {
                "opened": self.opened,
                "closed": self.closed,
                "open": [a.to_dict() for a in self.open_incidents],
                "passed": [a.to_dict() for a in self.passed_incidents],
            },
            "models": dict(self.models),
            "timings_s": dict(self.timings_s),
        }
