"""The engine on real SQLite files: ticks, faults, commands, failures, loop lag, SIGTERM.

A module fixture bootstraps one small database (4 pumps, 1 h of history, a model)
and every test works on its own copy, so the bootstrap cost is paid once.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlmodel import select

from itap_bench.engine import derived_config
from itap_bench.loop_lag import LoopLagMonitor
from itap_engine.config import Settings, load_settings
from itap_engine.detection.alerts import Contributor
from itap_engine.engine.core import EngineCore
from itap_engine.engine.service import Engine
from itap_engine.facade.attached import AttachedFacade
from itap_engine.facade.local import LocalFacade
from itap_engine.snapshot import EngineFacade, Progress, Snapshot
from itap_engine.store import schema as models
from itap_engine.store.sql import Store, datetime_to_ms, from_epoch_ms
from itap_engine.store.watermarks import SIM_CLOCK_KEY

REPO = Path(__file__).resolve().parents[2]
DEVICES = ["pump-001", "pump-002", "pump-003", "pump-004"]


def small_config(folder: Path, **sections: dict) -> Path:
    """4 pumps, no random faults, 6 h bootstrap, 60 simulated seconds per 0.2 s tick.

    States last a day: six hours of history cannot show the model every state change,
    and the first unseen one would (rightly) score as anomalous. The robust-z
    detector: on six hours of history it flags a drifting temperature within a few
    ticks, where the isolation forest (60 features) barely moves.
    """
    base = load_settings(REPO / "config.toml")
    changes = {
        "simulation": {"fault_rate_per_device_day": 0.0, "state_dwell_s": 86400},
        "detection": {"bootstrap_hours": 6.0, "detector": "robust_z"},
        "engine": {"tick_seconds": 0.2, "sim_speed": 300.0, "retrain_minutes": 600, "housekeeping_minutes": 600},
    }
    for name, values in sections.items():
        changes[name] = {**changes.get(name, {}), **values}
    return derived_config(
        base,
        folder,
        fleet=[{"profile": "industrial", "devices": 4, "prefix": "pump", "sites": ["north", "south"]}],
        **changes,
    )


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("engine-template")
    config = small_config(folder)
    core = EngineCore(load_settings(config))
    core.bootstrap()
    core.close()
    return folder


@pytest.fixture
def workdir(template: Path, tmp_path: Path) -> Path:
    target = tmp_path / "site"
    shutil.copytree(template, target)
    return target


def settings_of(folder: Path, **sections: dict) -> Settings:
    if sections:
        small_config(folder, **sections)
    return load_settings(folder / "config.toml")


def readings_count(settings: Settings) -> int:
    store = Store(settings)
    try:
        return store.count_readings("industrial")
    finally:
        store.close()


# ---------------------------------------------------------------------- bootstrap and resume
async def test_first_start_bootstraps_then_a_restart_resumes(tmp_path: Path) -> None:
    settings = load_settings(small_config(tmp_path / "fresh"))
    seen: list[Progress] = []
    engine = Engine(settings, schedule=False)
    await engine.start(seen.append)
    await asyncio.sleep(0)  # progress callbacks are delivered on the loop
    stages = {p.stage for p in seen}
    assert {"history", "training"} <= stages
    assert max(p.fraction for p in seen if p.stage == "history") == pytest.approx(1.0)
    assert readings_count(settings) == 4 * 2160  # 6 h at 10 s, 4 devices
    first = engine.latest()
    assert first is not None and first.stats.model_versions.get("industrial")
    await engine.tick_now()
    clock = engine.core.sim_time  # type: ignore[union-attr]
    await engine.stop()

    again: list[Progress] = []
    engine = Engine(settings, schedule=False)
    await engine.start(again.append)
    try:
        assert not again, "a second start must not bootstrap"
        assert engine.core is not None and engine.core.sim_time == clock
        assert engine.latest().stats.model_versions == first.stats.model_versions  # type: ignore[union-attr]
    finally:
        await engine.stop()


# ---------------------------------------------------------------------- ticks
async def test_ticks_advance_the_clock_store_rows_and_publish_snapshots(workdir: Path) -> None:
    settings = settings_of(workdir)
    before = readings_count(settings)
    engine = Engine(settings, schedule=False)
    snapshots: list[Snapshot] = []
    engine.subscribe(snapshots.append)
    await engine.start()
    try:
        start = engine.core.sim_time  # type: ignore[union-attr]
        for _ in range(3):
            result = await engine.tick_now()
            assert result is not None and result.inserted == result.scored == 4 * 6 and result.quarantined == 0
        assert engine.core.sim_time == start + timedelta(seconds=3 * 60)  # type: ignore[union-attr]
        snap = engine.latest()
        assert snap is not None and snap.stats.ticks == 3 and snap.stats.tick_ms and snap.stats.rows_per_s
        assert [d.device_id for d in snap.devices] == DEVICES
        assert all(d.score is not None and d.values["temp_c"] is not None for d in snap.devices)
        assert all(d.status == "ok" for d in snap.devices), [(d.device_id, d.status) for d in snap.devices]
        assert [s.seq for s in snapshots] == sorted(s.seq for s in snapshots) and len(snapshots) == 4
    finally:
        await engine.stop()
    assert readings_count(settings) == before + 3 * 24


async def test_an_injected_overheat_alerts_that_device_and_no_other(workdir: Path) -> None:
    engine = Engine(settings_of(workdir), schedule=False)
    await engine.start()
    try:
        [command] = await engine.inject_fault(["pump-002"], "overheat_drift", 2.0, 3600)
        assert command.status == "pending"
        alerted: set[str] = set()
        for _ in range(15):
            await engine.tick_now()
            snap = engine.latest()
            assert snap is not None
            alerted = {a.device_id for a in snap.anomalies if a.alert_id is not None and a.status == "open"}
            if alerted:
                break
        assert alerted == {"pump-002"}, engine.last_error
        row = next(d for d in snap.devices if d.device_id == "pump-002")
        assert row.status in ("warning", "critical") and row.injected_fault == "overheat_drift"
        alert = next(a for a in snap.anomalies if a.device_id == "pump-002")
        assert alert.contributors and alert.contributors[0].signal == "temp_c"
        assert all(d.status == "ok" for d in snap.devices if d.device_id != "pump-002")
    finally:
        await engine.stop()


async def test_fault_commands_written_by_another_connection_are_picked_up(workdir: Path) -> None:
    settings = settings_of(workdir)
    engine = Engine(settings, schedule=False)
    await engine.start()
    try:
        other = Store(settings)  # what an attached console does, from its own connection
        with other.session() as session:
            for device, fault in (("pump-003", "bearing_wear"), ("pump-999", "bearing_wear"), ("pump-001", "melt")):
                session.add(models.FaultCommand(device_id=device, fault=fault, severity=1.0, duration_s=120))
            session.commit()
        clock = engine.core.sim_time  # type: ignore[union-attr]
        await engine.tick_now()
        with other.session() as session:
            rows = {c.device_id: c for c in session.exec(select(models.FaultCommand))}
        assert rows["pump-003"].status == "active"
        assert rows["pump-003"].start_ts == datetime_to_ms(clock)
        assert rows["pump-999"].status == "rejected" and "unknown device" in rows["pump-999"].message
        assert rows["pump-001"].status == "rejected" and "no fault 'melt'" in rows["pump-001"].message
        injected = {d.device_id: d.injected_fault for d in engine.latest().devices}  # type: ignore[union-attr]
        assert injected["pump-003"] == "bearing_wear"
        await engine.tick_now()
        await engine.tick_now()  # 120 s of fault at 60 s per tick: over
        with other.session() as session:
            assert session.get(models.FaultCommand, rows["pump-003"].id).status == "done"
        other.close()
    finally:
        await engine.stop()


async def test_a_failing_tick_is_shown_and_the_engine_goes_on(workdir: Path) -> None:
    settings = settings_of(workdir, database={"busy_timeout_ms": 200})
    engine = Engine(settings)  # scheduled: ticks every 0.2 s
    inbox = settings.resolve(settings.paths.inbox_dir)
    inbox.mkdir(exist_ok=True)
    (inbox / "broken.csv").write_bytes(b"\x00\x01 not a csv at all\n\xff\xfe")
    await engine.start()
    try:

        async def wait_for(predicate, timeout: float = 10.0) -> None:
            deadline = time.monotonic() + timeout
            while not predicate():
                assert time.monotonic() < deadline, engine.last_error
                await asyncio.sleep(0.05)

        await wait_for(lambda: engine.last_error and "broken.csv" in engine.last_error)
        assert (inbox / "failed" / "broken.csv").exists() and not (inbox / "broken.csv").exists()

        # A writer holding the database longer than the busy timeout makes ticks fail.
        # (It waits for a tick in flight to finish writing, so it never races one.)
        blocker = sqlite3.connect(settings.database_url.split("///", 1)[1], timeout=10)
        blocker.execute("BEGIN EXCLUSIVE")
        await wait_for(lambda: engine.last_error and "locked" in engine.last_error)
        clock = engine.core.sim_time  # type: ignore[union-attr]
        await asyncio.sleep(0.8)  # several more ticks fail while the lock is held
        assert engine.core.sim_time == clock  # type: ignore[union-attr]  # no interval lost or skipped
        blocker.rollback()
        blocker.close()
        ticks = engine.core.ticks  # type: ignore[union-attr]
        await wait_for(lambda: engine.core.ticks >= ticks + 3)  # type: ignore[union-attr]
        snap = engine.latest()
        assert snap is not None and snap.stats.last_error and "locked" in snap.stats.last_error
    finally:
        await engine.stop()
    store = Store(settings)
    try:
        ts = store.read_readings("industrial", device_ids=["pump-001"], columns=["ts"])["ts"].diff().dropna()
        assert set(ts.unique()) == {10_000}, "the simulated timeline has no gap and no duplicate"
    finally:
        store.close()


async def test_the_event_loop_keeps_running_during_ticks(workdir: Path) -> None:
    engine = Engine(settings_of(workdir))
    await engine.start()
    try:
        async with LoopLagMonitor(0.01) as lag:
            await asyncio.sleep(2.0)
        assert engine.core is not None and engine.core.ticks >= 3
    finally:
        await engine.stop()
    assert lag.samples_ms and lag.p95_ms < 250, (lag.p95_ms, lag.max_ms)


# ---------------------------------------------------------------------- facades
async def test_facades_implement_the_protocol_and_attach_to_the_same_database(workdir: Path) -> None:
    settings = settings_of(workdir)
    local = LocalFacade(settings, schedule=False)
    attached = AttachedFacade(settings, interval_s=0.1)
    assert isinstance(local, EngineFacade) and isinstance(attached, EngineFacade)
    await local.start()
    await attached.start()
    try:
        await attached.inject_fault(["pump-004"], "power_spike", 1.5, 120)
        await local.engine.tick_now()
        await local.engine.tick_now()
        await attached.refresh()
        snap = attached.latest()
        assert snap is not None and snap.stats.mode == "attached"
        assert [d.device_id for d in snap.devices] == DEVICES
        assert snap.stats.sim_time == local.engine.core.sim_time  # type: ignore[union-attr]
        assert all(d.score is not None for d in snap.devices)
        # the same anomalies list as the engine's: alerts, and its last tick's anomalous readings
        listed = local.latest().anomalies  # type: ignore[union-attr]
        assert [(a.device_id, a.ts, a.status) for a in snap.anomalies] == [
            (a.device_id, a.ts, a.status) for a in listed
        ]
        detail = await attached.device_detail("pump-004", window_s=600)
        assert len(detail.ts) == len(detail.series["current_a"]) == len(detail.scores) > 10
        assert detail.faults and detail.faults[0].fault == "power_spike" and detail.faults[0].status == "active"
        assert "power_spike" in detail.fault_labels
        local_detail = await local.device_detail("pump-004", window_s=600)
        assert local_detail.ts == detail.ts
        await attached.retrain("industrial")  # a request the engine picks up on its next tick
        before = local.latest().stats.model_versions["industrial"]  # type: ignore[union-attr]
        result = await local.engine.tick_now()
        assert result is not None and result.retrain_requested == "industrial"
        deadline = time.monotonic() + 20
        while local.latest().stats.model_versions["industrial"] == before:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, local.engine.last_error
            await asyncio.sleep(0.1)
            result = await local.engine.tick_now()
            assert result is not None and result.retrain_requested is None  # taken once
        attached.set_paused(True)
        assert attached.latest().stats.paused  # type: ignore[union-attr]
    finally:
        await attached.stop()
        await local.stop()


def test_attached_snapshot_lists_the_last_ticks_anomalous_readings(workdir: Path) -> None:
    """Readings above the threshold without an alert are listed from the score table,
    newest tick only, with the family of their top contributor."""
    from itap_engine.detection.scoring import insert_scores, load_active_model
    from itap_engine.facade.attached import snapshot_from_db

    settings = settings_of(workdir)
    store = Store(settings)
    try:
        threshold = load_active_model(store, settings, "industrial").threshold  # type: ignore[union-attr]
        clock = int(store.get_watermark("scored:industrial"))  # type: ignore[arg-type]
        push = [Contributor("vibration_g", "mechanical", 0.8), Contributor("temp_c", "thermal", 0.2)]
        rows = pd.DataFrame(
            {
                "device_id": ["pump-002", "pump-003", "pump-001"],
                "ts": [clock + 10_000, clock + 20_000, clock - 3_600_000],  # the last is an hour old
                "score": [threshold + 2.0, threshold - 0.1, threshold + 5.0],
                "model_version_id": 1,
                "contributors": [push, (), push],
            }
        )
        insert_scores(store, "industrial", rows)
        store.set_watermark(SIM_CLOCK_KEY, from_epoch_ms([clock + 20_000])[0].isoformat())
        snap = snapshot_from_db(store, settings, 1)
        readings = [a for a in snap.anomalies if a.status == "reading"]
        assert [(a.device_id, a.ts) for a in readings] == [("pump-002", clock + 10_000)]
        assert readings[0].family == "mechanical" and readings[0].contributors[0].signal == "vibration_g"
    finally:
        store.close()


def test_an_attached_view_names_a_silent_shard_and_runs_on_the_live_shards_clock(workdir: Path) -> None:
    """A shard engine killed: the old attached view kept its clock at the dead shard's
    (the furthest behind), so the live shards' devices looked current and the dead
    shard's never went stale, with no word on the screen. Now the clock is the live
    shards' and the header's error names the silent shard; a stopped engine of another
    layout (a trial ``--shard 0/5``) is history, neither clock nor warning."""
    from datetime import UTC, datetime

    from itap_engine.facade.attached import snapshot_from_db
    from itap_engine.store.watermarks import ENGINE_STATUS_KEY, for_shard

    settings = settings_of(workdir)
    store = Store(settings)
    try:
        newest = datetime.fromisoformat(store.get_watermark(SIM_CLOCK_KEY))  # type: ignore[arg-type]
        now = datetime.now(UTC)

        def engine(shard: str, clock: datetime, heard_s_ago: float, phase: str = "running") -> None:
            beat = (now - timedelta(seconds=heard_s_ago)).isoformat(timespec="seconds")
            status = {"pid": 1, "heartbeat": beat, "phase": phase, "ticks": 5, "shard": shard, "tick_ms": 20.0}
            store.set_watermark(for_shard(SIM_CLOCK_KEY, shard), clock.isoformat())
            store.set_watermark(for_shard(ENGINE_STATUS_KEY, shard), json.dumps(status))

        engine("0/2", newest, heard_s_ago=1)
        engine("1/2", newest - timedelta(hours=1), heard_s_ago=600)  # killed ten minutes ago
        engine("0/5", newest - timedelta(hours=5), heard_s_ago=7200, phase="stopped")
        snap = snapshot_from_db(store, settings, 1)
        assert snap.stats.sim_time == newest
        assert snap.stats.last_error == "shard 1/2 silent (stopped or died): its devices are not updating"
        assert snap.stats.ticks == 15

        engine("1/2", newest, heard_s_ago=1)  # a replacement took the shard over
        snap = snapshot_from_db(store, settings, 2)
        assert snap.stats.sim_time == newest and snap.stats.last_error is None
    finally:
        store.close()


# ---------------------------------------------------------------------- the command
@pytest.mark.slow
def test_itap_engine_exits_0_on_sigterm_with_a_consistent_database(workdir: Path) -> None:
    settings = settings_of(workdir)
    env = {**os.environ, "ITAP_CONFIG": str(workdir / "config.toml")}
    env.pop("ITAP_DB_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "itap_tui.cli", "engine"],
        env=env,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = Store(settings)
    try:
        start = store.get_watermark(SIM_CLOCK_KEY)
        deadline = time.monotonic() + 30
        while store.get_watermark(SIM_CLOCK_KEY) == start or not json.loads(
            store.get_watermark("engine.status") or "{}"
        ).get("ticks"):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the engine did not tick"
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out == "" and "stopped cleanly" in err
    status = json.loads(store.get_watermark("engine.status") or "{}")
    assert status["phase"] == "stopped"
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        assert conn.exec_driver_sql("SELECT count(*) FROM run WHERE status = 'running'").scalar() == 0
    clock = store.get_watermark(SIM_CLOCK_KEY)
    latest = store.latest_ts("industrial")
    assert latest is not None and clock is not None
    from datetime import datetime

    clock_ms = int((datetime.fromisoformat(clock) - datetime(1970, 1, 1)).total_seconds() * 1000)
    assert clock_ms - 10_000 <= latest < clock_ms, "every reading before the clock is stored, none after"
    assert int(store.get_watermark("scored:industrial") or 0) == latest
    store.close()
    with sqlite3.connect(settings_of(workdir).database_url.split("///", 1)[1]) as conn:
        assert conn.execute("SELECT count(*) FROM run_lease").fetchone() == (0,)  # the run lock was released
    assert (workdir / "itap.log").read_text()


SKAB_FILE = REPO.parent / "shared" / "data" / "skab" / "valve1" / "0.csv"


@pytest.mark.skipif(not SKAB_FILE.is_file(), reason="SKAB dev set not available")
def test_housekeeping_never_deletes_imported_readings_by_the_simulated_clock(workdir: Path) -> None:
    """Retention is per source and per device, against the device's own newest reading:
    a SKAB file from 2020 next to a fleet simulated in 2026 keeps every row, while the
    simulated devices are trimmed to their retention."""
    from itap_engine.ingest.csv_source import CsvOptions, import_csv

    settings = settings_of(workdir, engine={"retention_hours": 1.0})
    core = EngineCore(settings)
    try:
        report = import_csv(core.store, settings, SKAB_FILE, CsvOptions(profile="skab_pump", device="skab-valve1-0"))
        assert report.inserted == 1147
        core.resume()
        for _ in range(5):
            core.tick()
            core.housekeeping()
        imported = core.store.read_readings("skab_pump", device_ids=["skab-valve1-0"])
        assert len(imported) == report.inserted  # every imported row is still there
        simulated = core.store.read_readings("industrial", device_ids=["pump-001"])
        span_h = (simulated["ts"].max() - simulated["ts"].min()) / 3_600_000
        assert span_h <= 1.01  # the simulated history (6 h) was trimmed to its retention
    finally:
        core.close()


async def test_an_injected_dropout_opens_one_incident_that_closes_within_the_quiet_period(workdir: Path) -> None:
    """Issue 12: a sensor_dropout opened two alerts (events and mechanical) that stayed
    open ~20 simulated minutes. Now one incident per device, closed a quiet period
    (default: 12 readings, 2 simulated minutes) after its last anomalous reading."""
    settings = settings_of(workdir)
    engine = Engine(settings, schedule=False)
    await engine.start()
    try:
        await engine.inject_fault(["pump-002"], "sensor_dropout", 3.0, 600)
        incidents: list[models.Alert] = []
        for _ in range(60):
            await engine.tick_now()
            snap = engine.latest()
            assert snap is not None
            open_now = [
                a for a in snap.anomalies if a.alert_id is not None and a.status == "open" and a.device_id == "pump-002"
            ]
            assert len(open_now) <= 1
            store = Store(settings)
            try:
                with store.session() as session:
                    incidents = list(session.exec(select(models.Alert).where(models.Alert.device_id == "pump-002")))
            finally:
                store.close()
            if incidents and all(a.status == "closed" for a in incidents):
                break
        assert incidents, engine.last_error
        assert all(a.status == "closed" for a in incidents)
        for incident in incidents:
            assert incident.closed_ts - incident.last_ts == 120_000  # the quiet period, data time
        families = {c["family"] for c in json.loads(incidents[0].contributors)}
        assert len(families) >= 1
        # validation: one problem per (device, signal, check), in data time, not a row per batch
        store = Store(settings)
        try:
            with store.session() as session:
                problems = list(session.exec(select(models.ValidationProblem)))
                events = store.count(models.ValidationEvent)
        finally:
            store.close()
        keys = [(p.device_id, p.signal, p.check) for p in problems if p.status == "open"]
        assert len(keys) == len(set(keys))
        start_ms = datetime_to_ms(settings.simulation.start)
        assert all(p.first_ts >= start_ms and p.last_ts >= p.first_ts for p in problems)
        assert len(problems) <= max(1, events)
    finally:
        await engine.stop()


async def test_the_events_view_gets_engine_warnings_faults_and_incidents_in_data_time(workdir: Path) -> None:
    import logging

    from itap_engine.store.queries import recent_events

    settings = settings_of(workdir)
    facade = LocalFacade(settings, schedule=False)
    await facade.start()
    try:
        engine = facade.engine
        await facade.inject_fault(["pump-002"], "overheat_drift", 3.0, 600)
        for _ in range(6):
            await engine.tick_now()
        clock = datetime_to_ms(engine.core.sim_time)
        logging.getLogger("itap_engine.engine.core").warning("disk nearly full")
        await engine.tick_now()
        events = await facade.events(100)
        [warning] = [e for e in events if e.kind == "log" and e.text == "disk nearly full"]
        assert warning.level == "warning" and warning.ts == clock  # the simulated clock when it was logged
        kinds = {e.kind for e in events}
        assert {"fault", "retrain", "incident"} <= kinds, kinds
        assert [e.ts for e in events if e.ts is not None] == sorted(
            (e.ts for e in events if e.ts is not None), reverse=True
        )
        assert recent_events(engine.core.store, 5)[0].ts >= clock
    finally:
        await facade.stop()


async def test_snapshot_at_a_past_time_shows_what_was_stored_then(workdir: Path) -> None:
    settings = settings_of(workdir)
    facade = LocalFacade(settings, schedule=False)
    await facade.start()
    try:
        engine = facade.engine
        before = engine.core.sim_time
        await facade.inject_fault(["pump-002"], "overheat_drift", 3.0, 3600)
        for _ in range(15):
            await engine.tick_now()
            if any(a.device_id == "pump-002" and a.status == "open" for a in engine.latest().anomalies):
                break
        now = engine.latest()
        assert any(a.device_id == "pump-002" and a.status == "open" for a in now.anomalies), engine.last_error
        past = await facade.snapshot_at(before)
        assert past.stats.mode == "past" and past.stats.sim_time == before
        assert not [a for a in past.anomalies if a.device_id == "pump-002" and a.status == "open"]
        row = next(d for d in past.devices if d.device_id == "pump-002")
        assert row.last_ts is not None and row.last_ts <= datetime_to_ms(before)
        assert row.status == "ok"
        assert (await facade.snapshot_at(now.stats.sim_time)).open_incidents().open == now.open_incidents().open
    finally:
        await facade.stop()


@pytest.fixture(scope="module")
def shift_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small site with the default detector (shift) instead of robust_z."""
    folder = tmp_path_factory.mktemp("engine-shift")
    config = small_config(folder, detection={"detector": "shift"})
    core = EngineCore(load_settings(config))
    core.bootstrap()
    core.close()
    return folder


async def test_an_incident_stops_being_held_open_by_a_fault_that_has_ended(
    shift_template: Path, tmp_path: Path
) -> None:
    """Issue 12: after a fault ends, the trailing mean still held it for the whole short
    window (11 readings), so the incident's last anomalous reading came 110 s after the
    fault's last reading and it closed the quiet period later (230 s). The score now
    follows the newest half of the window too, so it falls before the window has
    passed. (The issue's target, closing within 3 minutes, is met at the median of the
    simulated scenario, not always: benchmarks/RESULTS.md.)"""
    workdir = tmp_path / "site"
    shutil.copytree(shift_template, workdir)
    settings = load_settings(workdir / "config.toml")
    engine = Engine(settings, schedule=False)
    await engine.start()
    try:
        await engine.inject_fault(["pump-002"], "power_spike", 1.5, 120)
        incidents: list[models.Alert] = []
        for _ in range(30):
            await engine.tick_now()
            store = Store(settings)
            try:
                with store.session() as session:
                    incidents = list(session.exec(select(models.Alert).where(models.Alert.device_id == "pump-002")))
            finally:
                store.close()
            if incidents and all(a.status == "closed" for a in incidents):
                break
        assert incidents, engine.last_error
        assert len(incidents) == 1 and incidents[0].status == "closed"
        store = Store(settings)
        try:
            truth = store.read_readings("industrial", device_ids=["pump-002"], columns=["device_id", "ts", "fault"])
        finally:
            store.close()
        faulty = truth.loc[truth["fault"].notna(), "ts"]
        assert len(faulty) and incidents[0].opened_ts <= int(faulty.max())
        step = int(settings.simulation.freq_s * 1000)
        window = settings.features.window
        assert incidents[0].last_ts - int(faulty.max()) < (window - 1) * step
        assert incidents[0].closed_ts - incidents[0].last_ts == settings.alerts.quiet_seconds * 1000
    finally:
        await engine.stop()


async def test_a_retrain_is_numbered_as_the_header_numbers_it(workdir: Path) -> None:
    """Model versions share one id sequence across profiles; the console numbers them
    per profile (v1, v2, ...). The retrain toast and the events list used the shared id
    ('industrial v4') while the header said v2: all three now say the same."""
    from itap_engine.store import schema

    settings = settings_of(workdir)
    facade = LocalFacade(settings, schedule=False)
    await facade.start()
    try:
        store = facade.engine.core.store
        with store.session() as session:  # another profile's version takes the next shared id
            session.add(schema.ModelVersion(profile="other", detector="shift", path="-", sha256="0" * 64, active=False))
            session.commit()
        done = await facade.retrain("industrial")
        assert done == {"industrial": 2}, done
        await facade.engine.tick_now()
        assert facade.engine.core.model_versions()["industrial"] == 2  # the header's number
        retrains = [e.text for e in await facade.events(100) if e.kind == "retrain" and e.text.startswith("industrial")]
        assert retrains[0].startswith("industrial model v2 "), retrains
    finally:
        await facade.stop()


async def test_a_model_made_by_an_older_itap_is_retrained_at_start_and_ticks_score(workdir: Path) -> None:
    """A database whose model an older ITAP made (its feature builder lacks the
    ``__recent`` features this version builds): every tick failed with
    ``KeyError: 'rpm__recent'``, for good. The engine now trains a new model from the
    stored history when it starts, says why in the events, and its ticks score."""
    from itap_engine.detection import model_files

    settings = settings_of(workdir)
    store = Store(settings)
    try:  # rewrite the model as an older ITAP wrote it: no __recent features
        with store.session() as session:
            version = session.exec(select(models.ModelVersion).where(models.ModelVersion.active == True)).one()  # noqa: E712
            bundle = model_files.decode_model(model_files.read_model_file(Path(version.path))[1])
            builder = bundle["features"]
            builder.feature_names_out_ = [n for n in builder.feature_names_out_ if not n.endswith("__recent")]
            older = workdir / "older-model.npz"  # the path stored is the template's, shared by the module
            version.sha256 = model_files.write_model_file(older, bundle)
            version.path = str(older)
            session.add(version)
            session.commit()
    finally:
        store.close()
    facade = LocalFacade(settings, schedule=False)
    await facade.start()
    try:
        engine = facade.engine
        assert engine.core is not None and engine.core.model_versions() == {"industrial": 2}
        before = engine.core.ticks
        await engine.tick_now()
        assert engine.last_error is None and engine.core.ticks == before + 1
        scored = engine.latest()
        assert scored is not None and all(row.score is not None for row in scored.devices)
        said = [e.text for e in await facade.events(100) if e.kind == "log"]
        assert any(t.startswith("model version 1 of industrial was made by an older ITAP") for t in said), said
    finally:
        await facade.stop()


async def test_an_incident_seen_at_a_past_time_ends_at_that_time(workdir: Path) -> None:
    """In a past snapshot an incident still open then shows its last reading and peak
    by then, not the later ones stored since (a fresh-eyes review saw times after the
    chosen moment in the past incidents list)."""
    settings = settings_of(workdir)
    facade = LocalFacade(settings, schedule=False)
    await facade.start()
    try:
        engine = facade.engine
        await facade.inject_fault(["pump-002"], "overheat_drift", 3.0, 3600)
        for _ in range(15):
            await engine.tick_now()
            if any(a.device_id == "pump-002" and a.status == "open" for a in engine.latest().anomalies):
                break
        opened_at = engine.core.sim_time
        for _ in range(4):  # the fault goes on: the stored incident moves past that moment
            await engine.tick_now()
        stored = next(a for a in engine.latest().anomalies if a.device_id == "pump-002" and a.status == "open")
        assert stored.ts > datetime_to_ms(opened_at)
        past = await facade.snapshot_at(opened_at)
        then = next(a for a in past.anomalies if a.device_id == "pump-002" and a.status == "open")
        assert then.ts <= datetime_to_ms(opened_at) and then.score <= stored.score
    finally:
        await facade.stop()
