"""The ingestion pipeline on real SQLite files: accounting, idempotency, alerts, stale runs."""

from __future__ import annotations

import itertools
import math
import shutil
import sqlite3
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from itap_engine.config import Settings, load_settings
from itap_engine.ingest.pipeline import IngestReport, IngestRun, abort_dead_runs, ingest_frame
from itap_engine.ingest.simulator import Simulator, device_ids_for
from itap_engine.store.schema import Run, ValidationEvent
from itap_engine.store.sql import Store

CONFIG = Path(__file__).resolve().parents[2] / "config.toml"
NOW = datetime(2026, 6, 1)


def simulated(settings: Settings, devices: int = 3, hours: float = 1.0) -> pd.DataFrame:
    sim = Simulator(settings, "industrial", device_ids_for("pump", devices))
    return sim.generate("2026-01-01", pd.Timestamp("2026-01-01") + pd.Timedelta(hours=hours))


def assert_accounted(report: IngestReport) -> None:
    assert report.rows_in == report.inserted + report.duplicates + report.quarantined


def test_ingest_twice_inserts_nothing_new(settings, store):
    frame = simulated(settings)
    first = ingest_frame(store, settings, "industrial", frame, source="sim", now=NOW)
    second = ingest_frame(store, settings, "industrial", frame, source="sim", now=NOW)
    assert (first.inserted, first.duplicates, first.quarantined) == (len(frame), 0, 0)
    assert (second.inserted, second.duplicates, second.quarantined) == (0, len(frame), 0)
    assert first.status == second.status == "ok"
    assert store.count_readings("industrial") == len(frame)
    runs = {r.id: r for r in store.iter_runs()}
    assert runs[second.run_id].duplicates == len(frame) and runs[second.run_id].status == "ok"


def test_bad_rows_are_quarantined_and_nan_stored_as_null(settings, store, tmp_path):
    frame = simulated(settings, devices=1, hours=0.1).astype({"temp_c": float})
    frame.loc[3, "temp_c"] = np.nan
    frame.loc[4, "temp_c"] = 999.0
    frame.loc[5, "rpm"] = np.inf
    report = ingest_frame(store, settings, "industrial", frame, source="unit", now=NOW)
    assert_accounted(report)
    assert report.quarantined == 2 and report.status == "warning"
    with sqlite3.connect(tmp_path / "t.db") as conn:
        nulls = conn.execute("select count(*) from readings_industrial where temp_c is null").fetchone()[0]
        reasons = [r[0] for r in conn.execute("select reason from quarantine order by id")]
        run = conn.execute("select status, rows_in, quarantined from run where id=?", (report.run_id,)).fetchone()
    assert nulls == 1
    assert reasons == ["temp_c=999.0 outside valid range [-40, 200]", "rpm=inf is not finite"]
    assert run == ("warning", len(frame), 2)


def test_alerts_are_stored_as_validation_events(settings, store):
    frame = simulated(settings, devices=2, hours=0.2)
    frame.loc[frame["device_id"] == "pump-001", "vibration_g"] = np.nan
    report = ingest_frame(store, settings, "industrial", frame, source="unit", now=NOW)
    events = store.count(ValidationEvent, ValidationEvent.run_id == report.run_id)
    assert events == len(report.validation.alerts) >= 1
    alert = report.validation.alerts[0]
    assert (alert.check, alert.device_id, alert.signal, alert.value) == ("missing_rate", "pump-001", "vibration_g", 1.0)


def test_chunks_of_one_run_are_checked_together(settings, store):
    frame = simulated(settings, devices=2, hours=0.2)
    with IngestRun(store, settings, "industrial", source="chunks", now=NOW) as run:
        run.add(frame.iloc[:50])
        run.add(frame.iloc[40:])  # overlaps: 10 duplicate keys within the input
    report = run.report
    assert_accounted(report)
    assert report.inserted == len(frame) and report.quarantined == 10
    assert report.validation.checks["duplicate"] == 10


def test_error_inside_a_run_marks_it_error(settings, store):
    with pytest.raises(RuntimeError), IngestRun(store, settings, "industrial", source="boom", now=NOW) as run:
        run.add(simulated(settings, devices=1, hours=0.05))
        raise RuntimeError("boom")
    assert run.report.status == "error"
    assert next(store.iter_runs()).status == "error"


def test_stale_runs_are_aborted_but_live_ones_kept(settings, store):
    dead = store.start_run("ingest", "killed")  # no owner: a process that died
    with IngestRun(store, settings, "industrial", source="next", now=NOW) as run:
        assert abort_dead_runs(store) == 0  # this run's owner (us) is alive
        run.add(simulated(settings, devices=1, hours=0.05))
    with store.session() as session:
        assert session.get(Run, dead).status == "aborted"
        assert session.get(Run, run.report.run_id).status == "ok"


@st.composite
def messy_frames(draw):
    n = draw(st.integers(1, 40))
    devices = draw(st.lists(st.sampled_from(["a", "b", "", " c", "d\x00", "e" * 300]), min_size=n, max_size=n))
    steps = draw(st.lists(st.integers(0, 30), min_size=n, max_size=n))
    temps = draw(st.lists(st.sampled_from([60.0, 70.0, np.nan, np.inf, 999.0, -1e6]), min_size=n, max_size=n))
    ts = [pd.Timestamp("2026-01-01") + pd.Timedelta(seconds=10 * s) for s in steps]
    bad_ts = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    frame = pd.DataFrame(
        {
            "device_id": devices,
            "ts": [("not a time" if b else t.isoformat()) for t, b in zip(ts, bad_ts)],
            "rpm": 1400.0,
            "temp_c": temps,
            "vibration_g": 0.3,
            "current_a": 40.0,
            "voltage_v": 400.0,
        }
    )
    return frame


@hsettings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(frame=messy_frames())
def test_property_ingestion_accounts_for_every_row(settings, frame):
    folder = tempfile.mkdtemp()
    store = Store(settings, url=f"sqlite:///{folder}/p.db")
    try:
        first = ingest_frame(store, settings, "industrial", frame, source="prop", now=NOW)
        second = ingest_frame(store, settings, "industrial", frame, source="prop", now=NOW)
        for report in (first, second):
            assert_accounted(report)
            assert report.rows_in == len(frame)
        assert second.inserted == 0
        assert second.duplicates == first.inserted
        assert store.count_readings("industrial") == first.inserted
        with store.engine.connect() as conn:
            quarantined = [r[0] for r in conn.exec_driver_sql("select device_id from quarantine") if r[0] is not None]
        assert all(d.isprintable() and len(d) <= 128 for d in quarantined)  # fit for any database
        stored = store.read_readings("industrial")
        accepted_nan = frame["temp_c"].isna() & ~frame["device_id"].isin(["", " c", "d\x00", "e" * 300])
        if first.inserted:
            assert stored["temp_c"].isna().sum() <= accepted_nan.sum()
            assert np.isfinite(stored["temp_c"].dropna()).all()
    finally:
        store.close()
        shutil.rmtree(folder, ignore_errors=True)


CHILLER = """
[database]
url = "sqlite:///chiller.db"
batch_rows = 500

[[simulation.fleet]]
profile = "chiller"
devices = 3
prefix = "ch"

[profiles.chiller]
description = "Water chiller"
key_signals = ["supply_c", "compressor_kw"]

[profiles.chiller.signals.supply_c]
unit = "°C"
baseline = 7.0
noise = 0.1
daily_amplitude = 0.5
range = [-5.0, 30.0]
family = "thermal"

[profiles.chiller.signals.compressor_kw]
unit = "kW"
baseline = 120.0
noise = 3.0
range = [0.0, 400.0]
family = "electrical"

[profiles.chiller.signals.refrigerant_bar]
unit = "bar"
baseline = 9.0
noise = 0.2
range = [0.0, 40.0]
family = "hydraulic"

[profiles.chiller.states.RUN]
weight = 0.7

[profiles.chiller.states.STANDBY]
weight = 0.3
effects = { compressor_kw = 0.1 }

[profiles.chiller.faults.refrigerant_leak]
onset = "gradual"
duration_s = [1800, 3600]
effects = [{ signal = "refrigerant_bar", kind = "drift", magnitude = -4.0 }]

[profiles.chiller.faults.probe_dropout]
onset = "abrupt"
duration_s = [300, 600]
effects = [{ signal = "supply_c", kind = "dropout", magnitude = 1.0 }]
"""


def test_a_third_profile_declared_only_in_config(tmp_path):
    path = tmp_path / "chiller.toml"
    path.write_text(CHILLER, encoding="utf-8")
    settings = load_settings(path)
    sim = Simulator(settings, "chiller", settings.simulation.fleet[0].device_ids(), fault_rate_per_device_day=8)
    frame = sim.generate("2026-01-01", "2026-01-01 06:00")
    frame.loc[0, "refrigerant_bar"] = 99.0  # outside [0, 40]
    store = Store(settings)
    try:
        report = ingest_frame(store, settings, "chiller", frame, source="sim:chiller", now=NOW)
        assert_accounted(report)
        assert report.quarantined == 1 and report.inserted == len(frame) - 1
        stored = store.read_readings("chiller")
        assert set(stored.columns) >= {"supply_c", "compressor_kw", "refrigerant_bar", "state", "fault"}
        assert set(stored["state"]) <= {"RUN", "STANDBY"}
        assert (tmp_path / "chiller.db").exists()
        again = ingest_frame(store, settings, "chiller", frame, source="sim:chiller", now=NOW)
        assert again.inserted == 0 and again.duplicates == len(frame) - 1
    finally:
        store.close()
    assert math.isclose(report.rows_in, len(frame))


# ---------------------------------------------------------------------- the protocols
def test_the_sql_store_is_a_telemetry_store_and_the_sources_are_sources(settings, store, tmp_path):
    from itap_engine.ingest.csv_source import CsvFileSource, plan_csv
    from itap_engine.ingest.source import FrameSource, TelemetrySource
    from itap_engine.store.protocol import TelemetryStore

    assert isinstance(store, TelemetryStore)
    path = tmp_path / "a.csv"
    simulated(settings, devices=1, hours=0.01).to_csv(path, index=False)
    plan = plan_csv(settings, path)
    try:
        assert isinstance(CsvFileSource(plan, 100), TelemetrySource)
    finally:
        assert plan.source is not None
        plan.source.close()
    assert isinstance(FrameSource("x", "industrial", pd.DataFrame()), TelemetrySource)


class ChunkedSource:
    """A source of our own: any object with name, profile, raw_names and frames() is ingested."""

    name = "chunks"
    profile = "industrial"
    raw_names: dict[str, str] = {}

    def __init__(self, chunks: list[pd.DataFrame]) -> None:
        self.chunks = chunks

    def frames(self):
        yield from self.chunks


@given(cuts=st.lists(st.integers(min_value=1, max_value=59), max_size=4, unique=True))
@hsettings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_source_is_ingested_as_one_run_whatever_its_chunks(settings, cuts):
    from itap_engine.ingest.pipeline import ingest_source

    frame = simulated(settings, devices=1, hours=0.1)  # 36 readings
    frame = pd.concat([frame, frame.iloc[:5]], ignore_index=True)  # 5 duplicates in the input
    frame.loc[7, "temp_c"] = 999.0  # one out of range
    bounds = [0, *sorted(c for c in cuts if c < len(frame)), len(frame)]
    chunks = [frame.iloc[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    folder = Path(tempfile.mkdtemp())
    try:
        store = Store(settings, url=f"sqlite:///{folder / 't.db'}")
        report = ingest_source(store, settings, ChunkedSource(chunks), now=NOW)
        assert (report.rows_in, report.inserted, report.quarantined) == (41, 35, 6)
        assert report.source == "chunks" and len(list(store.iter_runs())) == 1
        store.close()
    finally:
        shutil.rmtree(folder)
