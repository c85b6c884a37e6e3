"""PostgreSQL built for time series: partitions by time, BRIN, retention by partition,
ingestion by COPY.

Runs when ``ITAP_TEST_PG_URL`` names a database, like ``test_postgres.py``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from itap_engine.config import load_settings
from itap_engine.ingest.simulator import Simulator, device_ids_for
from itap_engine.store import postgres as pg
from itap_engine.store.sql import Store

PG_URL = os.environ.get("ITAP_TEST_PG_URL")
pytestmark = [pytest.mark.postgres, pytest.mark.skipif(not PG_URL, reason="ITAP_TEST_PG_URL not set")]
SETTINGS = load_settings(Path(__file__).resolve().parents[2] / "config.toml")
DAY_MS = 24 * 3600 * 1000


@pytest.fixture
def pg_store() -> Store:
    engine = sa.create_engine(PG_URL)  # type: ignore[arg-type]
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    store = Store(SETTINGS, url=PG_URL)
    yield store
    store.close()


def _frame(devices: int, hours: float, prefix: str = "pp", start_hours: float = 0) -> pd.DataFrame:
    start = SETTINGS.simulation.start + timedelta(hours=start_hours)
    sim = Simulator(SETTINGS, "industrial", device_ids_for(prefix, devices), freq_s=60)
    return sim.generate(start, start + timedelta(hours=hours))


def _scalar(store: Store, sql: str, **params: object) -> object:
    with store.engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


def test_readings_and_scores_are_partitioned_by_time_with_brin(pg_store: Store) -> None:
    with pg_store.engine.connect() as conn:
        for table in ("readings_industrial", "readings_aircraft", "score"):
            assert pg.is_partitioned(conn, table), table
            assert _scalar(pg_store, "SELECT indexdef FROM pg_indexes WHERE indexname = :i", i=f"{table}_ts_brin")
    frame = _frame(2, 50)  # three days from midnight: three daily partitions
    result = pg_store.insert_readings("industrial", frame)
    assert result.inserted == len(frame)
    with pg_store.engine.connect() as conn:
        parts = pg_store.partitions.partitions(conn, "readings_industrial")  # type: ignore[union-attr]
    assert len(parts) == 3
    assert all(hi - lo == DAY_MS and lo % DAY_MS == 0 for _name, lo, hi in parts)
    assert _scalar(pg_store, "SELECT count(*) FROM readings_industrial_default") == 0
    # each row sits in the partition of its day
    assert _scalar(pg_store, f"SELECT count(*) FROM {parts[2][0]}") == int(
        (frame["ts"] >= pd.Timestamp(parts[2][1], unit="ms")).sum()
    )


def _count_copies(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    calls: dict[str, list[int]] = {"new": [], "staging": []}
    copy_new, copy_insert = pg.copy_new, pg.copy_insert

    def new(conn, table, columns, rows):
        calls["new"].append(len(rows))
        return copy_new(conn, table, columns, rows)

    def staging(conn, table, columns, rows, keys):
        calls["staging"].append(len(rows))
        return copy_insert(conn, table, columns, rows, keys)

    monkeypatch.setattr(pg, "copy_new", new)
    monkeypatch.setattr(pg, "copy_insert", staging)
    return calls


def test_ingest_by_copy_counts_inserted_and_duplicates(pg_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_copies(monkeypatch)
    first = _frame(3, 6)
    again = pd.concat([first.iloc[: len(first) // 2], _frame(3, 6, start_hours=6)], ignore_index=True)
    again = pd.concat([again, again.iloc[:10]], ignore_index=True)  # duplicates inside one batch too
    a = pg_store.insert_readings("industrial", first, batch_rows=500)
    assert (a.inserted, a.duplicates) == (len(first), 0)
    assert (sum(calls["new"]), calls["staging"]) == (len(first), [])  # new rows: straight in
    b = pg_store.insert_readings("industrial", again, batch_rows=500)
    new = len(again) - len(first) // 2 - 10
    assert (b.rows, b.inserted, b.duplicates) == (len(again), new, len(first) // 2 + 10)
    assert pg_store.count_readings("industrial") == len(first) + new
    # every row went through COPY, in batches; those that may conflict through staging
    assert sum(calls["new"]) + sum(calls["staging"]) == len(first) + len(again)
    assert max(calls["new"] + calls["staging"]) == 500
    assert sum(calls["staging"]) >= len(first) // 2 + 10
    # values survive the binary COPY exactly (NULL stays NULL)
    back = pg_store.read_readings("industrial", device_ids=[first["device_id"].iloc[0]])
    src = first[first["device_id"] == first["device_id"].iloc[0]].reset_index(drop=True)
    assert back["rpm"].iloc[: len(src)].tolist() == src["rpm"].tolist()
    assert back["fault"].iloc[: len(src)].isna().tolist() == src["fault"].isna().tolist()


def test_copy_of_rows_another_writer_stored_meanwhile_goes_through_staging(
    pg_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = _frame(2, 2)
    pg_store.insert_readings("industrial", frame.iloc[::3])
    calls = _count_copies(monkeypatch)
    monkeypatch.setattr(pg, "any_stored", lambda *_a: False)  # as if the rows came after the check
    result = pg_store.insert_readings("industrial", frame)
    assert (result.inserted, result.duplicates) == (len(frame) - len(frame.iloc[::3]), len(frame.iloc[::3]))
    assert calls["new"] == [len(frame)] and calls["staging"] == [len(frame)]  # tried straight, then staged
    assert pg_store.count_readings("industrial") == len(frame)


def test_copy_and_executemany_store_the_same_rows(pg_store: Store) -> None:
    frame = _frame(2, 3)
    pg_store.insert_readings("industrial", frame)
    copied = pg_store.read_readings("industrial")
    with pg_store.engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE readings_industrial"))
    pg_store.use_copy = False
    assert pg_store.insert_readings("industrial", frame).inserted == len(frame)
    pd.testing.assert_frame_equal(pg_store.read_readings("industrial"), copied)


def test_retention_drops_whole_partitions(pg_store: Store) -> None:
    from itap_engine.detection.scoring import insert_scores

    frame = _frame(2, 72)
    pg_store.insert_readings("industrial", frame)
    stored = pg_store.read_readings("industrial", columns=["device_id", "ts"])
    insert_scores(pg_store, "industrial", stored.assign(score=0.1, model_version_id=1, contributors=[()] * len(stored)))
    first_day = int(stored["ts"].min()) // DAY_MS * DAY_MS
    cutoff = first_day + 2 * DAY_MS + 3600 * 1000  # one hour into the third day
    devices = {"industrial": sorted(stored["device_id"].unique()), "aircraft": []}
    out = pg_store.expire_before(cutoff, devices)
    assert out["readings_industrial_partitions"] == 2
    assert out["scores_partitions"] == 2
    with pg_store.engine.connect() as conn:
        parts = pg_store.partitions.partitions(conn, "readings_industrial")  # type: ignore[union-attr]
        score_parts = pg_store.partitions.partitions(conn, "score")  # type: ignore[union-attr]
    assert [lo for _n, lo, _h in parts] == [first_day + 2 * DAY_MS]
    assert [lo for _n, lo, _h in score_parts] == [first_day + 2 * DAY_MS]
    # the partition holding the cut-off stays whole: the third day is all there
    kept = pg_store.read_readings("industrial", columns=["ts"])
    assert len(kept) == int((stored["ts"] >= first_day + 2 * DAY_MS).sum()) > 0
    assert _scalar(pg_store, "SELECT count(*) FROM score") == len(kept)


def test_rows_in_the_default_partition_move_to_a_new_partition(pg_store: Store) -> None:
    frame = _frame(1, 2)
    table = "readings_industrial"
    ts = int(pd.Timestamp(frame["ts"].iloc[0]).value // 1_000_000)
    with pg_store.engine.begin() as conn:  # as a writer that did not create the partition
        conn.execute(sa.text(f"INSERT INTO {table} (device_id, ts) VALUES ('stray', :ts)"), {"ts": ts})
    assert _scalar(pg_store, f"SELECT count(*) FROM {table}_default") == 1
    result = pg_store.insert_readings("industrial", frame)
    assert result.inserted == len(frame)
    assert _scalar(pg_store, f"SELECT count(*) FROM {table}_default") == 0
    assert _scalar(pg_store, f"SELECT count(*) FROM {table} WHERE device_id = 'stray'") == 1


def test_partition_hours_is_configurable(pg_store: Store) -> None:
    pg_store.close()
    settings = SETTINGS.model_copy(update={"database": SETTINGS.database.model_copy(update={"partition_hours": 6})})
    store = Store(settings, url=PG_URL)
    try:
        store.insert_readings("industrial", _frame(1, 12))
        with store.engine.connect() as conn:
            parts = store.partitions.partitions(conn, "readings_industrial")  # type: ignore[union-attr]
        assert [hi - lo for _n, lo, hi in parts] == [6 * 3600 * 1000] * 2
    finally:
        store.close()


def test_scores_go_in_by_copy_too(pg_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from itap_engine.detection.scoring import insert_scores

    frame = _frame(3, 2)
    pg_store.insert_readings("industrial", frame)
    stored = pg_store.read_readings("industrial", columns=["device_id", "ts"])
    scored = stored.assign(score=0.25, model_version_id=1, contributors=[()] * len(stored))
    calls = _count_copies(monkeypatch)
    assert insert_scores(pg_store, "industrial", scored) == len(stored)
    assert insert_scores(pg_store, "industrial", scored.iloc[::2]) == 0  # idempotent
    assert (sum(calls["new"]), sum(calls["staging"])) == (len(stored), len(stored.iloc[::2]))
    assert _scalar(pg_store, "SELECT count(*) FROM score WHERE score = 0.25") == len(stored)


def test_retention_never_drops_a_partition_that_holds_another_devices_rows(pg_store: Store) -> None:
    """Partitions are by time, not by device: a day that also holds an imported device's
    readings is not dropped for the simulated devices' retention; only their rows go."""
    simulated = _frame(2, 72)
    imported = _frame(1, 72, prefix="imported")
    pg_store.insert_readings("industrial", simulated)
    pg_store.insert_readings("industrial", imported)
    stored = pg_store.read_readings("industrial", columns=["device_id", "ts"])
    first_day = int(stored["ts"].min()) // DAY_MS * DAY_MS
    cutoff = first_day + 2 * DAY_MS
    out = pg_store.expire_before(cutoff, {"industrial": sorted(simulated["device_id"].unique())})
    assert out["readings_industrial_partitions"] == 0
    after = pg_store.read_readings("industrial", columns=["device_id", "ts"])
    kept_imported = after[after["device_id"].str.startswith("imported")]
    assert len(kept_imported) == len(imported)  # every imported row is still there
    sim_after = after[~after["device_id"].str.startswith("imported")]
    assert int(sim_after["ts"].min()) >= cutoff  # the simulated devices' older rows went
