"""A database URL checked before anything connects: one line, not a traceback.

ITAP stores its data in SQLite (built in) or PostgreSQL (the ``postgres`` extra:
``pip install 'itap[postgres]'``). A URL naming another database, an unknown driver,
or a driver that is not installed is refused with one sentence naming the URL
(password hidden) and what to do.
"""

from __future__ import annotations

import sqlalchemy as sa

from itap_engine.errors import ItapError

__all__ = ["DatabaseUrlError", "check_database_url", "safe_url"]

SUPPORTED = ("sqlite", "postgresql")
POSTGRES_EXTRA = "pip install 'itap[postgres]'"
EXAMPLES = "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:5432/DBNAME"


class DatabaseUrlError(ItapError):
    """The database URL cannot be used; the message is one line."""


def safe_url(url: str) -> str:
    """A URL for a message, without its password (if it parses at all)."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url.split("@")[-1]


def check_database_url(url: str) -> None:
    """Raise :class:`DatabaseUrlError` unless ``url`` names SQLite or PostgreSQL with an
    installed driver."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise DatabaseUrlError(f"cannot open database {safe_url(url)!r}: not a URL; use {EXAMPLES}") from None
    shown = safe_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgres":
        raise DatabaseUrlError(f"cannot open database {shown}: write postgresql+psycopg://, not postgres://")
    if backend not in SUPPORTED:
        raise DatabaseUrlError(
            f"cannot open database {shown}: ITAP stores its data in SQLite or PostgreSQL, not {backend}; use {EXAMPLES}"
        )
    try:
        dialect = parsed.get_dialect()
    except sa.exc.NoSuchModuleError:
        raise DatabaseUrlError(
            f"cannot open database {shown}: unknown driver {parsed.drivername!r}; use {EXAMPLES}"
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as error:
        module = getattr(error, "name", None) or dialect.driver
        if backend == "postgresql" and dialect.driver == "psycopg":
            hint = f"install it with: {POSTGRES_EXTRA}"
        elif backend == "postgresql":
            hint = f"use postgresql+psycopg://... and install its driver with: {POSTGRES_EXTRA}"
        else:
            hint = "reinstall Python with its sqlite3 module"
        raise DatabaseUrlError(
            f"cannot open database {shown}: it needs the {dialect.driver} driver (Python module {module}), "
            f"which is not installed; {hint}"
        ) from None
