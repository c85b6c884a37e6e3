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
