"""What a database holds, for ``itap status``: devices, rows and newest reading per
profile, quarantined rows, open incidents, the engines writing to it (one, or one per
shard, from the status each writes every tick) and the last runs.

Why a module of its own: ``status`` is the command people run to see whether anything is
there, so its start-up is its cost. The queries are plain SQL with ``:name`` parameters,
and one :func:`_collect` runs them through either of two connections:

* an SQLite file that already has the current schema (every table, the upgraded columns,
  WAL, orphan devices registered) is read with the standard library's :mod:`sqlite3`:
  no SQLAlchemy, no SQLModel metadata, no ``create_all`` - nothing a
  :class:`~itap_engine.store.sql.Store` would do on open is left to do there;
* anything else (PostgreSQL, a new file, an older schema, a URL with options) opens the
  full :class:`~itap_engine.store.sql.Store` first, which creates or upgrades the schema as
  every command does, then runs the same SQL through SQLAlchemy.

Both give the same :class:`StoreSummary`.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from itap_engine.store.upgrade import COLUMNS, INDEXES
from itap_engine.store.watermarks import ENGINE_STATUS_KEY, SHARD_SUFFIX

if TYPE_CHECKING:
    from itap_engine.config import Settings

__all__ = ["EngineSummary", "ProfileSummary", "RunSummary", "StoreSummary", "read_summary"]

FIXED_TABLES = frozenset(
    {
        "device",
        "device_mute",
        "engine_event",
        "incident_note",
        "run",
        "quarantine",
        "validation_event",
        "validation_problem",
        "model_version",
        "score",
        "alert",
        "fault_command",
        "watermark",
    }
)
"""The tables :class:`~itap_engine.store.sql.Store` creates on open (a test keeps the two equal)."""
ORPHANS_CHECKED_KEY = "store.orphan_devices_checked"
"""The watermark a Store sets once it has registered orphan devices (a test keeps it equal)."""

_PLAIN_SQLITE = re.compile(r"sqlite:///(?P<path>[A-Za-z0-9_./ +~-]+)")
"""A ``sqlite:///`` URL whose path SQLAlchemy would pass to sqlite3 and print unchanged."""
_EPOCH = datetime(1970, 1, 1)

Query = Callable[[str, Mapping[str, Any]], list[tuple[Any, ...]]]
"""Runs one SQL statement with ``:name`` parameters and returns its rows."""


@dataclass(frozen=True)
class ProfileSummary:
    profile: str
    devices: int
    rows: int
    latest: datetime | None
    """The newest reading's time (data time, naive UTC); None without readings."""


@dataclass(frozen=True)
class RunSummary:
    id: int
    kind: str
    source: str
    status: str
    started_at: datetime
    rows_in: int
    inserted: int
    duplicates: int
    conflicts: int
    quarantined: int


@dataclass(frozen=True)
class EngineSummary:
    """The last status an engine wrote (``itap engine``, a console's engine), per shard."""

    shard: str | None
    """``"i/N"``; None for an engine running the whole fleet."""
    pid: int | None
    phase: str
    """``running``, ``stopped``, ``bootstrapping``, ..."""
    ticks: int
    sim_time: str | None
    heartbeat: datetime | None
    """When it last wrote (wall time, aware UTC)."""
    last_error: str | None

    def as_dict(self, now: datetime) -> dict[str, object]:
        return {
            "shard": self.shard,
            "pid": self.pid,
            "phase": self.phase,
            "ticks": self.ticks,
            "sim_time": self.sim_time,
            "heartbeat": None if self.heartbeat is None else self.heartbeat.isoformat(timespec="seconds"),
            "seconds_since_heartbeat": None
            if self.heartbeat is None
            else round((now - self.heartbeat).total_seconds()),
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class StoreSummary:
    database: str
    """The URL, without a password."""
    profiles: tuple[ProfileSummary, ...]
    quarantined: int
    open_alerts: int
    unacknowledged_alerts: int
    runs: tuple[RunSummary, ...]
    """Newest first."""
    engines: tuple[EngineSummary, ...] = ()
    """By shard; the whole-fleet engine first."""

    def as_dict(self, now: datetime | None = None) -> dict[str, object]:
        """The ``itap status --json`` document (``now``: for the heartbeats' ages)."""
        now = now or datetime.now(UTC)
        return {
            "database": self.database,
            "profiles": [
                {
                    "profile": p.profile,
                    "devices": p.devices,
                    "rows": p.rows,
                    "latest": None if p.latest is None else p.latest.isoformat(),
                }
                for p in self.profiles
            ],
            "quarantined": self.quarantined,
            "open_alerts": self.open_alerts,
            "unacknowledged_alerts": self.unacknowledged_alerts,
            "engines": [e.as_dict(now) for e in self.engines],
            "runs": [
                {
                    "id": r.id,
                    "kind": r.kind,
                    "source": r.source,
                    "status": r.status,
                    "started_at": r.started_at.isoformat(timespec="seconds"),
                    "rows_in": r.rows_in,
                    "inserted": r.inserted,
                    "duplicates": r.duplicates,
                    "conflicts": r.conflicts,
                    "quarantined": r.quarantined,
                }
                for r in self.runs
            ],
        }


def read_summary(settings: Settings, runs: int, ticks: bool = False) -> StoreSummary:
    """What the configured database holds, with the ``runs`` newest runs (engine ticks
    that went ok only with ``ticks``: two shards write several a second).

    Raises:
        StoreError: the database cannot be opened or read (through the full Store).
    """
    url = settings.database_url
    conn = _open_ready_sqlite(url, settings.profiles, settings.database.busy_timeout_ms)
    if conn is not None:
        try:
            with closing(conn):
                return _collect(
                    lambda sql, params: conn.execute(sql, params).fetchall(), url, settings.profiles, runs, ticks
                )
        except sqlite3.Error:
            pass  # whatever went wrong, the full Store reports it as every command does
    return _read_through_store(settings, runs, ticks)


def _read_through_store(settings: Settings, runs: int, ticks: bool = False) -> StoreSummary:
    import sqlalchemy as sa

    from itap_engine.store.sql import Store

    store = Store(settings)
    try:
        with store.engine.connect() as conn:
            return _collect(
                lambda sql, params: [tuple(row) for row in conn.execute(sa.text(sql), params)],
                store.safe_url,
                settings.profiles,
                runs,
                ticks,
            )
    finally:
        store.close()


def _collect(query: Query, database: str, profiles: Iterable[str], runs: int, ticks: bool = False) -> StoreSummary:
    def one(sql: str, **params: Any) -> Any:
        return query(sql, params)[0][0]

    counted = []
    for name in profiles:
        table = _quoted(f"readings_{name}")
        rows, latest = query(f"SELECT count(*), max(ts) FROM {table}", {})[0]
        counted.append(
            ProfileSummary(
                profile=name,
                devices=int(one("SELECT count(*) FROM device WHERE profile = :profile", profile=name)),
                rows=int(rows),
                latest=None if latest is None else _EPOCH + timedelta(milliseconds=int(latest)),
            )
        )
    open_alerts, unacknowledged = query(
        "SELECT count(*), count(CASE WHEN acknowledged = :no THEN 1 END) FROM alert WHERE status = 'open'",
        {"no": False},
    )[0]
    recent = query(
        "SELECT id, kind, source, status, started_at, rows_in, inserted, duplicates, conflicts, quarantined"
        " FROM run"
        + ("" if ticks else " WHERE NOT (kind = 'tick' AND status = 'ok')")
        + " ORDER BY id DESC LIMIT :runs",
        {"runs": runs},
    )
    statuses = query(
        "SELECT key, value FROM watermark WHERE key = :key OR key LIKE :sharded ORDER BY key",
        {"key": ENGINE_STATUS_KEY, "sharded": f"{ENGINE_STATUS_KEY}{SHARD_SUFFIX}%"},
    )
    return StoreSummary(
        engines=tuple(e for key, value in statuses if (e := _engine(key, value)) is not None),
        database=database,
        profiles=tuple(counted),
        quarantined=int(one("SELECT count(*) FROM quarantine")),
        open_alerts=int(open_alerts),
        unacknowledged_alerts=int(unacknowledged or 0),
        runs=tuple(
            RunSummary(
                id=int(r[0]),
                kind=r[1],
                source=r[2],
                status=r[3],
                started_at=_stored_datetime(r[4]),
                rows_in=int(r[5]),
                inserted=int(r[6]),
                duplicates=int(r[7]),
                conflicts=int(r[8]),
                quarantined=int(r[9]),
            )
            for r in recent
        ),
    )


def _engine(key: str, value: str) -> EngineSummary | None:
    """An engine's status row; None if it is not one this version wrote (never an error:
    ``status`` shows what it can)."""
    try:
        raw = json.loads(value)
        heartbeat = raw.get("heartbeat")
        return EngineSummary(
            shard=key.partition(SHARD_SUFFIX)[2] or None,
            pid=None if raw.get("pid") is None else int(raw["pid"]),
            phase=str(raw.get("phase") or "?"),
            ticks=int(raw.get("ticks") or 0),
            sim_time=None if raw.get("sim_time") is None else str(raw["sim_time"]),
            heartbeat=None if heartbeat is None else _stored_datetime(str(heartbeat)),
            last_error=None if raw.get("last_error") is None else str(raw["last_error"]),
        )
    except (AttributeError, TypeError, ValueError):
        return None


def _open_ready_sqlite(url: str, profiles: Iterable[str], busy_timeout_ms: int) -> sqlite3.Connection | None:
    """A connection to the file of ``url`` if it is an SQLite database that opening a
    Store would not change (schema complete and current, WAL on, orphan devices
    registered); None otherwise (nothing is created or written either way)."""
    match = _PLAIN_SQLITE.fullmatch(url)
    if match is None or not Path(match["path"]).is_file():
        return None
    try:
        conn = sqlite3.connect(match["path"], timeout=busy_timeout_ms / 1000)
    except sqlite3.Error:
        return None
    try:
        if _is_ready(conn, {f"readings_{p}" for p in profiles}):
            return conn
    except sqlite3.Error:
        pass
    conn.close()
    return None


def _is_ready(conn: sqlite3.Connection, readings: set[str]) -> bool:
    present = conn.execute("SELECT type, name FROM sqlite_master").fetchall()
    tables = {name for kind, name in present if kind == "table"}
    indexes = {name for kind, name in present if kind == "index"}
    if not FIXED_TABLES | readings <= tables or not {name for _, name, _ in INDEXES} <= indexes:
        return False
    for table, column, _ in COLUMNS:
        if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({_quoted(table)})")}:
            return False
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        return False
    return conn.execute("SELECT 1 FROM watermark WHERE key = ?", (ORPHANS_CHECKED_KEY,)).fetchone() is not None


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _stored_datetime(value: datetime | str) -> datetime:
    """A bookkeeping time as the tables' UTC datetime type returns it (aware, in UTC),
    from a datetime (PostgreSQL) or the text SQLite holds (``2026-01-01 05:00:00.000000``)."""
    stamp = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return stamp.replace(tzinfo=UTC) if stamp.utcoffset() is None else stamp.astimezone(UTC)
