"""Hostile input on a real PostgreSQL server (``ITAP_TEST_PG_URL``; skipped when unset):
NUL bytes, a batch the server refuses, conflicts, idempotent quarantine."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from itap_engine.config import load_settings
from itap_engine.ingest.csv_source import import_csv
from itap_engine.store.sql import Store

PG_URL = os.environ.get("ITAP_TEST_PG_URL")
pytestmark = [pytest.mark.postgres, pytest.mark.skipif(not PG_URL, reason="ITAP_TEST_PG_URL not set")]
SETTINGS = load_settings(Path(__file__).resolve().parents[2] / "config.toml")
NOW = datetime(2026, 6, 1)
HEADER = "device_id,ts,state,rpm,temp_c,vibration_g,current_a,voltage_v,fault"


def good(i: int, temp: float = 68.0, fault: str = "") -> str:
    return f"pump-001,2026-01-01T00:{i // 6:02d}:{i % 6 * 10:02d},RUN,1480,{temp},0.3,42,400,{fault}"


@pytest.fixture
def pg_store() -> Store:
    engine = sa.create_engine(PG_URL)  # type: ignore[arg-type]
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    store = Store(SETTINGS, url=PG_URL)
    yield store
    store.close()


def count(store: Store, sql: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.exec_driver_sql(sql).scalar_one())


def test_a_nul_in_a_label_costs_one_row_not_the_batch(pg_store, tmp_path):
    """Defect: a NUL byte in a text field made PostgreSQL refuse the whole batch."""
    path = tmp_path / "nul.csv"
    lines = [good(i) for i in range(10)]
    lines[4] = good(4, fault="over\x00heat")
    path.write_bytes(("\n".join([HEADER, *lines]) + "\n").encode())
    report = import_csv(pg_store, SETTINGS, path, now=NOW)
    assert (report.rows_in, report.inserted, report.quarantined) == (10, 9, 1)
    assert count(pg_store, "select count(*) from readings_industrial") == 9
    again = import_csv(pg_store, SETTINGS, path, now=NOW)
    assert (again.duplicates, again.quarantined) == (9, 1)
    assert count(pg_store, "select count(*) from quarantine") == 1  # idempotent


def test_a_batch_the_server_refuses_is_bisected(pg_store):
    """Rows that reach the store with a NUL (not through the validator) are returned
    as failed with the server's error; the rest of the batch lands."""
    frame = pd.DataFrame(
        {
            "device_id": ["a"] * 20,
            "ts": pd.date_range("2026-01-01", periods=20, freq="10s"),
            "state": ["RUN"] * 20,
            "rpm": 1480.0,
        }
    )
    frame.loc[[5, 13], "state"] = "R\x00N"
    result = pg_store.insert_readings("industrial", frame, batch_rows=8)
    assert (result.rows, result.inserted) == (20, 18)
    assert sorted(result.failed["ts"].tolist()) == sorted(int(t.value // 1_000_000) for t in frame["ts"].iloc[[5, 13]])
    assert all("NUL" in r or "0x00" in r for r in result.failed["reason"])
    assert count(pg_store, "select count(*) from readings_industrial") == 18


@pytest.mark.parametrize("policy", ["quarantine", "keep_first", "replace"])
def test_conflicts_on_postgres(pg_store, tmp_path, policy):
    settings = SETTINGS.model_copy(update={"import_": SETTINGS.import_.model_copy(update={"on_conflict": policy})})
    pg_store.settings = settings
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("\n".join([HEADER, *(good(i) for i in range(10))]) + "\n")
    second.write_text("\n".join([HEADER, *(good(i, temp=71.0 if i == 2 else 68.0) for i in range(11))]) + "\n")
    import_csv(pg_store, settings, first, now=NOW)
    report = import_csv(pg_store, settings, second, now=NOW)
    assert (report.rows_in, report.inserted, report.duplicates, report.conflicts, report.quarantined) == (
        11,
        1,
        9,
        1,
        0,
    )
    temp = pg_store.read_readings("industrial")["temp_c"].iloc[2]
    assert temp == (71.0 if policy == "replace" else 68.0)
    assert count(pg_store, "select count(*) from quarantine") == (1 if policy == "quarantine" else 0)
    import_csv(pg_store, settings, second, now=NOW)
    assert count(pg_store, "select count(*) from quarantine") == (1 if policy == "quarantine" else 0)


def test_an_old_database_is_upgraded_on_postgres(pg_store, tmp_path):
    """A database made before conflicts and quarantine keys gains them in place."""
    with pg_store.engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ux_quarantine_row_key")
        conn.exec_driver_sql("ALTER TABLE quarantine DROP COLUMN row_key")
        conn.exec_driver_sql("ALTER TABLE run DROP COLUMN conflicts")
    pg_store.close()
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([HEADER, good(0), good(1, temp=999.0)]) + "\n")
    for _ in range(2):
        store = Store(SETTINGS, url=PG_URL)
        try:
            report = import_csv(store, SETTINGS, path, now=NOW)
            assert report.rows_in == report.inserted + report.duplicates + report.conflicts + report.quarantined
        finally:
            store.close()
    store = Store(SETTINGS, url=PG_URL)
    try:
        assert count(store, "select count(*) from quarantine") == 1
        assert count(store, "select sum(conflicts) from run") == 0
    finally:
        store.close()


def test_a_path_longer_than_the_source_column(pg_store, tmp_path):
    """PostgreSQL enforces VARCHAR(512): a deep path (PATH_MAX is 4096) is cut for the
    run and quarantine rows instead of failing the run."""
    deep = tmp_path.joinpath(*(["d" * 200] * 3))
    deep.mkdir(parents=True)
    path = deep / "bad.csv"
    path.write_text("\n".join([HEADER, good(0), good(1, temp=999.0)]) + "\n")
    report = import_csv(pg_store, SETTINGS, path, now=NOW)
    assert (report.inserted, report.quarantined) == (1, 1) and len(str(path)) > 512
    assert count(pg_store, "select length(source) from quarantine") == 512
