"""SQL storage: the schema, idempotent bulk ingestion and the reads the rest needs.

One :class:`Store` wraps one SQLAlchemy engine. SQLite (the embedded default) runs in
WAL mode with a busy timeout so that a console can read while cron writes; the same
code runs on PostgreSQL when ``ITAP_DB_URL`` names it, because every statement is
built by SQLAlchemy for the connected dialect.

Ingestion is the hot path. It never builds an ORM object or runs a SELECT per row:
the frame's columns become tuples with numpy, and each batch is one
``INSERT ... ON CONFLICT DO NOTHING`` executemany inside one transaction (on
PostgreSQL, a binary COPY into a staging table and one ``INSERT ... SELECT ... ON
CONFLICT DO NOTHING``, in time-partitioned tables: see :mod:`itap_engine.store.postgres`). A batch is
all or nothing, so a process killed mid-ingest leaves whole batches behind and a rerun
inserts exactly what is missing. The driver's rowcount gives the inserted count; the
rest of the batch were duplicates, or conflicts (same key, other values), told apart
by one SELECT per such batch (:mod:`itap_engine.store.batches`) and handled by
``[import] on_conflict``. A batch the database refuses (a NUL byte PostgreSQL will not
store, a value the driver cannot bind) is split in halves until the refused rows are
alone: the rest lands and the refused rows come back with the database's error. A
write that fails for the database itself (disk full, locked, gone) is a
:class:`StoreError`, one line; batches committed before it stay.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Session, SQLModel, select

from itap_engine.config import ProfileSpec, Settings
from itap_engine.errors import ItapError
from itap_engine.store import postgres as pg
from itap_engine.store import schema as models
from itap_engine.store.db_url import DatabaseUrlError, check_database_url
from itap_engine.store.schema import Run, ValidationEvent, Watermark, utcnow
from itap_engine.store.upgrade import upgrade_schema

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

READING_KEYS = ("device_id", "ts")
LABEL_COLUMNS = ("fault", "changepoint")
"""Ground truth stored beside readings: for evaluation only, never fed to a model."""


class StoreError(ItapError):
    """The database could not be reached or used; the message is one line."""


_NO_ROWS: list[pd.DataFrame] = []


def _no_rows() -> pd.DataFrame:
    """An empty rows frame (position, device_id, ts, reason): a copy of one built once,
    since building a frame costs a millisecond and every insert returns two."""
    if not _NO_ROWS:
        import pandas as pd

        _NO_ROWS.append(
            pd.DataFrame(
                {
                    "position": pd.Series([], dtype="int64"),
                    "device_id": pd.Series([], dtype=object),
                    "ts": pd.Series([], dtype="int64"),
                    "reason": pd.Series([], dtype=object),
                }
            )
        )
    return _NO_ROWS[0].copy()


@dataclass(frozen=True)
class InsertResult:
    """What one :meth:`Store.insert_readings` did. ``rows == inserted + duplicates +
    conflicts + len(failed)``."""

    rows: int
    inserted: int
    conflicts: int = 0
    conflicting: pd.DataFrame = field(default_factory=_no_rows)
    """Rows whose key was stored with other values: position (in the frame), device_id,
    ts (epoch ms), reason (the values that differ, stored -> new)."""
    failed: pd.DataFrame = field(default_factory=_no_rows)
    """Rows the database refused, alone in their batch: position, device_id, ts, reason."""
    conflict_seconds: float = 0.0
    """Time spent comparing keys already stored with the new values (the conflict check)."""

    @property
    def duplicates(self) -> int:
        return self.rows - self.inserted - self.conflicts - len(self.failed)


REFUSED = (sa.exc.StatementError, OverflowError)
"""Errors a batch's rows can cause (the database or its driver refusing a value; sqlite3
raises a bare OverflowError for an integer it cannot store); the batch is bisected to
find them. Anything else is a bug and propagates."""


def to_epoch_ms(values: Any) -> np.ndarray:
    """Datetimes (naive = UTC) as int64 milliseconds since the epoch."""
    import numpy as np
    import pandas as pd

    stamps = pd.to_datetime(pd.Series(values), utc=False)
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return stamps.to_numpy(dtype="datetime64[ms]").astype(np.int64)


def from_epoch_ms(values: Any) -> pd.Series:
    """int64 milliseconds since the epoch as naive UTC datetimes."""
    import pandas as pd

    return pd.to_datetime(pd.Series(values, dtype="int64"), unit="ms")


def readings_table_name(profile: str) -> str:
    return f"readings_{profile}"


def _column_values(series: pd.Series) -> list[Any]:
    """A column as Python values for a DB driver, with NaN/NA as None."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_float_dtype(series.dtype):
        array = series.to_numpy(dtype=float)
        missing = np.isnan(array)
        if not missing.any():
            return array.tolist()
        out = array.astype(object)
        out[missing] = None
        return out.tolist()
    if pd.api.types.is_integer_dtype(series.dtype) and not series.hasnans:
        return series.to_numpy().tolist()
    out = series.astype(object).to_numpy(copy=True)
    out[pd.isna(out)] = None
    return out.tolist()


class Store:
    """The database of one ITAP installation.

    Args:
        settings: the loaded settings; the URL comes from ``settings.database_url``.
        url: overrides the URL (tests, benchmarks).
    """

    def __init__(
        self,
        settings: Settings,
        url: str | None = None,
        *,
        wal_autocheckpoint: int | None = None,
        cache_kib: int | None = None,
    ) -> None:
        self.settings = settings
        self.url = url or settings.database_url
        try:
            check_database_url(self.url)  # one line for mysql://, or a driver not installed
        except DatabaseUrlError as error:
            raise StoreError(str(error)) from None
        try:
            self.engine = self._create_engine(self.url, settings.database.busy_timeout_ms, wal_autocheckpoint)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, OSError) as error:
            raise StoreError(f"cannot open database {_safe(self.url)}: {_first_line(error)}") from None
        if cache_kib is not None and self.engine.dialect.name == "sqlite":
            _set_cache_size(self.engine, cache_kib)
        self.metadata = SQLModel.metadata
        self._readings: dict[str, sa.Table] = {}
        self._insert_sql: dict[str, tuple[str, list[str], bool]] = {}
        self._compiled: dict[str, tuple[str, list[str] | None]] = {}
        self._known_devices: set[str] = set()
        """Device ids this process knows to have a ``device`` row."""
        self.partitions: pg.TimePartitions | None = None
        """Time partitions (PostgreSQL); None on SQLite."""
        if self.engine.dialect.name == "postgresql":
            self.partitions = pg.TimePartitions(int(settings.database.partition_hours * 3600 * 1000))
        try:
            with self.engine.begin() as conn:
                if self.partitions is not None:
                    pg.schema_lock(conn)  # two processes opening a new database at once
                SQLModel.metadata.create_all(conn, tables=[t.__table__ for t in _FIXED_TABLES])  # type: ignore[union-attr]
                if self.partitions is not None:
                    self.partitions.setup(conn, SCORE_TABLE)
            upgrade_schema(self.engine)
            for name, spec in settings.profiles.items():
                self.ensure_profile(name, spec)
            self._register_orphan_devices()
        except sa.exc.OperationalError as error:
            raise StoreError(f"cannot open database {self.safe_url}: {_first_line(error.orig)}") from None

    # ------------------------------------------------------------------ connection
    @staticmethod
    def _create_engine(url: str, busy_timeout_ms: int, wal_autocheckpoint: int | None) -> sa.Engine:
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # LIFO: the connection used last (its page cache warm with the pages the
            # engine's tick writes) is the next one handed out
            engine = sa.create_engine(
                url,
                connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
                pool_use_lifo=True,
            )

            @sa.event.listens_for(engine, "connect")
            def _pragmas(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
                cursor.execute("PRAGMA synchronous=NORMAL")
                if wal_autocheckpoint is not None:
                    cursor.execute(f"PRAGMA wal_autocheckpoint={int(wal_autocheckpoint)}")
                cursor.close()

            return engine
        return sa.create_engine(url, pool_pre_ping=True)

    def checkpoint(self) -> None:
        """Copy the SQLite write-ahead log into the database file (PASSIVE: never
        waits for readers or writers); nothing to do on PostgreSQL.

        A store opened with ``wal_autocheckpoint=0`` relies on its owner calling this:
        the engine does every few ticks, so a page that every tick changes (the
        newest readings of a device) is copied once per checkpoint, not once per tick.
        """
        if self.engine.dialect.name != "sqlite":
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        return _safe(self.url)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    @contextlib.contextmanager
    def writing(self, what: str = "write to") -> Iterator[None]:
        """Turn a failure of the database itself (disk full, locked, unreachable) into
        one :class:`StoreError` line."""
        try:
            yield
        except sa.exc.OperationalError as error:
            raise StoreError(
                f"cannot {what} database {self.safe_url}: {_first_line(error.orig)}; "
                "what was stored before stays: fix the cause and run again"
            ) from None

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ readings schema
    def ensure_profile(self, name: str, spec: ProfileSpec) -> sa.Table:
        """The wide readings table of a profile, created if it does not exist."""
        table = self._readings.get(name)
        if table is not None:
            return table
        table_name = readings_table_name(name)
        if table_name in self.metadata.tables:
            table = self.metadata.tables[table_name]
        else:
            table = sa.Table(
                table_name,
                self.metadata,
                sa.Column("device_id", sa.String(128), primary_key=True),
                sa.Column("ts", sa.BigInteger, primary_key=True),
                sa.Column("state", sa.String(32)),
                *(sa.Column(signal, sa.Float) for signal in spec.signals),
                sa.Column("fault", sa.String(64)),
                sa.Column("changepoint", sa.SmallInteger),
                sqlite_with_rowid=False,
                postgresql_partition_by=pg.PARTITION_BY,
            )
        # No secondary B-tree on ts: it would double the cost of every insert, and the
        # primary key (device_id, ts) serves the per-device reads the product makes.
        # PostgreSQL gets a BRIN index on ts (tiny, cheap to maintain) per partition.
        with self.engine.begin() as conn:
            if self.partitions is not None:
                pg.schema_lock(conn)
            table.create(conn, checkfirst=True)
            if self.partitions is not None:
                self.partitions.setup(conn, table_name)
        self._readings[name] = table
        return table

    def readings_table(self, profile: str) -> sa.Table:
        try:
            return self._readings[profile]
        except KeyError:
            raise StoreError(f"no readings table for profile {profile!r}") from None

    def _insert_statement(self, profile: str) -> tuple[str, list[str], bool]:
        """The dialect's INSERT ... ON CONFLICT DO NOTHING, compiled once per profile."""
        cached = self._insert_sql.get(profile)
        if cached:
            return cached
        table = self.readings_table(profile)
        stmt = self._dialect_insert(table).on_conflict_do_nothing(index_elements=list(READING_KEYS))
        compiled = stmt.compile(dialect=self.engine.dialect)
        columns = [c.name for c in table.columns]
        if compiled.positional:
            order = list(compiled.positiontup or columns)
            result = (str(compiled), order, True)
        else:
            result = (str(compiled), columns, False)
        self._insert_sql[profile] = result
        return result

    def executemany(self, key: str, build: Callable[[], sa.Executable], rows: Sequence[Mapping[str, Any]]) -> int:
        """Run a statement once per row (in one transaction) through the driver's executemany.

        ``build`` makes the statement the first time ``key`` is used; it is compiled
        once and the rows go to the driver as plain tuples (or dicts, for a driver
        with named parameters), skipping SQLAlchemy's per-row parameter processing.
        Returns the rows affected.
        """
        if not rows:
            return 0
        cached = self._compiled.get(key)
        if cached is None:
            compiled = build().compile(dialect=self.engine.dialect)  # type: ignore[attr-defined]
            names = list(compiled.positiontup or []) if compiled.positional else None
            cached = self._compiled[key] = (str(compiled), names)
        sql, names = cached
        params: list[Any] = [tuple(row[n] for n in names) for row in rows] if names is not None else list(rows)
        with self.writing(), self.engine.begin() as conn:
            return max(conn.exec_driver_sql(sql, params).rowcount, 0)

    def executemany_tuples(
        self, key: str, build: Callable[[], sa.Executable], names: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> int:
        """:meth:`executemany` with each row a tuple of the parameters ``names`` (no
        dict per row: a 10,000-device tick passes 10,000 rows)."""
        if not rows:
            return 0
        cached = self._compiled.get(key)
        if cached is None:
            compiled = build().compile(dialect=self.engine.dialect)  # type: ignore[attr-defined]
            order = list(compiled.positiontup or []) if compiled.positional else None
            cached = self._compiled[key] = (str(compiled), order)
        sql, order = cached
        params: Sequence[Any]
        if order is None:
            params = [dict(zip(names, row, strict=True)) for row in rows]
        elif order == list(names):
            params = rows
        else:
            at = [list(names).index(n) for n in order]
            params = [tuple(row[i] for i in at) for row in rows]
        with self.writing(), self.engine.begin() as conn:
            return max(conn.exec_driver_sql(sql, params).rowcount, 0)

    # ------------------------------------------------------------------ ingestion
    def insert_readings(
        self, profile: str, frame: pd.DataFrame, batch_rows: int | None = None, *, on_conflict: str | None = None
    ) -> InsertResult:
        """Insert readings, skipping (device_id, ts) already stored.

        ``frame`` has ``device_id``, ``ts`` (datetime64 or epoch ms), and any of the
        profile's signal, state and label columns; missing ones are stored as NULL.
        Each batch is one transaction. A key already stored with other values (in the
        columns the frame has) is a conflict, handled by ``on_conflict`` (default
        ``[import] on_conflict``): ``replace`` updates the stored row, ``quarantine``
        and ``keep_first`` leave it (the caller quarantines ``conflicting`` rows).
        """
        import numpy as np
        import pandas as pd

        from itap_engine.store.batches import find_conflicts, replace_rows

        if frame.empty:
            return InsertResult(0, 0)
        policy = on_conflict or self.settings.import_.on_conflict
        sql, order, positional = self._insert_statement(profile)
        table = self.readings_table(profile)
        batch = batch_rows or self.settings.database.batch_rows
        columns: dict[str, list[Any]] = {}
        for name in order:
            if name == "ts" and not pd.api.types.is_integer_dtype(frame["ts"].dtype):
                columns[name] = to_epoch_ms(frame["ts"]).tolist()
            elif name in frame.columns:
                columns[name] = _column_values(frame[name])
            else:
                columns[name] = [None] * len(frame)
        rows = list(zip(*(columns[name] for name in order)))
        copy = self.use_copy and self.engine.dialect.name == "postgresql"
        if not positional and not copy:
            rows = [dict(zip(order, row)) for row in rows]  # type: ignore[misc]
        compare = [c for c in order if c in frame.columns and c not in READING_KEYS]
        # devices first: reads by time find readings through the device table
        self._register_new_devices(profile, frame["device_id"].unique())
        if self.partitions is not None:
            self.partitions.ensure(self.engine, table.name, columns["ts"])
        keys = pg.BatchKeys(frame["device_id"], columns["ts"]) if copy else None
        outcome = _Outcome(table, columns, compare, policy)
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            if copy:
                assert keys is not None
                copied = self._copy_batch(table, order, chunk, keys, start)
                if copied is not None:
                    outcome.inserted += copied
                    if copied < len(chunk) and compare:  # some keys were stored: duplicates or conflicts?
                        checked = time.perf_counter()
                        with self.writing(), self.engine.begin() as conn:
                            found = find_conflicts(conn, table, columns, start, start + len(chunk), compare)
                            if len(found) and policy == "replace":
                                replace_rows(conn, table, columns, found["position"].tolist(), compare)
                        outcome.conflict_seconds += time.perf_counter() - checked
                        if len(found):
                            outcome.conflicts.append(found)
                    continue
                if not positional:
                    chunk = [dict(zip(order, row, strict=True)) for row in chunk]  # type: ignore[misc]
            self._write_batch(sql, chunk, start, outcome)
        failed = pd.DataFrame(outcome.failed, columns=["position", "reason"])
        if len(failed):
            failed.insert(1, "device_id", [columns["device_id"][p] for p in failed["position"]])
            failed.insert(2, "ts", [columns["ts"][p] for p in failed["position"]])
            stored = np.ones(len(frame), dtype=bool)
            stored[failed["position"].to_numpy(dtype=np.int64)] = False
            self._touch_devices(profile, frame[stored])
        else:
            failed = _no_rows()
            self._touch_devices(profile, frame)
        conflicting = pd.concat(outcome.conflicts, ignore_index=True) if outcome.conflicts else _no_rows()
        return InsertResult(
            len(frame),
            outcome.inserted,
            len(conflicting),
            conflicting,
            failed,
            conflict_seconds=outcome.conflict_seconds,
        )

    def _write_batch(self, sql: str, rows: list[Any], start: int, outcome: _Outcome) -> None:
        """One batch in one transaction; a batch the database refuses is bisected."""
        from itap_engine.store.batches import find_conflicts, replace_rows

        refused: BaseException | None = None
        found = None
        inserted = 0
        try:
            with self.writing(), self.engine.begin() as conn:
                try:
                    inserted = max(conn.exec_driver_sql(sql, rows).rowcount, 0)
                except sa.exc.OperationalError:
                    raise
                except REFUSED as error:
                    refused = error
                    raise _Rollback from None
                if inserted < len(rows) and outcome.compare:
                    checked = time.perf_counter()
                    found = find_conflicts(
                        conn, outcome.table, outcome.columns, start, start + len(rows), outcome.compare
                    )
                    if len(found) and outcome.policy == "replace":
                        replace_rows(conn, outcome.table, outcome.columns, found["position"].tolist(), outcome.compare)
                    outcome.conflict_seconds += time.perf_counter() - checked
        except _Rollback:
            pass
        if refused is not None:
            if len(rows) == 1:
                cause = getattr(refused, "orig", None) or refused
                outcome.failed.append((start, f"refused by the database: {_first_line(cause)}"))
                return
            half = len(rows) // 2
            self._write_batch(sql, rows[:half], start, outcome)
            self._write_batch(sql, rows[half:], start + half, outcome)
            return
        outcome.inserted += inserted
        if found is not None and len(found):
            outcome.conflicts.append(found)

    use_copy = True
    """Bulk-load readings with COPY on PostgreSQL (False: executemany, as on SQLite;
    the benchmark compares both)."""
    copy_direct = True
    """COPY a batch that cannot conflict straight into the table (False: every batch
    through the staging table; the benchmark measures both)."""

    def _copy_batch(
        self,
        table: sa.Table,
        order: list[str],
        chunk: Sequence[Sequence[Any]],
        keys: pg.BatchKeys,
        start: int,
        conflict_keys: Sequence[str] = READING_KEYS,
        fixed: Mapping[str, Any] | None = None,
    ) -> int | None:
        """One batch by COPY on PostgreSQL, in one transaction: rows inserted, or None
        when the server refused the data (the batch then goes through executemany,
        whose errors say which row).

        A batch without a repeated key whose devices have no stored row in their
        time spans is copied straight into the table; otherwise, or if a concurrent
        writer stored one of its keys meanwhile, through a staging table.
        """
        import psycopg

        stop = start + len(chunk)
        try:
            if self.copy_direct and not keys.repeated[start:stop].any():
                spans = keys.spans(start, stop)
                try:
                    with self.engine.begin() as conn:
                        if not pg.any_stored(conn, table, spans, fixed):
                            return pg.copy_new(conn, table, order, chunk)
                except psycopg.errors.UniqueViolation:
                    log.info("rows of a new batch appeared meanwhile in %s; copying it through staging", table.name)
            with self.engine.begin() as conn:
                return pg.copy_insert(conn, table, order, chunk, conflict_keys)
        except (psycopg.DataError, psycopg.IntegrityError, TypeError, ValueError) as error:
            # e.g. a NUL in a text value, a NULL key, a value of the wrong type
            log.warning("COPY into %s failed (%s); inserting the batch row by row", table.name, _first_line(error))
            return None

    def copy_rows(
        self, table_name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], keys: Sequence[str]
    ) -> int | None:
        """Insert rows (tuples in ``columns`` order, with ``device_id`` and ``ts``)
        skipping existing ``keys``, by COPY as :meth:`insert_readings` does, in batches
        of ``database.batch_rows``; returns rows inserted, or None on SQLite (the caller
        then uses :meth:`executemany`).

        Raises:
            StoreError: the server refused a batch.
        """
        if self.engine.dialect.name != "postgresql":
            return None
        if not rows:
            return 0
        table = self.metadata.tables[table_name]
        at = {c: i for i, c in enumerate(columns)}
        device_ids = [row[at["device_id"]] for row in rows]
        stamps = [row[at["ts"]] for row in rows]
        self.ensure_time_partitions(table_name, stamps)
        batch_keys = pg.BatchKeys(device_ids, stamps)
        # key columns besides device_id and ts (a score's profile) must have one value
        # for the rows to go straight in; the check then probes the key with it
        fixed: dict[str, Any] = {}
        for name in keys:
            if name not in READING_KEYS:
                values = {row[at[name]] for row in rows}
                if len(values) != 1:
                    batch_keys.repeated[:] = True  # no straight path: staging handles it
                    break
                fixed[name] = values.pop()
        batch = self.settings.database.batch_rows
        inserted = 0
        for start in range(0, len(rows), batch):
            copied = self._copy_batch(table, list(columns), rows[start : start + batch], batch_keys, start, keys, fixed)
            if copied is None:
                raise StoreError(f"the database refused rows for {table_name} (see the log)")
            inserted += copied
        return inserted

    def ensure_time_partitions(self, table: str, ts_ms: Any) -> None:
        """Make sure the partitions exist for rows with these times (epoch ms) of a
        time-partitioned table (``score`` or a readings table); a no-op on SQLite."""
        if self.partitions is not None:
            self.partitions.ensure(self.engine, table, ts_ms)

    def expire_before(self, cutoff_ms: int, devices: Mapping[str, Sequence[str]]) -> dict[str, int]:
        """Retention: remove readings and scores older than ``cutoff_ms``.

        ``devices`` maps each profile to the devices whose rows go; no other device's
        row is touched. On partitioned PostgreSQL tables a partition older than the
        cut-off is dropped whole when it holds only those devices' rows
        (``*_partitions`` counts them); elsewhere rows are deleted device by device
        along the primary key, so each statement is an index range and the write lock
        is held briefly.
        """
        out: dict[str, int] = {}
        score_table = models.Score.__table__  # type: ignore[attr-defined]
        parts = self.partitions
        if parts is not None and SCORE_TABLE in parts.partitioned:
            every = [d for ids in devices.values() for d in ids]
            out["scores_partitions"], out["scores_default"] = parts.drop_before(
                self.engine, SCORE_TABLE, cutoff_ms, every
            )
        for profile, ids in devices.items():
            if not ids or profile not in self._readings:
                continue
            table = self.readings_table(profile)
            with self.engine.begin() as conn:
                if parts is not None and table.name in parts.partitioned:
                    out[f"readings_{profile}_partitions"], out[f"readings_{profile}"] = parts.drop_before(
                        self.engine, table.name, cutoff_ms, ids
                    )
                else:
                    r = conn.execute(
                        sa.delete(table).where(table.c.device_id == sa.bindparam("d"), table.c.ts < cutoff_ms),
                        [{"d": d} for d in ids],
                    )
                    out[f"readings_{profile}"] = max(r.rowcount, 0)
                if parts is None or SCORE_TABLE not in parts.partitioned:
                    s = conn.execute(
                        sa.delete(score_table).where(
                            score_table.c.profile == profile,
                            score_table.c.device_id == sa.bindparam("d"),
                            score_table.c.ts < cutoff_ms,
                        ),
                        [{"d": d} for d in ids],
                    )
                    out[f"scores_{profile}"] = max(s.rowcount, 0)
        return out

    def _register_new_devices(self, profile: str, device_ids: Iterable[Any]) -> None:
        """Insert a ``device`` row for ids not seen before (``ON CONFLICT DO NOTHING``, so
        two processes registering the same new device do not collide).

        Every device with readings has a device row, written before its readings:
        :meth:`read_readings` finds a time range through it. Device rows are never
        deleted, so the ids cached here stay true.
        """
        ids = {str(i) for i in device_ids} - self._known_devices
        if not ids:
            return
        device = models.Device.__table__  # type: ignore[attr-defined]
        rows = [{"id": i, "profile": profile} for i in sorted(ids)]
        self.executemany(
            "register_device",
            lambda: (
                self._dialect_insert(device)
                .values(id=sa.bindparam("id"), profile=sa.bindparam("profile"))
                .on_conflict_do_nothing(index_elements=["id"])
            ),
            rows,
        )
        self._known_devices |= ids

    def _dialect_insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT (it has ``on_conflict_do_nothing``)."""
        from sqlalchemy.dialects import postgresql, sqlite

        return (postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert)(table)

    def _register_orphan_devices(self) -> None:
        """Give a device row to readings written without one, once per database.

        Before devices were registered ahead of their readings, an ingest killed
        between the two left such readings; a read by time (through the device table)
        would not see them.
        """
        if self.get_watermark(_ORPHANS_CHECKED_KEY) is not None:
            return
        device = models.Device.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as conn:
            for name, table in self._readings.items():
                known = sa.select(device.c.id)
                orphans = (
                    sa.select(table.c.device_id, sa.literal(name)).where(table.c.device_id.not_in(known)).distinct()
                )
                conn.execute(sa.insert(device).from_select(["id", "profile"], orphans))
        self.set_watermark(_ORPHANS_CHECKED_KEY, utcnow().isoformat())

    def _touch_devices(self, profile: str, frame: pd.DataFrame) -> None:
        """Widen the first/last reading time of the (registered) devices in a frame:
        one executemany UPDATE whatever the number of devices."""
        import numpy as np
        import pandas as pd

        ts = frame["ts"] if pd.api.types.is_integer_dtype(frame["ts"].dtype) else pd.Series(to_epoch_ms(frame["ts"]))
        # per device (sorted, as a groupby gives them): its first and last time
        codes, uniques = pd.factorize(frame["device_id"].to_numpy(), sort=True)
        stamps = ts.to_numpy(dtype=np.int64)
        if (codes < 0).any():  # no id: not a device
            stamps, codes = stamps[codes >= 0], codes[codes >= 0]
        first = np.full(len(uniques), np.iinfo(np.int64).max, dtype=np.int64)
        last = np.full(len(uniques), np.iinfo(np.int64).min, dtype=np.int64)
        np.minimum.at(first, codes, stamps)
        np.maximum.at(last, codes, stamps)
        ids = [str(i) for i in uniques]
        if self.partitions is not None:  # PostgreSQL: one UPDATE ... FROM unnest, not one per device
            with self.engine.begin() as conn:
                pg.widen_device_spans(conn, ids, first.tolist(), last.tolist())
            return
        pairs, group = np.unique(np.stack([first, last], axis=1), axis=0, return_inverse=True)
        if self.engine.dialect.name == "sqlite" and len(pairs) * _SPAN_GROUP_MIN <= len(ids):
            # a tick's devices mostly share one span (the interval's grid): one UPDATE
            # per span and chunk of ids instead of one per device
            self._widen_spans_grouped(ids, pairs.tolist(), group.reshape(-1))
            return
        rows = list(zip(ids, first.tolist(), last.tolist()))
        self.executemany_tuples("device_spans", _device_span_update, ("b_id", "b_first", "b_last"), rows)

    def _widen_spans_grouped(self, ids: list[str], pairs: list[list[int]], group: np.ndarray) -> None:
        """Widen the spans of devices ``ids`` to ``pairs[group[i]]`` (first, last): on
        SQLite, one ``UPDATE ... WHERE id IN (...)`` per span and chunk of ids, in one
        transaction."""
        import numpy as np

        order = np.argsort(group, kind="stable")
        bounds = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0, True])
        with self.writing(), self.engine.begin() as conn:
            for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
                first, last = pairs[int(group[order[lo]])]
                members = [ids[i] for i in order[lo:hi].tolist()]
                for start in range(0, len(members), _SPAN_CHUNK):
                    chunk = members[start : start + _SPAN_CHUNK]
                    conn.exec_driver_sql(_span_in_sql(len(chunk)), (first, first, last, last, *chunk))

    def register_devices(self, profile: str, device_ids: Iterable[str], sites: Sequence[str] = ()) -> None:
        """Declare devices (with a site) before they report."""
        device_ids = list(device_ids)
        with self.session() as session:
            known = {d.id for d in session.exec(select(models.Device).where(models.Device.id.in_(device_ids)))}  # type: ignore[attr-defined]
            for i, device_id in enumerate(device_ids):
                if device_id not in known:
                    site = sites[i % len(sites)] if sites else None
                    session.add(models.Device(id=device_id, profile=profile, site=site))
            session.commit()

    def quarantine(self, rows: pd.DataFrame, *, source: str, run_id: int | None) -> int:
        """Store rejected rows with their reason.

        ``rows`` has a ``reason`` column, optionally ``line``, ``device_id``, ``ts``
        (epoch ms) and ``raw`` (the row as received, JSON); other columns are folded
        into ``raw`` when it is absent.
        """
        import pandas as pd

        from itap_engine.store.batches import cap_raw, row_keys

        if rows.empty:
            return 0
        now = utcnow()
        payload_columns = [c for c in rows.columns if c not in ("reason", "line", "raw")]
        if "raw" in rows.columns:
            raw = rows["raw"].astype(str).tolist()
        else:
            raw = [
                json.dumps(record, default=str)
                for record in rows[payload_columns]
                .astype(object)
                .where(rows[payload_columns].notna(), None)
                .to_dict("records")
            ]
        table = models.Quarantine.__table__  # type: ignore[attr-defined]
        reasons = rows["reason"].astype(str).tolist()

        def column(name: str, cast: Any) -> list[Any]:
            if name not in rows.columns:
                return [None] * len(rows)
            return [None if pd.isna(v) else cast(v) for v in rows[name].tolist()]

        lines = column("line", int)
        keys = row_keys(source, lines, reasons, raw)
        limit = self.settings.import_.quarantine_raw_bytes
        records = [
            {
                "run_id": run_id,
                "source": source[:512],  # the column's length; the key has it whole
                "line": line,
                "device_id": device,
                "ts": ts,
                "reason": reason,
                "raw": cap_raw(payload, limit),
                "created_at": now,
                "row_key": key,
            }
            for line, device, ts, reason, payload, key in zip(
                lines, column("device_id", str), column("ts", int), reasons, raw, keys
            )
        ]
        # the same row quarantined again (a re-run, a re-delivered file) is skipped
        stmt = self._dialect_insert(table).on_conflict_do_nothing(index_elements=["row_key"])
        with self.writing(), self.engine.begin() as conn:
            conn.execute(stmt, records)
        return len(records)

    # ------------------------------------------------------------------ runs and watermarks
    def start_run(self, kind: str, source: str = "", profile: str | None = None, message: str = "") -> int:
        """A new ``running`` run row; ``message`` may name its owner (pid and host)."""
        run = Run(kind=kind, source=source[:512], profile=profile, message=message)  # the column's length
        values = {c.name: getattr(run, c.name) for c in _RUN_TABLE.columns if c.name != "id"}
        # one INSERT on a connection, not a session (an engine tick opens a run per source)
        with self.writing(), self.engine.begin() as conn:
            key = conn.execute(sa.insert(_RUN_TABLE).values(values)).inserted_primary_key
            assert key is not None
            return int(key[0])

    def finish_run(self, run_id: int, *, status: str = "ok", message: str = "", **counts: int) -> Run:
        """Close a run (:meth:`close_run`) and return it as stored."""
        self.close_run(run_id, status=status, message=message, **counts)
        with self.session() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise StoreError(f"run {run_id} does not exist")
            return run

    def close_run(self, run_id: int, *, status: str = "ok", message: str = "", **counts: int) -> None:
        """Close a run with its counts and status: one UPDATE (an engine tick closes a
        run per source), nothing read back."""
        table = _RUN_TABLE
        values: dict[str, Any] = {name: int(value) for name, value in counts.items()}
        values.update(status=status, message=message, finished_at=utcnow())
        with self.writing(), self.engine.begin() as conn:
            if not conn.execute(sa.update(table).where(table.c.id == run_id).values(values)).rowcount:
                raise StoreError(f"run {run_id} does not exist")

    def abort_stale_runs(self, kinds: Sequence[str] | None = None, ids: Sequence[int] | None = None) -> int:
        """Mark runs left 'running' by a killed process as aborted (all of them, or
        those of ``kinds``, or those of ``ids``)."""
        stmt = (
            sa.update(Run)
            .where(Run.status == "running")  # type: ignore[arg-type]
            .values(status="aborted", finished_at=utcnow(), message="process ended before the run finished")
        )
        if kinds:
            stmt = stmt.where(Run.kind.in_(list(kinds)))  # type: ignore[attr-defined]
        if ids is not None:
            if not ids:
                return 0
            stmt = stmt.where(Run.id.in_(list(ids)))  # type: ignore[union-attr]
        with self.engine.begin() as conn:
            return conn.execute(stmt).rowcount

    def running_runs(self) -> list[tuple[int, str]]:
        """(id, message) of every run still marked running; the message names its owner."""
        with self.session() as session:
            return [(int(r.id), r.message or "") for r in session.exec(select(Run).where(Run.status == "running"))]  # type: ignore[arg-type]

    def record_validation_alerts(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Keep a run's validation alerts (run_id, created_at, level, check, device_id,
        signal, value, message) for the events view and ``itap status``."""
        if not rows:
            return
        with self.writing(), self.engine.begin() as conn:
            conn.execute(sa.insert(ValidationEvent.__table__), list(rows))  # type: ignore[attr-defined]

    def get_watermark(self, key: str) -> str | None:
        table = _WATERMARK_TABLE
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(table.c.value).where(table.c.key == key)).scalar()
        return None if value is None else str(value)

    def set_watermark(self, key: str, value: str) -> None:
        self.set_watermarks({key: value})

    def set_watermarks(self, values: Mapping[str, str]) -> None:
        """Set several watermarks in one transaction (a tick's scored watermarks): one
        upsert, no session (the engine sets a few every tick)."""
        if not values:
            return
        table = _WATERMARK_TABLE
        now = utcnow()
        stmt = self._dialect_insert(table).values(
            [{"key": key, "value": value, "updated_at": now} for key, value in values.items()]
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"], set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at}
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def watermarks_like(self, key: str) -> dict[str, str]:
        """Watermarks named ``key`` or ``key`` with a suffix (e.g. every shard's clock)."""
        table = Watermark.__table__  # type: ignore[attr-defined]
        stmt = sa.select(table.c.key, table.c.value).where(
            sa.or_(table.c.key == key, table.c.key.startswith(key + "@", autoescape=True))
        )
        with self.engine.connect() as conn:
            return {k: v for k, v in conn.execute(stmt)}

    def device_ids(self, profile: str | None = None) -> list[str]:
        """Registered device ids (of one profile), sorted."""
        device = models.Device.__table__  # type: ignore[attr-defined]
        stmt = sa.select(device.c.id).order_by(device.c.id)
        if profile is not None:
            stmt = stmt.where(device.c.profile == profile)
        with self.engine.connect() as conn:
            return [str(i) for i in conn.execute(stmt).scalars()]

    def latest_device_ts(self, device_ids: Sequence[str]) -> int | None:
        """The newest reading time among these devices (from the device table)."""
        if not device_ids:
            return None
        device = models.Device.__table__  # type: ignore[attr-defined]
        stmt = sa.select(sa.func.max(device.c.last_ts)).where(device.c.id.in_(list(device_ids)))
        with self.engine.connect() as conn:
            value = conn.execute(stmt).scalar()
        return int(value) if value is not None else None

    # ------------------------------------------------------------------ reads
    def read_readings(
        self,
        profile: str,
        *,
        device_ids: Sequence[str] | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Readings of a profile ordered by device and time; ``ts`` as epoch ms.

        ``since_ms`` is exclusive and ``until_ms`` inclusive, so successive reads with
        a watermark never see a row twice.
        """
        import numpy as np
        import pandas as pd

        table = self.readings_table(profile)
        cols = [table.c[c] for c in columns] if columns else list(table.columns)
        stmt = sa.select(*cols)
        if device_ids is not None:
            stmt = stmt.where(table.c.device_id.in_(list(device_ids)))
        elif since_ms is not None or until_ms is not None:
            # a time range alone would scan the whole table (its key is device, ts);
            # naming the devices makes it one index range per device
            device = models.Device.__table__  # type: ignore[attr-defined]
            stmt = stmt.where(table.c.device_id.in_(sa.select(device.c.id)))
        if since_ms is not None:
            stmt = stmt.where(table.c.ts > since_ms)
        if until_ms is not None:
            stmt = stmt.where(table.c.ts <= until_ms)
        stmt = stmt.order_by(table.c.device_id, table.c.ts)
        # Column-wise from plain DB-API tuples: pandas' row constructor probes every
        # SQLAlchemy Row for keys, which costs seconds per million rows.
        compiled = stmt.compile(dialect=self.engine.dialect, compile_kwargs={"render_postcompile": True})
        params = compiled.construct_params()
        bound: Any = tuple(params[key] for key in (compiled.positiontup or [])) if compiled.positional else params
        names = [c.name for c in cols]
        parts: dict[str, list[Any]] = {name: [] for name in names}
        strings: dict[str, str] = {}
        with self.engine.connect() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(str(compiled), bound)
                # a batch of rows at a time: a million DB-API tuples weigh ~0.5 GB, so a
                # long window read at once (training on W3's 4.3 M readings) would hold
                # gigabytes of Python objects before the typed columns exist
                while rows := cursor.fetchmany(_READ_BATCH_ROWS):
                    # one 2-D object array, then a column at a time: transposing the
                    # tuples in Python (zip(*rows)) costs as much as fetching them
                    grid = np.array(rows, dtype=object)
                    del rows
                    for k, name in enumerate(names):
                        parts[name].append(_column(name, grid[:, k], strings))
                    del grid
            finally:
                cursor.close()
        return pd.DataFrame({name: _joined(name, chunks) for name, chunks in parts.items()})

    def readings_like_read(
        self, profile: str, frame: pd.DataFrame, *, since_ms: int | None = None, until_ms: int | None = None
    ) -> pd.DataFrame:
        """The rows of ``frame`` (as :meth:`insert_readings` takes them) in the form
        :meth:`read_readings` returns them once stored: every column of the table, ``ts``
        as epoch ms, text with None for missing, numbers as floats, ordered by device and
        time, the time bounds applied. What a caller that has just stored ``frame`` (and
        knows nothing else was stored) would read back, without the read."""
        import numpy as np
        import pandas as pd

        table = self.readings_table(profile)
        n = len(frame)
        ts = (
            frame["ts"].to_numpy(dtype=np.int64)
            if pd.api.types.is_integer_dtype(frame["ts"].dtype)
            else to_epoch_ms(frame["ts"])
        )
        keep = np.ones(n, dtype=bool)
        if since_ms is not None:
            keep &= ts > since_ms
        if until_ms is not None:
            keep &= ts <= until_ms

        def text(name: str) -> np.ndarray:
            values = frame[name].to_numpy(dtype=object)
            missing = pd.isna(values)
            if missing.any():
                values = values.copy()
                values[missing] = None
            return values

        devices = text("device_id")
        # ORDER BY device_id, ts: SQLite compares text by its UTF-8 bytes, the order of
        # code points, as Python does; a simulated interval comes in that order already
        later = (devices[1:] > devices[:-1]) | ((devices[1:] == devices[:-1]) & (ts[1:] > ts[:-1]))
        if later.all():
            order = np.flatnonzero(keep)
        else:
            codes = pd.factorize(devices, sort=True)[0]
            order = np.lexsort((ts, codes))
            order = order[keep[order]]
        out: dict[str, Any] = {}
        for column in table.columns:
            name = column.name
            if name == "ts":
                out[name] = ts[order]
            elif name not in frame.columns:
                out[name] = _column(name, np.full(len(order), None, dtype=object))
            elif name in _TEXT_COLUMNS:
                out[name] = devices[order] if name == "device_id" else text(name)[order]
            else:  # a REAL column gives back the double stored, 0.0 for -0.0
                out[name] = frame[name].to_numpy(dtype=float)[order] + 0.0
        return pd.DataFrame({name: _joined(name, [values]) for name, values in out.items()})

    def count_readings(self, profile: str) -> int:
        table = self.readings_table(profile)
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    def latest_ts(self, profile: str) -> int | None:
        table = self.readings_table(profile)
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(sa.func.max(table.c.ts))).scalar_one()
        return int(value) if value is not None else None

    def profiles_with_data(self) -> list[str]:
        return [name for name in self._readings if self.count_readings(name) > 0]

    def iter_runs(self, limit: int = 10) -> Iterator[Run]:
        with self.session() as session:
            yield from session.exec(select(Run).order_by(Run.id.desc()).limit(limit))  # type: ignore[union-attr]

    def count(self, model: type[SQLModel], *where: Any) -> int:
        with self.session() as session:
            stmt = sa.select(sa.func.count()).select_from(model)
            for clause in where:
                stmt = stmt.where(clause)
            return int(session.exec(stmt).one()[0])  # type: ignore[call-overload]


_TEXT_COLUMNS = frozenset({"device_id", "state", "fault", "changepoint"})
_READ_BATCH_ROWS = 200_000
"""Rows :meth:`Store.read_readings` fetches and converts at a time (bounds its memory)."""


def _joined(name: str, chunks: list[Any]) -> np.ndarray:
    """The batches of one column as one array (an empty read keeps the column's type)."""
    import numpy as np

    if not chunks:
        return _column(name, np.empty(0, dtype=object))  # type: ignore[return-value]
    if len(chunks) == 1:
        return np.asarray(chunks[0])
    return np.concatenate([np.asarray(c) for c in chunks])


def _shared_text(values: np.ndarray, strings: dict[str, str] | None = None) -> np.ndarray:
    """Text values with one string object per distinct value (a device id or state repeats
    on every row; the driver returns a new string object for each), missing kept as None;
    ``strings`` carries the objects over from earlier batches."""
    import numpy as np
    import pandas as pd

    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    table = np.empty(len(uniques) + 1, dtype=object)
    shared = strings if strings is not None else {}
    table[: len(uniques)] = [shared.setdefault(u, u) for u in uniques]
    table[-1] = None
    return table[codes]


def _column(name: str, values: np.ndarray, strings: dict[str, str] | None = None) -> np.ndarray | pd.Series:
    """A readings column from DB values: int64 ``ts``, text as objects, signals as floats."""
    import numpy as np
    import pandas as pd

    if name == "ts":
        return values.astype(np.int64)
    if name in _TEXT_COLUMNS:
        return _shared_text(values, strings)
    try:
        return values.astype(float)  # None -> NaN
    except (TypeError, ValueError):  # a value that is not a number (not from our ingest)
        return pd.to_numeric(pd.Series(values), errors="coerce").astype(float).to_numpy()


_ORPHANS_CHECKED_KEY = "store.orphan_devices_checked"
_RUN_TABLE = Run.__table__  # type: ignore[attr-defined]
_WATERMARK_TABLE = Watermark.__table__  # type: ignore[attr-defined]
SCORE_TABLE = "score"
log = logging.getLogger(__name__)


def _first_line(error: BaseException | None) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _safe(url: str) -> str:
    """A URL for a message, without its password (if it parses at all)."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url.split("@")[-1]


def _set_cache_size(engine: sa.Engine, cache_kib: int) -> None:
    """Give every SQLite connection of ``engine`` a page cache of up to ``cache_kib`` KiB.

    SQLite's default (2 MiB) is smaller than what one engine tick writes at a
    thousand devices and more: a readings row and a score row per device land on one
    leaf page per device each, so with the default cache most of those pages are read
    back from the file (or the write-ahead log) every tick and spilled before the
    commit. The cache grows only as pages are used.
    """

    @sa.event.listens_for(engine, "connect")
    def _cache(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        cursor.close()


_SPAN_CHUNK = 500
"""Device ids per ``UPDATE ... WHERE id IN (...)`` (SQLite allows 999 parameters in old versions)."""
_SPAN_GROUP_MIN = 8
"""The grouped span update is used when there are at least this many devices per distinct span."""


def _span_in_sql(n: int) -> str:
    """UPDATE the spans of ``n`` devices (SQLite) to include [first, last]: parameters
    first, first, last, last, then the ids."""
    cached = _SPAN_SQL.get(n)
    if cached is None:
        cached = _SPAN_SQL[n] = (
            "UPDATE device SET "
            "first_ts = CASE WHEN first_ts IS NULL OR first_ts > ? THEN ? ELSE first_ts END, "
            "last_ts = CASE WHEN last_ts IS NULL OR last_ts < ? THEN ? ELSE last_ts END "
            f"WHERE id IN ({', '.join('?' * n)})"
        )
    return cached


_SPAN_SQL: dict[int, str] = {}


def _device_span_update() -> sa.Executable:
    """UPDATE device spans to include [b_first, b_last] for device b_id."""
    device = models.Device.__table__  # type: ignore[attr-defined]
    first, last = sa.bindparam("b_first"), sa.bindparam("b_last")  # type: ignore[var-annotated]
    return (
        sa.update(device)
        .where(device.c.id == sa.bindparam("b_id"))
        .values(
            first_ts=sa.case(
                (sa.or_(device.c.first_ts.is_(None), device.c.first_ts > first), first), else_=device.c.first_ts
            ),
            last_ts=sa.case(
                (sa.or_(device.c.last_ts.is_(None), device.c.last_ts < last), last), else_=device.c.last_ts
            ),
        )
    )


class _Rollback(Exception):
    """Leaves a transaction whose batch the database refused (rolled back, then bisected)."""


@dataclass
class _Outcome:
    """What the batches of one :meth:`Store.insert_readings` call gave so far."""

    table: sa.Table
    columns: dict[str, list[Any]]
    compare: list[str]
    policy: str
    inserted: int = 0
    conflicts: list[pd.DataFrame] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    conflict_seconds: float = 0.0


_EPOCH = datetime(1970, 1, 1)
_MS = timedelta(milliseconds=1)


def datetime_to_ms(value: datetime) -> int:
    """One datetime (naive = UTC) as epoch milliseconds, as :func:`to_epoch_ms` gives it
    (without a pandas round trip for a plain ``datetime``: the tick needs a few)."""
    if type(value) is datetime:
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return (value - _EPOCH) // _MS
    return int(to_epoch_ms([value])[0])


_FIXED_TABLES = (
    models.Device,
    models.DeviceMute,
    models.EngineEvent,
    models.IncidentNote,
    models.Run,
    models.Quarantine,
    models.ValidationEvent,
    models.ValidationProblem,
    models.ModelVersion,
    models.Score,
    models.Alert,
    models.FaultCommand,
    models.Watermark,
)
