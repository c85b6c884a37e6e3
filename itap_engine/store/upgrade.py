"""Bring a database made by an earlier ITAP up to the current schema, in place.

``create_all`` creates missing tables but never adds a column to a table that exists.
The few columns added since the first release are added here, each once, on SQLite
and PostgreSQL alike; data is never rewritten. Runs when a :class:`~itap_engine.store.sql.Store`
opens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlalchemy as sa

__all__ = ["COLUMNS", "INDEXES", "upgrade_schema"]

COLUMNS = (
    ("run", "conflicts", "INTEGER DEFAULT 0 NOT NULL"),
    ("quarantine", "row_key", "VARCHAR(64)"),
)
"""(table, column, DDL): the columns added since the first release."""
INDEXES = (
    (
        "quarantine",
        "ux_quarantine_row_key",
        "CREATE UNIQUE INDEX IF NOT EXISTS ux_quarantine_row_key ON quarantine (row_key)",
    ),
)
"""(table, index, DDL): the indexes added since the first release. Both lists are plain
data so that a reader can check a schema without importing SQLAlchemy
(:mod:`itap_engine.store.summary`)."""


def upgrade_schema(engine: sa.Engine) -> list[str]:
    """Add the columns and indexes an older database lacks; returns what was added."""
    import sqlalchemy as sa

    added: list[str] = []
    for table, column, ddl in COLUMNS:
        if column in {c["name"] for c in sa.inspect(engine).get_columns(table)}:
            continue
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}")
            added.append(f"{table}.{column}")
        except sa.exc.DBAPIError:  # another process added it first
            if column not in {c["name"] for c in sa.inspect(engine).get_columns(table)}:
                raise
    for table, name, ddl in INDEXES:  # asked first: a database opened read-only is not written to
        if name in {i["name"] for i in sa.inspect(engine).get_indexes(table)}:
            continue
        with engine.begin() as conn:
            conn.exec_driver_sql(ddl)
        added.append(name)
    return added
