"""Alert rules (k of n, quiet period, one per device and family, acknowledge) and the
explanation of an injected overheat."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from _detection_helpers import START, local_settings, open_store, quiet_fleet, simulate
from sqlmodel import select

from itap_engine.detection.alerts import AlertError, AlertTracker, Contributor, acknowledge_alert
from itap_engine.detection.scoring import StreamingScorer, train_model
from itap_engine.ingest.simulator import FaultEvent
from itap_engine.store.schema import Alert

THRESHOLD = 1.0


def scored(
    flags: str, *, device: str = "pump-001", family: str = "thermal", t0: int = 0, peak: float = 2.0
) -> pd.DataFrame:
    above = np.array([c == "1" for c in flags])
    return pd.DataFrame(
        {
            "device_id": device,
            "ts": t0 + np.arange(len(flags), dtype=np.int64) * 10_000,
            "score": np.where(above, peak, 0.5),
            "is_anomalous": above,
            "family": family,
            "contributors": [[Contributor("temp_c", "thermal", 0.9)] if a else [] for a in above],
            "threshold": THRESHOLD,
            "model_version_id": 1,
        }
    )


@pytest.fixture
def tracker(tmp_path):
    # the readings-counted quiet period (quiet_seconds off)
    settings = local_settings(
        tmp_path, alerts={"k": 2, "n": 3, "quiet_readings": 4, "quiet_seconds": None, "critical_ratio": 1.5}
    )
    store = open_store(settings)
    yield store, settings, AlertTracker(store, settings)
    store.close()


@pytest.mark.parametrize("step_ms", [1_000, 10_000])
def test_quiet_period_in_time_is_the_same_calm_at_any_sampling_rate(tmp_path, step_ms: int) -> None:
    """quiet_seconds = 60: readings over the threshold that come back within a minute
    keep one alert open; a quiet minute closes it, whether the device reports every
    second or every ten (SKAB at 1 Hz split one episode's tail into many alerts when
    the quiet period was 12 readings)."""
    settings = local_settings(tmp_path, alerts={"k": 2, "n": 3, "quiet_seconds": 60.0})
    store = open_store(settings)
    try:
        t = AlertTracker(store, settings)
        per_minute = 60_000 // step_ms
        back_within = "11" + "0" * (per_minute - 2) + "11"  # returns before a quiet minute
        flags = back_within + "0" * (per_minute + 1) + "11"  # then a quiet minute, then again
        frame = scored(flags)
        frame["ts"] = np.arange(len(flags), dtype=np.int64) * step_ms
        for lo in range(0, len(frame), 7):  # in ticks: state carries over
            t.update("industrial", frame.iloc[lo : lo + 7])
        alerts = stored(store)
        assert len(alerts) == 2
        assert alerts[0].status == "closed" and alerts[0].closed_ts - alerts[0].last_ts == 60_000
    finally:
        store.close()


def stored(store) -> list[Alert]:
    with store.session() as session:
        return list(session.exec(select(Alert).order_by(Alert.id)))


@pytest.mark.parametrize(
    ("flags", "opened"),
    [
        ("0100100100", 0),  # never 2 of any 3
        ("0110000000", 1),
        ("1010000000", 1),  # 2 of 3 with a gap
        ("1000100010", 0),
        ("1100000011", 2),  # closed after 4 quiet readings, then reopened
        ("1101010101", 1),  # keeps coming back inside the quiet period: one alert
    ],
)
def test_k_of_n_and_quiet_period(tracker, flags: str, opened: int) -> None:
    store, _, t = tracker
    changes = t.update("industrial", scored(flags))
    assert len(stored(store)) == opened == len(changes.opened)


def test_open_update_close_across_calls(tracker) -> None:
    store, settings, t = tracker
    first = t.update("industrial", scored("0011", peak=1.2))
    assert len(first.opened) == 1 and first.opened[0].severity == "warning"
    second = t.update("industrial", scored("1", t0=40_000, peak=3.0))
    assert not second.opened and len(second.updated) == 1
    alert = stored(store)[0]
    assert alert.status == "open" and alert.severity == "critical" and alert.peak_score == 3.0
    assert alert.last_ts == 40_000 and "temp_c" in alert.contributors
    third = t.update("industrial", scored("0000", t0=50_000))
    assert len(third.closed) == 1
    alert = stored(store)[0]
    assert alert.status == "closed" and alert.closed_ts == 40_000 + 4 * 10_000
    # a new tracker (another process) picks open alerts up from the database
    t.update("industrial", scored("11", t0=100_000))
    fresh = AlertTracker(store, settings)
    assert len(fresh.open_alerts("industrial")) == 1
    assert not fresh.update("industrial", scored("11", t0=120_000)).opened


def test_one_open_incident_per_device_listing_every_family(tracker) -> None:
    """A second family on the same device joins its incident (one fault, one incident)."""
    store, _, t = tracker
    t.update("industrial", scored("1111111111"))
    events = scored("111", family="events", t0=100_000)
    events["contributors"] = [[Contributor("(events)", "events", 0.7), Contributor("rpm", "mechanical", 0.3)]] * 3
    changes = t.update("industrial", events)
    assert not changes.opened and len(changes.updated) == 1
    t.update("industrial", scored("111", device="pump-002", t0=0))
    alerts = stored(store)
    keys = [(a.device_id, a.family) for a in alerts if a.status == "open"]
    assert sorted(keys) == [("pump-001", "thermal"), ("pump-002", "thermal")]
    [incident] = [a for a in alerts if a.device_id == "pump-001"]
    shares = {c["signal"]: (c["family"], c["share"]) for c in json.loads(incident.contributors)}
    assert set(shares) == {"temp_c", "(events)", "rpm"}
    assert {f for f, _ in shares.values()} == {"thermal", "events", "mechanical"}
    assert abs(sum(v for _, v in shares.values()) - 1.0) < 1e-3
    assert shares["temp_c"][1] > shares["(events)"][1] > shares["rpm"][1]


def test_an_incident_escalates_and_de_escalates_within_itself(tracker) -> None:
    store, _, t = tracker
    t.update("industrial", scored("11", peak=1.2))
    assert stored(store)[0].severity == "warning"
    t.update("industrial", scored("1", t0=20_000, peak=2.0))
    assert stored(store)[0].severity == "critical"
    t.update("industrial", scored("111", t0=30_000, peak=1.1))  # the last n = 3 are mild again
    [incident] = stored(store)
    assert incident.severity == "warning" and incident.peak_score == 2.0 and incident.status == "open"


def test_the_quiet_period_is_simulated_time(tmp_path) -> None:
    settings = local_settings(tmp_path, alerts={"k": 2, "n": 3, "quiet_readings": 100, "quiet_seconds": 30})
    store = open_store(settings)
    try:
        t = AlertTracker(store, settings)
        assert t.quiet_ms == 30_000
        changes = t.update("industrial", scored("11000000"))
        [alert] = changes.closed
        assert alert.closed_ts == 10_000 + 30_000  # last over-threshold reading + quiet_seconds
    finally:
        store.close()


def test_several_open_alerts_of_one_device_from_an_older_database_become_one(tracker) -> None:
    store, settings, _ = tracker
    with store.session() as session:
        for family, last in (("thermal", 50_000), ("events", 40_000)):
            session.add(
                Alert(
                    profile="industrial",
                    device_id="pump-001",
                    family=family,
                    opened_ts=0,
                    last_ts=last,
                    peak_score=2.0,
                    threshold=1.0,
                )
            )
        session.commit()
    t = AlertTracker(store, settings)
    assert [a.family for a in t.open_alerts()] == ["thermal"]
    t.update("industrial", scored("0", t0=60_000))
    assert [(a.family, a.status) for a in stored(store)] == [("thermal", "open"), ("events", "closed")]


def test_streaming_equals_batch(tmp_path) -> None:
    flags = "0110000001101111000000001100000110"
    settings = local_settings(tmp_path)
    whole = open_store(settings)
    AlertTracker(whole, settings).update("industrial", scored(flags))
    settings2 = local_settings(tmp_path / "b")
    ticks = open_store(settings2)
    tracker = AlertTracker(ticks, settings2)
    for i in range(0, len(flags), 5):
        tracker.update("industrial", scored(flags[i : i + 5], t0=i * 10_000))
    key = lambda a: (a.opened_ts, a.closed_ts, a.status, a.family)  # noqa: E731
    assert [key(a) for a in stored(whole)] == [key(a) for a in stored(ticks)]
    whole.close()
    ticks.close()


def test_acknowledge_is_stored(tracker) -> None:
    store, _, t = tracker
    alert = t.update("industrial", scored("11")).opened[0]
    acknowledged = acknowledge_alert(store, alert.id)
    assert acknowledged.acknowledged and acknowledged.acknowledged_at is not None
    assert stored(store)[0].acknowledged
    with pytest.raises(AlertError, match="does not exist"):
        acknowledge_alert(store, 9999)


def test_acknowledgement_survives_later_updates_and_closing(tracker) -> None:
    """The tracker writes back only what it owns: an operator's acknowledgement stays."""
    store, _, t = tracker
    alert = t.update("industrial", scored("11")).opened[0]
    acknowledge_alert(store, alert.id)
    t.update("industrial", scored("111", t0=20_000, peak=3.0))  # still open, peak and severity rise
    [row] = stored(store)
    assert row.acknowledged and row.peak_score == 3.0 and row.severity == "critical"
    t.update("industrial", scored("00000", t0=50_000))  # quiet period: closes
    [row] = stored(store)
    assert row.status == "closed" and row.acknowledged


def test_injected_overheat_alerts_that_device_only(tmp_path) -> None:
    # a day of history, as the engine's bootstrap (bootstrap_hours = 24): per-device
    # thresholds are calibrated on each device's own known-good scores, and a few hours
    # of them do not yet show a device's daily cycle and state changes
    settings = local_settings(tmp_path)
    store = open_store(settings)
    try:
        sim = quiet_fleet(settings, devices=5)
        history = simulate(sim, 0, 24)
        store.insert_readings("industrial", history)
        model = train_model(store, settings, "industrial")
        sim.schedule(FaultEvent("pump-003", "overheat_drift", START + timedelta(hours=24, minutes=20), 3600.0))
        scorer = StreamingScorer(settings, "industrial", model)
        scorer.warm_up(history)
        tracker = AlertTracker(store, settings)
        for minute in range(0, 120, 10):  # ticks of ten minutes
            t0 = 24 + minute / 60
            tracker.update("industrial", scorer.score(simulate(sim, t0, t0 + 1 / 6)))
        alerts = stored(store)
        assert alerts, "the overheat raised no alert"
        assert {a.device_id for a in alerts} == {"pump-003"}
        onset = int(pd.Timestamp(START + timedelta(hours=24, minutes=20)).value // 1_000_000)
        during = [a for a in alerts if onset <= a.opened_ts <= onset + 3_600_000]
        assert during and during[0].family == "thermal"
        assert "temp_c" in during[0].contributors
        assert all(a.family == "thermal" for a in during)
    finally:
        store.close()


def test_a_muted_device_opens_no_incident_until_the_mute_ends(tracker) -> None:
    from itap_engine.detection.alerts import mute_device, silences

    store, settings, t = tracker
    mute_device(store, "pump-001", 100_000, "noisy sensor")
    assert not t.update("industrial", scored("1111111111")).opened  # ts 0 .. 90 s: muted
    assert silences(store, settings, ["pump-001", "pump-002"], 50_000) == {"pump-001": (100_000, "muted: noisy sensor")}
    assert silences(store, settings, ["pump-001"], 100_000) == {}
    [incident] = t.update("industrial", scored("11", t0=100_000)).opened  # the mute ended
    assert incident.opened_ts == 100_000  # the first reading after the mute, k of n already met
    mute_device(store, "pump-002", 10**12)
    mute_device(store, "pump-002", None)  # lifted
    assert t.update("industrial", scored("11", device="pump-002")).opened


def test_a_maintenance_window_from_the_console_opens_no_incident_and_reads_as_maintenance(tracker) -> None:
    from itap_engine.detection.alerts import mute_device, silences

    store, settings, t = tracker
    mute_device(store, "pump-001", 100_000, "maintenance: bearing swap", 0)  # what M stores
    assert not t.update("industrial", scored("1111111111")).opened
    assert silences(store, settings, ["pump-001"], 50_000) == {"pump-001": (100_000, "maintenance: bearing swap")}


def test_a_maintenance_window_from_config_opens_no_incident(tmp_path) -> None:
    from itap_engine.detection.alerts import silences

    start = pd.Timestamp(START)
    window = {
        "device": "pump-00*",
        "start": start.isoformat(),
        "end": (start + pd.Timedelta(minutes=1)).isoformat(),
        "reason": "bearing swap",
    }
    settings = local_settings(tmp_path, alerts={"k": 2, "n": 3, "quiet_readings": 4, "maintenance": [window]})
    store = open_store(settings)
    try:
        t0 = int(start.value // 1_000_000)
        t = AlertTracker(store, settings)
        assert not t.update("industrial", scored("111111", t0=t0)).opened  # inside the window
        assert t.update("industrial", scored("11", device="ext-1", t0=t0)).opened  # not matched
        assert t.update("industrial", scored("11", t0=t0 + 60_000)).opened  # after it
        assert silences(store, settings, ["pump-001", "ext-1"], t0) == {
            "pump-001": (t0 + 60_000, "maintenance: bearing swap")
        }
    finally:
        store.close()


def test_an_acknowledgement_can_be_undone(tracker) -> None:
    store, _, t = tracker
    [alert] = t.update("industrial", scored("11")).opened
    acknowledge_alert(store, alert.id)
    undone = acknowledge_alert(store, alert.id, acknowledged=False)
    assert not undone.acknowledged and undone.acknowledged_at is None


def test_a_short_note_on_an_incident_reaches_the_snapshot_rows(tracker) -> None:
    from itap_engine.store.queries import open_and_recent_alerts, set_note

    store, _, t = tracker
    [alert] = t.update("industrial", scored("11")).opened
    set_note(store, alert.id, "  crew   on site\n" + "x" * 300)
    [row], _ = open_and_recent_alerts(store)
    assert row.note.startswith("crew on site x") and len(row.note) == 200
    set_note(store, alert.id, "")
    [row], _ = open_and_recent_alerts(store)
    assert row.note == ""
    with pytest.raises(Exception, match="does not exist"):
        set_note(store, 999, "x")


def test_a_mute_is_not_shown_before_it_was_set(tracker) -> None:
    from itap_engine.detection.alerts import mute_device, silences

    store, settings, _ = tracker
    mute_device(store, "pump-001", 200_000, "", from_ts=100_000)
    assert silences(store, settings, ["pump-001"], 50_000) == {}
    assert silences(store, settings, ["pump-001"], 150_000) == {"pump-001": (200_000, "muted")}
