"""A store that cannot write: what ``itap replay`` reads history through.

On SQLite the database file is opened with ``mode=ro`` (and ``PRAGMA query_only``),
so not even the journal mode or a watermark can change; a missing file is an error,
never a new empty database. On PostgreSQL every session is ``READ ONLY`` once the
store is open (opening runs the same idempotent ``IF NOT EXISTS`` schema check as any
other reader). A write attempted through it fails in the database, whatever the code
above asks.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from itap_engine.config import Settings
from itap_engine.store.sql import Store, StoreError

__all__ = ["ReadOnlyStore", "sqlite_path", "stored_span"]


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for memory or another database)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1].split("?", 1)[0]
    return None if not path or path == ":memory:" else Path(path)


class ReadOnlyStore(Store):
    """A :class:`Store` whose connections refuse every write.

    Raises:
        StoreError: no database at the configured place (SQLite), or it cannot be read.
    """

    def __init__(self, settings: Settings, url: str | None = None) -> None:
        target = url or settings.database_url
        path = sqlite_path(target)
        if target.startswith("sqlite") and (path is None or not path.is_file()):
            raise StoreError(f"no database at {path or target}: nothing stored to read (run itap or itap --once first)")
        try:
            super().__init__(settings, url)
        except StoreError as error:
            if "readonly" in str(error) or "read-only" in str(error):
                raise StoreError(
                    f"{error}; the database needs an upgrade: run itap --once (or itap) on it once"
                ) from None
            raise
        if self.engine.dialect.name == "postgresql":
            sa.event.listen(self.engine, "connect", _postgres_read_only)
            self.engine.dispose()  # the connections opened so far could write

    @staticmethod
    def _create_engine(url: str, busy_timeout_ms: int, wal_autocheckpoint: int | None) -> sa.Engine:
        path = sqlite_path(url)
        if path is None:
            return Store._create_engine(url, busy_timeout_ms, wal_autocheckpoint)
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"

        def connect() -> sqlite3.Connection:
            return sqlite3.connect(uri, uri=True, timeout=busy_timeout_ms / 1000, check_same_thread=False)

        engine = sa.create_engine("sqlite://", creator=connect)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA query_only=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.close()

        return engine


def _postgres_read_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    cursor.close()
    dbapi_connection.commit()


def stored_span(store: Store) -> tuple[datetime, datetime] | None:
    """The first and last stored reading over every profile (data time, naive UTC)."""
    lows, highs = [], []
    with store.engine.connect() as conn:
        for profile in store.settings.profiles:
            table = store.readings_table(profile)
            low, high = conn.execute(sa.select(sa.func.min(table.c.ts), sa.func.max(table.c.ts))).one()
            if low is not None:
                lows.append(int(low))
                highs.append(int(high))
    if not lows:
        return None
    epoch = datetime(1970, 1, 1)
    return epoch + timedelta(milliseconds=min(lows)), epoch + timedelta(milliseconds=max(highs))
