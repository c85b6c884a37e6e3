"""What the tick got faster with (issue 13), each checked against what it replaced:
the tick's own rows read back from memory, the simulator's per-segment arrays, the
incident tracker's deferred column writes and the snapshot's column-wise rows."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from itap_bench.engine import derived_config
from itap_engine.config import load_settings
from itap_engine.engine.core import EngineCore
from itap_engine.ingest.pipeline import IngestRun, ingest_frame
from itap_engine.ingest.simulator import FaultEvent, Simulator
from itap_engine.store.sql import Store, to_epoch_ms

REPO = Path(__file__).resolve().parents[2]


def _config(folder: Path, devices: int = 4, fault_rate: float = 0.0) -> Path:
    return derived_config(
        load_settings(REPO / "config.toml"),
        folder,
        fleet=[{"profile": "industrial", "devices": devices, "prefix": "pump", "sites": ["north"]}],
        simulation={"fault_rate_per_device_day": fault_rate},
        detection={"bootstrap_hours": 1.0, "detector": "robust_z"},
        engine={"tick_seconds": 1.0, "sim_speed": 60.0},
    )


def test_the_rows_a_run_kept_are_what_the_database_gives_back(tmp_path: Path) -> None:
    settings = load_settings(_config(tmp_path / "site"))
    store = Store(settings)
    sim = Simulator(settings, "industrial", ["pump-b", "pump-a", "pump-10", "pump-9"], fault_rate_per_device_day=50.0)
    frame = sim.generate(sim.start, sim.start + timedelta(minutes=30))
    frame = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)  # any order in
    signal = sim.signals[0]
    frame.loc[0, signal] = -0.0  # stored as 0
    frame.loc[1, signal] = np.nan  # a dropout: NULL
    frame.loc[2, "fault"] = None
    ts = to_epoch_ms(frame["ts"])
    since, until = int(np.sort(ts)[5]), int(np.sort(ts)[-7])
    try:
        run = IngestRun(store, settings, "industrial", source="t", now=frame["ts"].max().to_pydatetime())
        run.kept = []
        with run:
            run.add(frame)
        assert run.kept is not None and len(run.kept) == 1
        read = store.read_readings("industrial", since_ms=since, until_ms=until)
        kept = store.readings_like_read("industrial", run.kept[0], since_ms=since, until_ms=until)
    finally:
        store.close()
    assert len(read) > 0 and frame["fault"].notna().any()
    pd.testing.assert_frame_equal(kept, read)
    assert np.signbit(kept[signal].to_numpy()).sum() == 0


def test_a_run_keeps_no_rows_when_some_were_stored_otherwise(tmp_path: Path) -> None:
    settings = load_settings(_config(tmp_path / "site"))
    store = Store(settings)
    sim = Simulator(settings, "industrial", ["pump-001"])
    frame = sim.generate(sim.start, sim.start + timedelta(minutes=5))
    now = frame["ts"].max().to_pydatetime()
    try:
        ingest_frame(store, settings, "industrial", frame, source="first", now=now)
        changed = frame.copy()
        changed[sim.signals[0]] += 1.0  # same keys, other values: conflicts
        run = IngestRun(store, settings, "industrial", source="again", now=now)
        run.kept = []
        with run:
            run.add(changed)
    finally:
        store.close()
    assert run.report.conflicts == len(frame)
    assert run.kept is None


def _ticked(folder: Path, ticks: int, between: object = None) -> tuple[list[int], int, int]:
    """Bootstrap and tick an engine: scored per tick, SQL reads of new readings, and
    the rows of the score table."""
    core = EngineCore(load_settings(_config(folder)))
    reads = 0
    read = core.store.read_readings

    def counted(*args: object, **kwargs: object) -> pd.DataFrame:
        nonlocal reads
        reads += 1
        return read(*args, **kwargs)  # type: ignore[arg-type]

    scored = []
    try:
        core.bootstrap()
        core.resume()
        core.store.read_readings = counted  # type: ignore[method-assign]
        for i in range(ticks):
            if callable(between):
                between(core, i)
            scored.append(core.tick().scored)
        with core.store.engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT count(*) FROM score").scalar_one()
    finally:
        core.close()
    return scored, reads, int(stored)


def test_ticks_read_their_own_rows_back_from_memory_after_the_first(tmp_path: Path) -> None:
    scored, reads, stored = _ticked(tmp_path / "site", 5)
    assert scored == [24] * 5  # 4 devices x 6 readings a tick
    assert stored == sum(scored)
    assert reads == 2  # the first tick reads; the second has no look at other writers before it


def test_rows_another_writer_stores_between_ticks_are_scored(tmp_path: Path) -> None:
    """A run of another writer (an `itap ingest` of the next minute of a new device)
    sends the next tick back to the database, which finds those rows."""

    def other_writer(core: EngineCore, i: int) -> None:
        if i != 3:
            return
        assert core.sim_time is not None
        sim = Simulator(core.settings, "industrial", ["pump-999"])
        t0 = core.sim_time
        frame = sim.generate(t0, t0 + timedelta(seconds=60))
        ingest_frame(core.store, core.settings, "industrial", frame, source="elsewhere.csv", now=t0)

    scored, reads, stored = _ticked(tmp_path / "site", 6, other_writer)
    assert scored[3] == 24 + 6  # the other writer's 6 readings of pump-999 are scored with the tick's
    assert scored[4:] == [24, 24]
    assert reads == 3  # the first two ticks, and the one after the other writer's run
    assert stored == sum(scored)


@pytest.mark.parametrize("seconds", [10, 30, 600])
def test_the_simulator_gives_the_same_rows_tick_by_tick_as_in_one_window(tmp_path: Path, seconds: int) -> None:
    settings = load_settings(_config(tmp_path / "site"))
    devices = [f"pump-{i:03d}" for i in range(6)]
    whole = Simulator(settings, "industrial", devices, fault_rate_per_device_day=40.0)
    ticked = Simulator(settings, "industrial", devices, fault_rate_per_device_day=40.0)
    start = whole.start + timedelta(minutes=50)
    fault = FaultEvent(devices[2], next(iter(whole.profile.faults)), start + timedelta(minutes=7), 900.0)
    whole.schedule(fault)
    ticked.schedule(fault)
    end = start + timedelta(hours=2)
    expected = whole.generate(start, end)
    parts = []
    t = start
    while t < end:
        parts.append(ticked.generate(t, min(end, t + timedelta(seconds=seconds))))
        t += timedelta(seconds=seconds)
    got = pd.concat(parts, ignore_index=True).sort_values(["device_id", "ts"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected.sort_values(["device_id", "ts"], kind="stable").reset_index(drop=True))
