"""Simulation: deterministic, continuable, faults with ground truth."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from itap_engine.config import load_settings
from itap_engine.ingest.simulator import FaultEvent, Simulator, device_ids_for

REPO = Path(__file__).resolve().parents[2]
SETTINGS = load_settings(REPO / "config.toml")
START = SETTINGS.simulation.start


def sim(profile: str = "industrial", devices: int = 4, **kw: object) -> Simulator:
    return Simulator(SETTINGS, profile, device_ids_for("d", devices), **kw)  # type: ignore[arg-type]


def test_shape_and_columns() -> None:
    frame = sim().generate(START, START + timedelta(hours=1))
    assert len(frame) == 4 * 360
    assert list(frame.columns) == [
        "device_id",
        "ts",
        "state",
        "rpm",
        "temp_c",
        "vibration_g",
        "current_a",
        "voltage_v",
        "fault",
    ]
    assert frame.groupby("device_id")["ts"].apply(lambda s: s.is_monotonic_increasing).all()
    assert set(frame["state"]) <= {"RUN", "IDLE", "MAINT"}


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    a = sim(seed=1).generate(START, START + timedelta(hours=2))
    b = sim(seed=1).generate(START, START + timedelta(hours=2))
    c = sim(seed=2).generate(START, START + timedelta(hours=2))
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["temp_c"].to_numpy(), c["temp_c"].to_numpy(), equal_nan=True)


@hsettings(max_examples=25, deadline=None)
@given(cut_s=st.integers(min_value=1, max_value=4 * 3600 - 1), offset_s=st.integers(min_value=0, max_value=7200))
def test_continuable_split_anywhere(cut_s: int, offset_s: int) -> None:
    """[t0, t2) in one call equals [t0, t1) then [t1, t2), wherever t1 falls."""
    t0 = START + timedelta(seconds=offset_s)
    t1, t2 = t0 + timedelta(seconds=cut_s), t0 + timedelta(hours=4)
    whole = sim(fault_rate_per_device_day=24.0).generate(t0, t2)
    ticking = sim(fault_rate_per_device_day=24.0)
    parts = pd.concat([ticking.generate(t0, t1), ticking.generate(t1, t2)], ignore_index=True)
    parts = parts.sort_values(["device_id", "ts"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(whole, parts)


def test_states_change_levels() -> None:
    frame = sim(devices=10).generate(START, START + timedelta(days=1))
    by_state = frame.groupby("state")["rpm"].median()
    assert by_state["RUN"] > 1000 > by_state["IDLE"] > by_state["MAINT"]


def test_daily_cycle_is_visible() -> None:
    frame = sim(devices=1, fault_rate_per_device_day=0.0).generate(START, START + timedelta(days=1))
    run = frame[frame["state"] == "RUN"]
    hourly = run.groupby(run["ts"].dt.hour)["temp_c"].mean()
    assert hourly.max() - hourly.min() > 3.0  # daily amplitude 3 °C each way


@pytest.mark.parametrize(
    ("fault", "signal", "check"),
    [
        ("overheat_drift", "temp_c", lambda before, during: during.iloc[-10:].mean() > before.mean() + 15),
        ("bearing_wear", "vibration_g", lambda before, during: during.iloc[-10:].mean() > before.mean() + 0.5),
        ("power_spike", "current_a", lambda before, during: during.min() > before.max()),
        ("sensor_dropout", "temp_c", lambda before, during: during.isna().all() and before.notna().all()),
    ],
)
def test_scheduled_fault_shapes_its_signal_and_is_labelled(fault: str, signal: str, check: object) -> None:
    s = sim(devices=2, fault_rate_per_device_day=0.0)
    start = START + timedelta(hours=2)
    s.schedule(FaultEvent("d-001", fault, start, duration_s=3600 if "drift" in fault or "wear" in fault else 300))
    frame = s.generate(START, START + timedelta(hours=4))
    dev = frame[frame["device_id"] == "d-001"].set_index("ts")
    labelled = dev[dev["fault"] == fault]
    assert labelled.index.min() == pd.Timestamp(start)
    before = dev.loc[start - timedelta(minutes=20) : start - timedelta(seconds=10), signal]
    during = labelled[signal]
    assert check(before, during)  # type: ignore[operator]
    other = frame[frame["device_id"] == "d-002"]
    assert other["fault"].isna().all()


def test_gradual_faults_grow_and_abrupt_faults_jump() -> None:
    s = sim(devices=1, fault_rate_per_device_day=0.0)
    start = START + timedelta(hours=1)
    s.schedule(FaultEvent("d-001", "overheat_drift", start, duration_s=3600, severity=1.0))
    frame = s.generate(START, START + timedelta(hours=3)).set_index("ts")
    during = frame.loc[frame["fault"] == "overheat_drift", "temp_c"]
    baseline = frame.loc[: start - timedelta(seconds=10), "temp_c"].tail(30).mean()
    assert during.iloc[:3].mean() - baseline < 3  # starts small
    assert during.iloc[-3:].mean() - baseline > 20  # ends large


def test_random_faults_follow_the_rate_and_are_reported() -> None:
    s = sim(devices=20, fault_rate_per_device_day=2.0)
    t1 = START + timedelta(days=2)
    frame = s.generate(START, t1)
    events = s.fault_events(START, t1)
    assert 40 <= len(events) <= 120  # 20 devices x 2 days x 2 per day = 80 expected
    labelled = frame.dropna(subset=["fault"])
    for event in events[:10]:
        rows = labelled[(labelled["device_id"] == event.device_id) & (labelled["fault"] == event.fault)]
        assert (rows["ts"] >= pd.Timestamp(event.start)).any()


def test_values_stay_inside_the_valid_range() -> None:
    frame = sim(devices=10, fault_rate_per_device_day=12.0).generate(START, START + timedelta(days=1))
    for name, spec in SETTINGS.profile("industrial").signals.items():
        values = frame[name].dropna()
        assert values.between(*spec.range).all(), name


def test_schedule_rejects_unknown_fault_and_device() -> None:
    s = sim()
    with pytest.raises(ValueError, match="no fault 'melt'"):
        s.schedule(FaultEvent("d-001", "melt", datetime(2026, 1, 1), 60))
    with pytest.raises(ValueError, match="not simulated"):
        s.schedule(FaultEvent("zz", "power_spike", datetime(2026, 1, 1), 60))


def test_aircraft_profile_simulates() -> None:
    frame = sim("aircraft", devices=3).generate(START, START + timedelta(hours=2))
    assert {"lat", "lon", "altitude_ft", "speed_kt", "heading_deg", "status"} <= set(frame.columns)
    assert frame.loc[frame["state"] == "RUN", "altitude_ft"].median() > 30000
