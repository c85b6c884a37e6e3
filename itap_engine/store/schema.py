"""SQLModel tables for everything except readings.

Readings live in one wide table per profile (see :mod:`itap_engine.store.sql`), built
from the profile with SQLAlchemy Core on the same metadata. Times of readings and
scores are integers, milliseconds since the Unix epoch (UTC): they bind and compare
fast in every dialect. Times of bookkeeping rows (runs, alerts, commands) are
``datetime`` values in UTC.

JSON payloads (contributors, raw quarantined rows, feature lists) are stored as text
so that the schema stays the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Index
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Now, in UTC (how every bookkeeping time is stored)."""
    return datetime.now(UTC)


class Device(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=128)
    profile: str = Field(index=True, max_length=64)
    site: str | None = Field(default=None, max_length=64)
    line: str | None = Field(default=None, max_length=64)
    first_ts: int | None = Field(default=None, sa_type=BigInteger)
    last_ts: int | None = Field(default=None, sa_type=BigInteger)


class Run(SQLModel, table=True):
    """One pipeline cycle: a generate, an ingest, an engine tick or a cron run."""

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    source: str = Field(default="", max_length=512)
    profile: str | None = Field(default=None, max_length=64)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    rows_in: int = 0
    inserted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    """Rows whose (device_id, ts) was stored with other values ([import] on_conflict)."""
    quarantined: int = 0
    status: str = Field(default="running", max_length=16)
    """running, ok, warning, critical (a --once run's status), error, aborted (a run that never finished)."""
    message: str = ""


class Quarantine(SQLModel, table=True):
    """An input row that was not stored, and why. Stored once: ``row_key`` is unique."""

    __table_args__ = (Index("ux_quarantine_row_key", "row_key", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, index=True)
    source: str = Field(default="", max_length=512)
    line: int | None = None
    """Line in the source file (1 = header), when the row came from a file."""
    device_id: str | None = Field(default=None, index=True, max_length=128)
    ts: int | None = Field(default=None, sa_type=BigInteger)
    reason: str
    raw: str = ""
    """The row as received, JSON (beyond ``[import] quarantine_raw_bytes``: its head, length and sha256)."""
    created_at: datetime = Field(default_factory=utcnow)
    row_key: str | None = Field(default=None, max_length=64)
    """sha256 of source, line, reason and raw row: the same row quarantined again is skipped."""


class ValidationEvent(SQLModel, table=True):
    """A validation alert: a check that failed beyond its tolerance during a run."""

    __tablename__ = "validation_event"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    level: str = Field(default="warning", max_length=16)
    check: str = Field(max_length=64)
    device_id: str | None = Field(default=None, max_length=128)
    signal: str | None = Field(default=None, max_length=64)
    value: float | None = None
    message: str = ""


class ValidationProblem(SQLModel, table=True):
    """One validation problem per (device, signal, check): the ``validation_event`` rows
    of every batch that raised it, folded into first seen, last seen and a count.
    Times are data time (epoch ms of the simulated clock)."""

    __tablename__ = "validation_problem"

    id: int | None = Field(default=None, primary_key=True)
    device_id: str = Field(default="", max_length=128)
    """"" for a problem of a whole input (a schema error)."""
    signal: str = Field(default="", max_length=64)
    check: str = Field(max_length=64)
    level: str = Field(default="warning", max_length=16)
    first_ts: int = Field(sa_type=BigInteger)
    last_ts: int = Field(sa_type=BigInteger)
    count: int = 1
    message: str = ""
    """The latest message."""
    status: str = Field(default="open", index=True, max_length=16)
    """open, or resolved when a cycle no longer raises it."""
    resolved_ts: int | None = Field(default=None, sa_type=BigInteger)


class ModelVersion(SQLModel, table=True):
    __tablename__ = "model_version"

    id: int | None = Field(default=None, primary_key=True)
    profile: str = Field(index=True, max_length=64)
    detector: str = Field(max_length=64)
    path: str
    sha256: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    train_start: int | None = Field(default=None, sa_type=BigInteger)
    train_end: int | None = Field(default=None, sa_type=BigInteger)
    features: str = "[]"
    threshold: float = 0.0
    metrics: str = "{}"
    active: bool = True


class Score(SQLModel, table=True):
    # partitioned by time on PostgreSQL (store.postgres); ignored by SQLite
    __table_args__ = {"postgresql_partition_by": "RANGE (ts)"}

    profile: str = Field(primary_key=True, max_length=64)
    device_id: str = Field(primary_key=True, max_length=128)
    ts: int = Field(primary_key=True, sa_type=BigInteger)
    score: float
    """Anomaly score: higher is more anomalous."""
    model_version_id: int = Field(index=True)
    contributors: str | None = None


class Alert(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    profile: str = Field(max_length=64)
    device_id: str = Field(index=True, max_length=128)
    family: str = Field(max_length=64)
    severity: str = Field(default="warning", max_length=16)
    """warning or critical."""
    status: str = Field(default="open", index=True, max_length=16)
    """open or closed."""
    opened_ts: int = Field(sa_type=BigInteger)
    last_ts: int = Field(sa_type=BigInteger)
    closed_ts: int | None = Field(default=None, sa_type=BigInteger)
    peak_score: float = 0.0
    threshold: float = 0.0
    contributors: str = "[]"
    """JSON list of {signal, family, share}, largest first."""
    model_version_id: int | None = None
    acknowledged: bool = False
    acknowledged_at: datetime | None = None


class IncidentNote(SQLModel, table=True):
    """An operator's short note on an incident (one per incident; the last one wins)."""

    __tablename__ = "incident_note"

    alert_id: int = Field(primary_key=True)
    text: str = Field(default="", max_length=500)
    updated_at: datetime = Field(default_factory=utcnow)


class EngineEvent(SQLModel, table=True):
    """An engine log record at WARNING or above, kept for the console's events view."""

    __tablename__ = "engine_event"

    id: int | None = Field(default=None, primary_key=True)
    ts: int | None = Field(default=None, sa_type=BigInteger)
    """Data time (the simulated clock) when it was logged, if the engine had one."""
    created_at: datetime = Field(default_factory=utcnow)
    level: str = Field(default="warning", max_length=16)
    logger: str = Field(default="", max_length=128)
    message: str = ""


class DeviceMute(SQLModel, table=True):
    """An operator's mute (snooze) of a device: no new incident until ``until_ts``."""

    __tablename__ = "device_mute"

    id: int | None = Field(default=None, primary_key=True)
    device_id: str = Field(index=True, max_length=128)
    until_ts: int = Field(sa_type=BigInteger)
    """Data time (epoch ms, the simulated clock) the mute ends."""
    from_ts: int | None = Field(default=None, sa_type=BigInteger)
    """Data time it was set (a past view does not show it before then)."""
    reason: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class FaultCommand(SQLModel, table=True):
    """A fault an operator asked for; an engine in any process carries it out."""

    __tablename__ = "fault_command"

    id: int | None = Field(default=None, primary_key=True)
    device_id: str = Field(max_length=128)
    fault: str = Field(max_length=64)
    severity: float = 1.0
    duration_s: float = 600.0
    requested_at: datetime = Field(default_factory=utcnow)
    start_ts: int | None = Field(default=None, sa_type=BigInteger)
    end_ts: int | None = Field(default=None, sa_type=BigInteger)
    status: str = Field(default="pending", index=True, max_length=16)
    """pending, active, done or rejected."""
    message: str = ""


class Watermark(SQLModel, table=True):
    """Named progress markers: simulated clock, last scored reading, ..."""

    key: str = Field(primary_key=True, max_length=128)
    value: str
    updated_at: datetime = Field(default_factory=utcnow)
