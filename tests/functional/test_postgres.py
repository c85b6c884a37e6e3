"""The same schema and ingestion on a real PostgreSQL server.

Runs when ``ITAP_TEST_PG_URL`` names a database (``.ci/run`` starts a server and sets
it); skipped otherwise. Every test works in a fresh schema-free database state by
dropping ITAP's tables first.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from itap_engine.config import load_settings
from itap_engine.ingest.simulator import Simulator, device_ids_for
from itap_engine.store.sql import Store

PG_URL = os.environ.get("ITAP_TEST_PG_URL")
pytestmark = [pytest.mark.postgres, pytest.mark.skipif(not PG_URL, reason="ITAP_TEST_PG_URL not set")]
SETTINGS = load_settings(Path(__file__).resolve().parents[2] / "config.toml")


@pytest.fixture
def pg_store() -> Store:
    engine = sa.create_engine(PG_URL)  # type: ignore[arg-type]
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    store = Store(SETTINGS, url=PG_URL)
    yield store
    store.close()


def test_idempotent_ingest_and_nulls_on_postgres(pg_store: Store) -> None:
    start = SETTINGS.simulation.start
    frame = Simulator(SETTINGS, "industrial", device_ids_for("pg", 3)).generate(start, start + timedelta(hours=1))
    frame.loc[3:6, "temp_c"] = np.nan
    first = pg_store.insert_readings("industrial", frame, batch_rows=500)
    again = pg_store.insert_readings("industrial", frame, batch_rows=500)
    assert (first.inserted, again.inserted, again.duplicates) == (len(frame), 0, len(frame))
    back = pg_store.read_readings("industrial")
    assert len(back) == len(frame)
    assert back["temp_c"].isna().sum() == 4  # NaN stored as NULL, not as the float NaN
    run_id = pg_store.start_run("ingest", "pg-test", "industrial")
    assert pg_store.finish_run(run_id, rows_in=len(frame), inserted=len(frame)).status == "ok"
    pg_store.set_watermark("k", "v")
    assert pg_store.get_watermark("k") == "v"


def test_pipeline_on_postgres(pg_store: Store) -> None:
    from itap_engine.ingest.pipeline import ingest_frame

    start = SETTINGS.simulation.start
    frame = Simulator(SETTINGS, "aircraft", device_ids_for("pa", 2)).generate(start, start + timedelta(minutes=30))
    frame.loc[0, "speed_kt"] = 5000.0  # outside the valid range: quarantined
    report = ingest_frame(pg_store, SETTINGS, "aircraft", frame, source="pg", now=start + timedelta(days=1))
    assert report.rows_in == report.inserted + report.duplicates + report.quarantined == len(frame)
    assert report.quarantined == 1
    again = ingest_frame(pg_store, SETTINGS, "aircraft", frame, source="pg", now=start + timedelta(days=1))
    assert again.inserted == 0 and again.duplicates == len(frame) - 1


def test_time_range_reads_device_spans_and_scores_on_postgres(pg_store: Store) -> None:
    from sqlmodel import select

    from itap_engine.detection.scoring import insert_scores
    from itap_engine.store.schema import Device

    start = SETTINGS.simulation.start
    frame = Simulator(SETTINGS, "industrial", device_ids_for("pt", 3)).generate(start, start + timedelta(hours=1))
    pg_store.insert_readings("industrial", frame)
    stored = pg_store.read_readings("industrial")
    mid = int(stored["ts"].median())
    later = pg_store.read_readings("industrial", since_ms=mid)  # found through the device table
    assert len(later) == int((stored["ts"] > mid).sum()) > 0
    assert later["ts"].min() > mid
    with pg_store.session() as session:
        spans = {d.id: (d.first_ts, d.last_ts) for d in session.exec(select(Device))}
    expected = stored.groupby("device_id")["ts"].agg(["min", "max"])
    assert spans == {str(d): (int(r["min"]), int(r["max"])) for d, r in expected.iterrows()}
    scored = later[["device_id", "ts"]].assign(score=0.5, model_version_id=1, contributors=[()] * len(later))
    assert insert_scores(pg_store, "industrial", scored) == len(later)
    assert insert_scores(pg_store, "industrial", scored) == 0  # idempotent
