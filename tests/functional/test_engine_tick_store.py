"""The tick's writes (issue 13, second round), each checked against what it replaced:
the engine store's page cache, device spans widened per shared span, the incident
tracker's plain in-memory alerts inserted with one executemany, the contributors' JSON
built from cached heads, and the snapshot's alert rows with their notes."""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlmodel import select

from itap_bench.engine import derived_config
from itap_engine.config import load_settings
from itap_engine.detection.alerts import AlertTracker, Contributor, contributors_to_json
from itap_engine.engine.core import MIN_CACHE_KIB, EngineCore, engine_cache_kib
from itap_engine.store.schema import Alert
from itap_engine.store.sql import Store

REPO = Path(__file__).resolve().parents[2]
SETTINGS = load_settings(REPO / "config.toml")


def _config(folder: Path, devices: int = 4) -> Path:
    return derived_config(
        SETTINGS,
        folder,
        fleet=[{"profile": "industrial", "devices": devices, "prefix": "pump", "sites": ["north"]}],
        simulation={"fault_rate_per_device_day": 0.0},
        detection={"bootstrap_hours": 1.0, "detector": "robust_z"},
        engine={"tick_seconds": 1.0, "sim_speed": 60.0},
    )


# ---------------------------------------------------------------------- page cache
def test_the_engines_store_keeps_a_page_cache_sized_for_its_fleet(tmp_path: Path) -> None:
    settings = load_settings(_config(tmp_path / "site", devices=2000))
    core = EngineCore(settings)
    try:
        with core.store.engine.connect() as conn:
            cache = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    finally:
        core.close()
    assert engine_cache_kib(settings) == 16 * 2000 > MIN_CACHE_KIB
    assert cache == -engine_cache_kib(settings)  # KiB (SQLite's default is -2000)


def test_a_plain_store_keeps_sqlites_default_cache(tmp_path: Path) -> None:
    store = Store(SETTINGS, url=f"sqlite:///{tmp_path / 'a.db'}")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -2000
    finally:
        store.close()


# ---------------------------------------------------------------------- device spans
_batch = st.lists(
    st.tuples(st.sampled_from(["d-a", "d-b", "d-c", "d'q", "d-é"]), st.integers(0, 50)), min_size=1, max_size=40
)


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.one_of(_batch, st.integers(0, 50)), min_size=1, max_size=5))
def test_device_spans_are_the_first_and_last_stored_reading(batches: list) -> None:
    """Batches of mixed spans (one UPDATE per device) and of one shared time for
    many devices (the grouped UPDATE) leave each device's span at the min and max of
    its readings."""
    devices = [f"g-{i:03d}" for i in range(20)]
    with tempfile.TemporaryDirectory() as folder:
        store = Store(SETTINGS, url=f"sqlite:///{folder}/a.db")
        seen: dict[str, list[int]] = {}
        try:
            for batch in batches:
                if isinstance(batch, int):  # a tick: every device at one time
                    rows = [(d, batch) for d in devices]
                else:
                    rows = batch
                frame = pd.DataFrame(rows, columns=["device_id", "ts"]).drop_duplicates()
                frame["ts"] = frame["ts"].astype(np.int64) * 1000
                frame["rpm"] = 1.0
                store.insert_readings("industrial", frame)
                for device, ts in zip(frame["device_id"], frame["ts"], strict=True):
                    seen.setdefault(device, []).append(int(ts))
            with store.engine.connect() as conn:
                spans = {
                    d: (f, last) for d, f, last in conn.exec_driver_sql("SELECT id, first_ts, last_ts FROM device")
                }
        finally:
            store.close()
    assert {d: spans[d] for d in seen} == {d: (min(v), max(v)) for d, v in seen.items()}


# ---------------------------------------------------------------------- contributors JSON
def _reference_json(items: list[Contributor]) -> str:
    """What contributors_to_json wrote before its cached heads."""
    return json.dumps([{"signal": c.signal, "family": c.family, "share": round(c.share, 4)} for c in items])


@hsettings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.builds(
            Contributor,
            st.text(max_size=12),
            st.sampled_from(["thermal", "mechanical", 'qu"ote', "é"]),
            st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5)),
        ),
        max_size=6,
    )
)
def test_contributors_json_is_what_json_dumps_wrote(items: list[Contributor]) -> None:
    assert contributors_to_json(items) == _reference_json(items)


# ---------------------------------------------------------------------- new alerts
def _scored(devices: list[str], ts: int, above: bool) -> pd.DataFrame:
    n = len(devices)
    return pd.DataFrame(
        {
            "device_id": devices,
            "ts": np.full(n, ts, dtype=np.int64),
            "score": np.full(n, 5.0 if above else 0.1),
            "is_anomalous": np.full(n, above),
            "family": ["thermal"] * n,
            "contributors": [[Contributor("temp_c", "thermal", 1.0)] if above else () for _ in devices],
            "threshold": np.full(n, 1.0),
            "model_version_id": np.full(n, 1, dtype=np.int64),
        }
    )


def test_new_alerts_get_the_ids_the_database_gave_them(tmp_path: Path) -> None:
    """New alerts go in with one executemany on SQLite: each in-memory alert's id is
    its row's, after rows already there, and a later update finds the row by it; a
    new tracker picks the open ones up with every column."""
    store = Store(SETTINGS, url=f"sqlite:///{tmp_path / 'a.db'}")
    try:
        with store.session() as session:  # an alert from before, closed
            session.add(
                Alert(profile="industrial", device_id="old", family="x", opened_ts=1, last_ts=1, status="closed")
            )
            session.commit()
        tracker = AlertTracker(store, SETTINGS)
        devices = ["p-3", "p-1", "p-2"]
        changes = None
        for step in range(SETTINGS.alerts.k):
            changes = tracker.update("industrial", _scored(devices, 10_000 * (step + 1), True))
        assert changes is not None and len(changes.opened) == 3
        opened = {a.device_id: a.id for a in changes.opened}
        with store.engine.connect() as conn:
            rows = {d: (i, s) for i, d, s in conn.exec_driver_sql("SELECT id, device_id, status FROM alert")}
        assert {d: rows[d][0] for d in opened} == opened
        assert sorted(opened.values()) == [2, 3, 4]
        # the rows are the alerts as the ORM would have stored them
        with store.session() as session:
            stored = {a.id: a for a in session.exec(select(Alert))}
        for alert in changes.opened:
            row = stored[alert.id]
            assert (row.device_id, row.opened_ts, row.last_ts, row.severity, row.status, row.contributors) == (
                alert.device_id,
                alert.opened_ts,
                alert.last_ts,
                alert.severity,
                alert.status,
                alert.contributors,
            )
            assert row.acknowledged is False and row.model_version_id == 1
        again = {a.id: a for a in AlertTracker(store, SETTINGS).open_alerts()}
        for alert in changes.opened:
            assert all(
                getattr(again[alert.id], c) == getattr(alert, c) for c in [col.name for col in Alert.__table__.columns]
            )
        # quiet readings long after: the incidents close, by id
        later = 10_000 * 10 + tracker.quiet_ms
        closed = tracker.update("industrial", _scored(devices, later, False)).closed
        with store.engine.connect() as conn:
            status = dict(conn.exec_driver_sql("SELECT id, status FROM alert").all())
    finally:
        store.close()
    assert {a.id for a in closed} == set(opened.values())
    assert all(status[i] == "closed" for i in opened.values())


def test_alerts_persist_the_same_through_both_insert_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's executemany with ids stores what the other dialects' INSERT ...
    RETURNING stores (run here on SQLite, which has RETURNING too)."""
    tables = []
    for name, sqlite_path in (("fast", True), ("returning", False)):
        store = Store(SETTINGS, url=f"sqlite:///{tmp_path / name}.db")
        try:
            monkeypatch.setattr(Store, "is_sqlite", property(lambda self, v=sqlite_path: v))
            tracker = AlertTracker(store, SETTINGS)
            for step in range(6):
                above = step not in (2,)
                tracker.update("industrial", _scored(["a", "b", "c", "d"][: 2 + step % 3], 10_000 * step, above))
        finally:
            monkeypatch.undo()
            store.close()
        with sqlite3.connect(tmp_path / f"{name}.db") as conn:
            tables.append(conn.execute("SELECT * FROM alert ORDER BY id").fetchall())
    assert tables[0] and tables[0] == tables[1]


# ---------------------------------------------------------------------- snapshot's alert rows
def test_the_snapshots_alert_rows_carry_each_incidents_note(tmp_path: Path) -> None:
    """Notes come with the open and the recently closed alerts (one joined query, not
    an IN list of every open alert's id), and a note changed since the last snapshot
    shows in the next one."""
    from itap_engine.engine.fleet_view import AlertRows
    from itap_engine.store.queries import open_and_recent_alerts, set_note

    store = Store(SETTINGS, url=f"sqlite:///{tmp_path / 'a.db'}")
    try:
        tracker = AlertTracker(store, SETTINGS)
        for step in range(SETTINGS.alerts.k):
            tracker.update("industrial", _scored(["p-1", "p-2", "p-3"], 10_000 * (step + 1), True))
        later = 10_000 * 10 + tracker.quiet_ms
        tracker.update("industrial", _scored(["p-3"], later, False))  # p-3's incident closes
        ids = {a.device_id: a.id for a in tracker.open_alerts()}
        with store.engine.connect() as conn:
            closed_id = conn.exec_driver_sql("SELECT id FROM alert WHERE device_id = 'p-3'").scalar()
        set_note(store, ids["p-1"], "crew on site")
        set_note(store, closed_id, "sensor swapped")
        rows = AlertRows()
        opened, closed = rows.read(store)
        assert {(r.device_id, r.note) for r in opened} == {("p-1", "crew on site"), ("p-2", "")}
        assert [(r.device_id, r.note) for r in closed] == [("p-3", "sensor swapped")]
        assert (opened, closed) == tuple(open_and_recent_alerts(store))  # the query the attached view uses
        set_note(store, ids["p-2"], "second look")
        again, _ = rows.read(store)
    finally:
        store.close()
    assert {(r.device_id, r.note) for r in again} == {("p-1", "crew on site"), ("p-2", "second look")}
    assert next(r for r in again if r.device_id == "p-1") is next(r for r in opened if r.device_id == "p-1")


def test_contributor_views_are_shared_and_keep_what_they_were_parsed_from() -> None:
    """Views are reused across texts (one per signal, family and share), equal to a
    fresh parse; zero shares read as 0.0 as before."""
    from itap_engine.snapshot.dto import ContributorView, contributors_of

    first = contributors_of('[{"signal": "temp_c", "family": "thermal", "share": 0.75}]')
    second = contributors_of(
        '[{"signal": "rpm", "family": "mechanical", "share": 0.25}, {"signal": "temp_c", "family": "thermal", "share": 0.75}]'
    )
    assert second == (ContributorView("rpm", "mechanical", 0.25), ContributorView("temp_c", "thermal", 0.75))
    assert second[1] is first[0]
    zeros = contributors_of(
        [{"signal": "a", "family": None, "share": 0.0}, {"signal": "a", "family": None, "share": -0.0}]
    )
    assert [str(v.share) for v in zeros] == ["0.0", "0.0"] and zeros[0].family == "other"  # as before
    assert (
        contributors_of([{"signal": "b", "family": ["not", "hashable"], "share": 0.5}])[0].family
        == "['not', 'hashable']"
    )


PG_URL = os.environ.get("ITAP_TEST_PG_URL")


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="ITAP_TEST_PG_URL not set")
def test_alerts_on_postgres_are_those_sqlite_stores(tmp_path: Path) -> None:
    """On PostgreSQL new alerts go in by INSERT ... RETURNING (ids from the sequence,
    in list order); the alert rows are those SQLite gets, ids included."""
    import sqlalchemy as sa

    engine = sa.create_engine(PG_URL)  # type: ignore[arg-type]
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    tables = []
    for url in (f"sqlite:///{tmp_path / 'a.db'}", PG_URL):
        store = Store(SETTINGS, url=url)
        try:
            tracker = AlertTracker(store, SETTINGS)
            for step in range(6):
                tracker.update("industrial", _scored(["a", "b", "c", "d"][: 2 + step % 3], 10_000 * step, step != 2))
            ids = sorted(a.id for a in tracker.open_alerts())
            with store.engine.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        "SELECT id, device_id, status, opened_ts, last_ts, peak_score, contributors FROM alert ORDER BY id"
                    )
                ).all()
            tables.append(([tuple(r) for r in rows], ids))
        finally:
            store.close()
    assert tables[0][0] and tables[0] == tables[1]


def test_a_tracked_alert_has_the_alert_tables_columns_and_defaults() -> None:
    """TrackedAlert stands in for the SQLModel Alert in the tracker: the same fields,
    the same defaults, so an alert the tracker builds is the row the ORM would store."""
    import dataclasses

    from itap_engine.detection.alerts import TrackedAlert
    from itap_engine.store.schema import Alert

    ours = {f.name: f.default for f in dataclasses.fields(TrackedAlert)}
    theirs = {name: info.default for name, info in Alert.model_fields.items()}
    assert set(ours) == {c.name for c in Alert.__table__.columns}  # type: ignore[attr-defined]
    for name, default in ours.items():
        if default is not dataclasses.MISSING:
            assert theirs[name] == default, name
