"""The replay's read-only store on PostgreSQL: it reads what is stored and every
write fails in the server (READ ONLY sessions). Runs with ``ITAP_TEST_PG_URL``."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from itap_engine.config import load_settings
from itap_engine.facade.attached import snapshot_at
from itap_engine.ingest.simulator import Simulator, device_ids_for
from itap_engine.store.readonly import ReadOnlyStore, stored_span
from itap_engine.store.sql import Store

PG_URL = os.environ.get("ITAP_TEST_PG_URL")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.xdist_group("postgres"),  # the one database CI provides (tests/conftest.py)
    pytest.mark.skipif(not PG_URL, reason="ITAP_TEST_PG_URL not set"),
]
SETTINGS = load_settings(Path(__file__).resolve().parents[2] / "config.toml")


def test_a_read_only_store_on_postgres_reads_and_refuses_every_write() -> None:
    engine = sa.create_engine(PG_URL)  # type: ignore[arg-type]
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    start = SETTINGS.simulation.start
    frame = Simulator(SETTINGS, "industrial", device_ids_for("ro", 2)).generate(start, start + timedelta(hours=1))
    writer = Store(SETTINGS, url=PG_URL)
    writer.insert_readings("industrial", frame)
    writer.close()
    store = ReadOnlyStore(SETTINGS, url=PG_URL)
    try:
        first, last = stored_span(store) or (None, None)
        assert first == start.replace(tzinfo=None) and last is not None and last > first
        snapshot = snapshot_at(store, SETTINGS, first + timedelta(minutes=30))
        assert sorted(d.device_id for d in snapshot.devices) == ["ro-001", "ro-002"]
        with pytest.raises(sa.exc.InternalError, match="read-only transaction"):
            store.set_watermark("replay.was.here", "1")
        with pytest.raises(sa.exc.InternalError, match="read-only transaction"):
            store.insert_readings("industrial", frame.head(3))
    finally:
        store.close()
    check = Store(SETTINGS, url=PG_URL)
    assert check.get_watermark("replay.was.here") is None
    check.close()
    assert isinstance(first, datetime)
