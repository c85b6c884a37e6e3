"""What the ingestion pipeline needs of a store, as a protocol.

:class:`itap_engine.store.sql.Store` (SQLite or PostgreSQL) is the one implementation;
the protocol says which of its operations the write path depends on, so the pipeline
is written against these and not against SQLAlchemy sessions. mypy checks that the
SQL store satisfies it wherever it is passed in, and a test checks it at run time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

    from itap_engine.config import ProfileSpec
    from itap_engine.store.schema import Run
    from itap_engine.store.sql import InsertResult

__all__ = ["TelemetryStore"]


@runtime_checkable
class TelemetryStore(Protocol):
    """Readings in, refusals quarantined, every run accounted for."""

    @property
    def url(self) -> str:
        """The database URL (with its password)."""
        ...

    @property
    def is_sqlite(self) -> bool:
        """SQLite allows one writer: callers on several processes serialise their writes."""
        ...

    def writing(self, what: str = ...) -> AbstractContextManager[None]:
        """Turns a failure of the database itself into one StoreError line."""
        ...

    def ensure_profile(self, name: str, spec: ProfileSpec) -> sa.Table:
        """The profile's readings table, created if it does not exist."""
        ...

    def insert_readings(
        self, profile: str, frame: pd.DataFrame, batch_rows: int | None = None, *, on_conflict: str | None = None
    ) -> InsertResult:
        """Insert validated readings; each is inserted, a duplicate, a conflict or refused."""
        ...

    def quarantine(self, rows: pd.DataFrame, *, source: str, run_id: int | None) -> int:
        """Keep rejected rows with their reason; returns how many were kept."""
        ...

    def start_run(self, kind: str, source: str = "", profile: str | None = None, message: str = "") -> int: ...

    def finish_run(self, run_id: int, *, status: str = "ok", message: str = "", **counts: int) -> Run: ...

    def close_run(self, run_id: int, *, status: str = "ok", message: str = "", **counts: int) -> None: ...

    def running_runs(self) -> list[tuple[int, str]]:
        """(id, owner message) of the runs still marked running."""
        ...

    def abort_stale_runs(self, kinds: Sequence[str] | None = None, ids: Sequence[int] | None = None) -> int: ...

    def record_validation_alerts(self, rows: Sequence[Mapping[str, Any]]) -> None: ...
