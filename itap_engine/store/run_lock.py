"""Locks held in the database: the run lock (one writer per database) and named
locks (one engine per shard).

**Named locks** (:class:`DatabaseLock`): ``pg_try_advisory_lock`` on a key derived
from a name, on one dedicated connection. The lock frees when the holder releases it
or when its connection closes, which is what happens when the holding process dies,
so a waiting process takes over without any stale-lock cleanup. Sharded engines hold
one per shard (:mod:`itap_engine.engine.shards`) and one while they bootstrap.

**The run lock** (:class:`RunLock`), which is a :class:`DatabaseLock` plus a lease row
on PostgreSQL:

``itap engine`` (or the console's in-process engine) and ``itap --once`` write the
simulated timeline; two of them on one database would interleave ticks. A lock file
in the data folder only kept out runs sharing that folder: an engine in folder A and
a cron run in folder B with the same ``ITAP_DB_URL`` both wrote. So the lock is taken
where the data is:

* **PostgreSQL**: ``pg_try_advisory_lock`` on a dedicated connection held for the
  whole run. The server frees it when that connection ends, so a killed run never
  leaves a stale lock.
* **SQLite**: a lease row in the table ``run_lease`` (name, holder, host, pid,
  purpose, acquired_at, heartbeat_at, expires_at), taken inside ``BEGIN IMMEDIATE``
  (the database's write lock) so two processes cannot both take it. A heartbeat
  thread renews it every :data:`HEARTBEAT_S` seconds. A lease is taken over when its
  holder is dead (same host and its pid is gone, or the pid now belongs to a process
  started later) or silent past ``expires_at`` (a holder on another host that
  stopped renewing).

On PostgreSQL the same row is written after the advisory lock is taken, for the
message that names the holder. A second run fails at once with :class:`LockHeld`
(exit 3) naming the holder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psutil
import sqlalchemy as sa

from itap_engine.errors import ItapError
from itap_engine.store.db_url import check_database_url
from itap_engine.store.db_url import safe_url as _safe
from itap_engine.store.postgres import advisory_key

__all__ = [
    "HEARTBEAT_S",
    "LEASE_S",
    "LOCK_NAME",
    "DatabaseLock",
    "LockHeld",
    "LockUnavailable",
    "RunLock",
    "ShardLocks",
]

log = logging.getLogger(__name__)

LOCK_NAME = "itap.run"
LEASE_S = 60.0
"""A lease not renewed for this long is taken over (a holder on another host, or hung)."""
HEARTBEAT_S = 10.0
PG_LOCK_KEY = 0x17A9_0001
"""The advisory lock key (bigint) all ITAP runs of one database contend for."""
LAYOUT_CLASS = 0x17AA
"""The high 32 bits of the shard layouts' advisory keys: ``(LAYOUT_CLASS << 32) | N``
(``pg_locks`` shows them as ``classid`` LAYOUT_CLASS, ``objid`` N); next to the named
locks' space (``0x17A9``, :func:`~itap_engine.store.postgres.advisory_key`), not in it."""

_TABLE = """CREATE TABLE IF NOT EXISTS run_lease (
    name VARCHAR(64) PRIMARY KEY,
    holder VARCHAR(200) NOT NULL,
    host VARCHAR(255) NOT NULL,
    pid INTEGER NOT NULL,
    create_time DOUBLE PRECISION,
    purpose VARCHAR(200) NOT NULL,
    acquired_at VARCHAR(40) NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
)"""
_COLUMNS = "name, holder, host, pid, create_time, purpose, acquired_at, heartbeat_at, expires_at"


class LockHeld(ItapError):
    """Another ITAP process holds a lock of the database (the run lock, a shard), or the
    database cannot hold the lock asked for."""

    exit_code = 3


LockUnavailable = LockHeld
"""The name the shards' code knew it by."""


class DatabaseLock:
    """``pg_try_advisory_lock`` on a key derived from ``name``, on its own connection.

    Args:
        url: the database URL (PostgreSQL).
        name: what is locked, e.g. ``itap.shard.0/2``.
        key: the advisory key (default: :func:`~itap_engine.store.postgres.advisory_key` of ``name``).
        application_name: how the connection shows in ``pg_stat_activity``.
    """

    def __init__(
        self,
        url: str,
        name: str,
        *,
        key: int | None = None,
        application_name: str | None = None,
        shared: bool = False,
    ) -> None:
        if not url.startswith("postgresql"):
            raise LockHeld(f"{name} needs PostgreSQL (set ITAP_DB_URL=postgresql+psycopg://...)")
        self.name = name
        self.shared = shared
        """Held in share mode: any number of shared holders, no exclusive one meanwhile."""
        self.key = advisory_key(name) if key is None else key
        connect_args = {"application_name": application_name} if application_name else {}
        self._engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=connect_args)
        self._conn: sa.Connection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    @property
    def connection(self) -> sa.Connection:
        """The connection that holds the lock (raises when not held)."""
        if self._conn is None:
            raise RuntimeError(f"{self.name} is not held")
        return self._conn

    def connect(self) -> sa.Connection:
        """Another connection to the same database (to read who holds the lock)."""
        return self._engine.connect()

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True when held."""
        if self._conn is not None:
            return True
        conn = self._engine.connect()
        try:
            take = "pg_try_advisory_lock_shared" if self.shared else "pg_try_advisory_lock"
            got = bool(conn.execute(sa.text(f"SELECT {take}(:k)"), {"k": self.key}).scalar())
            conn.commit()  # leave no transaction open; the lock is the session's
        except Exception:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def acquire(
        self,
        *,
        wait: bool = True,
        poll_s: float = 1.0,
        on_wait: Callable[[], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> DatabaseLock:
        """Take the lock; with ``wait``, poll until it frees (``on_wait`` is called once
        when it first has to wait; ``stop`` returning True gives up)."""
        waited = False
        while not self.try_acquire():
            if not wait or (stop is not None and stop()):
                raise LockHeld(f"another process holds {self.name}")
            if not waited and on_wait is not None:
                on_wait()
            waited = True
            time.sleep(poll_s)
        return self

    def check(self) -> bool:
        """Whether the lock is still held: its connection answers (a connection lost
        with the server, and with it the lock, answers False and is dropped)."""
        if self._conn is None:
            return False
        try:
            self._conn.execute(sa.text("SELECT 1")).scalar()
            self._conn.commit()
            return True
        except sa.exc.DBAPIError:
            log.error("lost the connection holding %s", self.name)
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
            return False

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            with contextlib.suppress(sa.exc.DBAPIError):
                unlock = "pg_advisory_unlock_shared" if self.shared else "pg_advisory_unlock"
                conn.execute(sa.text(f"SELECT {unlock}(:k)"), {"k": self.key})
                conn.commit()
        finally:
            conn.close()

    def close(self) -> None:
        self.release()
        self._engine.dispose()

    def __enter__(self) -> DatabaseLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.close()


class ShardLocks:
    """What an engine running shard ``i/N`` holds, each on its own connection:

    * the run lock in share mode: no whole-fleet run (the console, ``itap engine`` or
      ``--once`` without a shard) meanwhile, as those take it exclusively;
    * its layout (N) in share mode, refused while an engine of another N holds its own
      (a ``0/1`` beside ``0/2`` and ``1/2`` simulated every device a second time);
    * its shard exclusively, waiting while another engine holds it (a takeover).
    """

    def __init__(self, url: str, name: str, index: int, count: int) -> None:
        if not url.startswith("postgresql"):
            raise ItapError(
                f"shard {index}/{count}: shards need PostgreSQL (set ITAP_DB_URL=postgresql+psycopg://...); "
                "SQLite has one writer: run one engine without a shard"
            )
        self.name = name
        self.label = f"{index}/{count}"
        self.count = count
        self._url = url
        self._fleet = DatabaseLock(url, LOCK_NAME, key=PG_LOCK_KEY, shared=True)
        self._layout = DatabaseLock(url, f"itap.layout.{count}", key=(LAYOUT_CLASS << 32) | count, shared=True)
        self._shard = DatabaseLock(url, name)

    def acquire(
        self, *, wait: bool = True, on_wait: Callable[[], None] | None = None, stop: Callable[[], bool] | None = None
    ) -> ShardLocks:
        try:
            if not self._fleet.try_acquire():
                raise LockHeld(
                    f"shard {self.label}: a whole-fleet ITAP run (the console, itap engine or --once without "
                    f"--shard) holds database {_safe(self._url)}; stop it first: shards and whole-fleet runs "
                    "do not share a fleet"
                )
            self._layout.acquire(wait=False)  # shared: only held exclusively by no one
            others = self._other_layouts()
            if others:
                raise LockHeld(
                    f"shard {self.label}: engines of another layout (N = {', '.join(map(str, others))}) run on "
                    f"database {_safe(self._url)}; stop them first: one layout at a time"
                )
            self._shard.acquire(wait=wait, on_wait=on_wait, stop=stop)
        except BaseException:
            self.close()
            raise
        return self

    def _other_layouts(self) -> list[int]:
        conn = self._layout.connection
        found = conn.execute(
            sa.text(
                "SELECT DISTINCT objid FROM pg_locks WHERE locktype = 'advisory' AND classid = :c"
                " AND objsubid = 1 AND granted AND database = (SELECT oid FROM pg_database"
                " WHERE datname = current_database())"
            ),
            {"c": LAYOUT_CLASS},
        ).scalars()
        others = sorted(int(n) for n in found if int(n) != self.count)
        conn.commit()
        return others

    def check(self) -> bool:
        """Whether the shard is still held (see :meth:`DatabaseLock.check`)."""
        return self._shard.check()

    def try_acquire(self) -> bool:
        """Take the shard again after its connection dropped, if no other engine did."""
        return self._shard.try_acquire()

    def close(self) -> None:
        for lock in (self._shard, self._layout, self._fleet):
            lock.close()


def _sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL, or None for an in-memory database."""
    path = url.split("///", 1)[-1] if "///" in url else ""
    path = path.split("?", 1)[0]
    return None if path in ("", ":memory:") else path


class RunLock:
    """The database's run lock (see the module docstring).

    Args:
        settings: the loaded settings; the database is ``settings.database_url``.
        purpose: what the holder is doing, for the message a second run prints
            (``"itap engine"``, ``"itap --once"``).
    """

    def __init__(self, settings: Any, purpose: str, *, url: str | None = None) -> None:
        self.url = url or settings.database_url
        self.busy_timeout_s = settings.database.busy_timeout_ms / 1000
        self.purpose = purpose
        self.held = False
        self.lost = False
        """True once a heartbeat found the lease taken by another run."""
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.token = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self._pg: sa.Connection | None = None
        self._pg_lock: DatabaseLock | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._pg_guard = threading.Lock()
        """The heartbeat and release share the PostgreSQL connection."""

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith("postgresql")

    # ------------------------------------------------------------------ public
    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`LockHeld` at once (never waits for a holder)."""
        if self.held:
            return self
        check_database_url(self.url)
        if self.is_postgres:
            self._acquire_pg()
        elif self.url.startswith("sqlite"):
            self._acquire_sqlite()
        else:  # Store refuses other databases with a clearer message
            raise ItapError(f"no run lock for database {_safe(self.url)}: ITAP runs on SQLite or PostgreSQL")
        self.held = True
        return self

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
            self._heartbeat = None
        try:
            if self.is_postgres:
                self._release_pg()
            else:
                with contextlib.closing(self._sqlite()) as conn:
                    conn.execute("DELETE FROM run_lease WHERE name = ? AND holder = ?", (LOCK_NAME, self.token))
        except Exception:
            log.exception("could not release the run lock")

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ------------------------------------------------------------------ shared
    def _row(self, now: float) -> tuple[Any, ...]:
        created = psutil.Process().create_time()
        since = datetime.now(UTC).isoformat(timespec="seconds")
        return (LOCK_NAME, self.token, self.host, self.pid, created, self.purpose[:200], since, now, now + LEASE_S)

    def _held_message(self, row: Any) -> str:
        if row is None:  # the lock is held without a lease row: in share mode, by shards
            holder = "another process, or shard engines (itap engine --shard I/N)"
        else:
            _, _, host, pid, _, purpose, since, beat, _ = row
            age = max(0.0, time.time() - float(beat))
            holder = f"{purpose}, pid {pid} on {host}, since {since}, last heartbeat {age:.0f} s ago"
        return (
            f"another ITAP run holds the run lock of database {_safe(self.url)} ({holder}); "
            "try again when it has finished"
        )

    def _stale(self, row: Any, now: float) -> bool:
        """A lease row whose holder is dead, is this process, or stopped renewing."""
        _, _holder, host, pid, created, _, _, _, expires = row
        if float(expires) < now:
            return True
        if host != self.host:
            return False  # another machine: only the lease's expiry tells
        if int(pid) == self.pid:
            return True  # left by this process (an engine that was not stopped)
        try:
            process = psutil.Process(int(pid))
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
            return created is not None and abs(process.create_time() - float(created)) > 1.0  # pid reused
        except (psutil.NoSuchProcess, ProcessLookupError):
            return True
        except psutil.AccessDenied:
            return False

    # ------------------------------------------------------------------ SQLite
    def _sqlite(self) -> sqlite3.Connection:
        path = _sqlite_path(self.url)
        assert path is not None
        from pathlib import Path

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=self.busy_timeout_s, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
        return conn

    def _acquire_sqlite(self) -> None:
        if _sqlite_path(self.url) is None:
            return  # an in-memory database has one process by definition
        try:
            conn = self._sqlite()
        except (sqlite3.Error, OSError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise ItapError(f"cannot open database {_safe(self.url)} to take the run lock: {reason}") from None
        with contextlib.closing(conn):
            try:
                conn.execute(_TABLE)
                conn.execute("BEGIN IMMEDIATE")  # the write lock: one taker at a time
                try:
                    now = time.time()
                    row = conn.execute(f"SELECT {_COLUMNS} FROM run_lease WHERE name = ?", (LOCK_NAME,)).fetchone()
                    if row is not None and not self._stale(row, now):
                        raise LockHeld(self._held_message(row))
                    if row is not None:
                        log.warning("taking over the run lock from %s (%s)", row[1], row[5])
                    conn.execute(
                        f"INSERT OR REPLACE INTO run_lease ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        self._row(now),
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as error:
                raise LockHeld(
                    f"could not take the run lock of database {_safe(self.url)}: {error}; another run is writing"
                ) from None
        self._start_heartbeat()

    def _beat_sqlite(self) -> bool:
        now = time.time()
        with contextlib.closing(self._sqlite()) as conn:
            cursor = conn.execute(
                "UPDATE run_lease SET heartbeat_at = ?, expires_at = ? WHERE name = ? AND holder = ?",
                (now, now + LEASE_S, LOCK_NAME, self.token),
            )
            return cursor.rowcount == 1

    def _start_heartbeat(self) -> None:
        self._stop.clear()

        def run() -> None:
            while not self._stop.wait(HEARTBEAT_S):
                try:
                    if not (self._beat_pg() if self.is_postgres else self._beat_sqlite()):
                        self.lost = True
                        log.error("the run lock was taken over by another run; this run no longer holds it")
                        return
                except Exception:
                    log.warning("run lock heartbeat failed", exc_info=True)

        self._heartbeat = threading.Thread(target=run, name="itap-run-lock", daemon=True)
        self._heartbeat.start()

    # ------------------------------------------------------------------ PostgreSQL
    def _acquire_pg(self) -> None:
        name = f"itap {self.purpose} {self.host}:{self.pid}"[:63]
        lock = DatabaseLock(self.url, LOCK_NAME, key=PG_LOCK_KEY, application_name=name)
        try:
            got = lock.try_acquire()
        except Exception as error:
            lock.close()
            raise ItapError(
                f"cannot connect to database {_safe(self.url)} to take the run lock: "
                f"{(str(error).strip().splitlines() or [type(error).__name__])[0]}"
            ) from None
        try:
            if not got:
                row = None
                with contextlib.suppress(Exception), lock.connect() as conn:
                    row = conn.execute(
                        sa.text(f"SELECT {_COLUMNS} FROM run_lease WHERE name = :n"), {"n": LOCK_NAME}
                    ).first()
                raise LockHeld(self._held_message(row))
            conn = lock.connection
            now = time.time()
            conn.execute(sa.text(_TABLE))
            conn.execute(sa.text("DELETE FROM run_lease WHERE name = :n"), {"n": LOCK_NAME})
            keys = _COLUMNS.split(", ")
            conn.execute(
                sa.text(f"INSERT INTO run_lease ({_COLUMNS}) VALUES ({', '.join(':' + k for k in keys)})"),
                dict(zip(keys, self._row(now))),
            )
            conn.commit()
        except BaseException:
            lock.close()
            raise
        self._pg_lock = lock
        self._pg = conn
        self._start_heartbeat()

    def _beat_pg(self) -> bool:
        assert self._pg is not None
        now = time.time()
        with self._pg_guard:
            self._pg.execute(
                sa.text("UPDATE run_lease SET heartbeat_at = :b, expires_at = :e WHERE name = :n AND holder = :h"),
                {"b": now, "e": now + LEASE_S, "n": LOCK_NAME, "h": self.token},
            )
            self._pg.commit()
        return True  # the advisory lock, not the row, is the lock: it is ours while the connection lives

    def _release_pg(self) -> None:
        conn, self._pg = self._pg, None
        lock, self._pg_lock = self._pg_lock, None
        if conn is None or lock is None:
            return
        try:
            with self._pg_guard:
                conn.execute(
                    sa.text("DELETE FROM run_lease WHERE name = :n AND holder = :h"), {"n": LOCK_NAME, "h": self.token}
                )
                conn.commit()
        finally:
            lock.close()  # unlocks and closes the connection
