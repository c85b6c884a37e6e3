"""Fixtures shared by the test modules: the repository's settings and a fresh store.

A module that needs other settings defines its own ``settings`` fixture, which
overrides this one for that module.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from itap_engine.config import Settings, load_settings
from itap_engine.store.sql import Store

CONFIG = Path(__file__).resolve().parents[1] / "config.toml"


@pytest.fixture(scope="module")
def settings() -> Settings:
    """The settings of the repository's config.toml."""
    return load_settings(CONFIG)


@pytest.fixture
def store(settings: Settings, tmp_path: Path) -> Iterator[Store]:
    """A store on a new SQLite file in the test's tmp_path."""
    store = Store(settings, url=f"sqlite:///{tmp_path}/t.db")
    yield store
    store.close()


SHARED_DATABASE_MODULES = {
    "test_postgres.py",
    "test_postgres_timeseries.py",
    "test_ingest_postgres.py",
    "test_shards_postgres.py",
    "test_db_lock.py",
}
"""Modules that use the one PostgreSQL database CI provides (ITAP_TEST_PG_URL): they
reset its schema, so under pytest-xdist they run in one worker, one after another."""


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SHARED_DATABASE_MODULES:
            item.add_marker(pytest.mark.xdist_group("postgres"))
