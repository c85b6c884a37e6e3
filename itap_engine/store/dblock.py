"""A named lock held by a database session (PostgreSQL advisory lock).

The lock belongs to one dedicated connection: it frees when the holder releases it
or when its connection closes, which is what happens when the holding process dies,
so a waiting process takes over without any stale-lock cleanup. Sharded engines hold
one per shard (:mod:`itap_engine.engine.shards`). Kept small and free of engine
knowledge so that a database run lock can share it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

import sqlalchemy as sa

from itap_engine.errors import ItapError
from itap_engine.store.postgres import advisory_key

log = logging.getLogger(__name__)


class LockUnavailable(ItapError):
    """Another process holds the lock (and we were not to wait), or the database
    cannot hold one."""

    exit_code = 3


class DatabaseLock:
    """``pg_try_advisory_lock`` on a key derived from ``name``, on its own connection.

    Args:
        url: the database URL (PostgreSQL).
        name: what is locked, e.g. ``itap.shard.0/2``.
    """

    def __init__(self, url: str, name: str) -> None:
        if not url.startswith("postgresql"):
            raise LockUnavailable(f"{name} needs PostgreSQL (set ITAP_DB_URL=postgresql+psycopg://...)")
        self.name = name
        self.key = advisory_key(name)
        self._engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self._conn: sa.Connection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True when held."""
        if self._conn is not None:
            return True
        conn = self._engine.connect()
        try:
            got = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
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
                raise LockUnavailable(f"another process holds {self.name}")
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
        with contextlib.suppress(sa.exc.DBAPIError):
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            conn.commit()
        conn.close()

    def close(self) -> None:
        self.release()
        self._engine.dispose()

    def __enter__(self) -> DatabaseLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.close()
