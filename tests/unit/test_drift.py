"""Slow drift: a half-magnitude overheat is still caught within its episode."""

from __future__ import annotations

from datetime import timedelta

from _detection_helpers import CONFIG, START, load_settings, local_settings, ms, open_store, quiet_fleet, simulate

from itap_engine.detection.alerts import AlertTracker, alerts_frame
from itap_engine.detection.scoring import StreamingScorer, train_model
from itap_engine.ingest.simulator import FaultEvent


def test_half_magnitude_overheat_drift_is_caught_within_its_episode(tmp_path) -> None:
    """With the configured detector (config.toml's [detection]), streamed in ticks."""
    detector = load_settings(CONFIG).detection.detector
    settings = local_settings(tmp_path, detection={"detector": detector})
    store = open_store(settings)
    try:
        sim = quiet_fleet(settings, devices=3)
        store.insert_readings("industrial", simulate(sim, 0, 24))  # a day: the daily cycle is learned
        model = train_model(store, settings, "industrial")
        start, hours = START + timedelta(hours=26), 2.0
        sim.schedule(FaultEvent("pump-001", "overheat_drift", start, hours * 3600, severity=0.5))
        history = store.read_readings("industrial")
        later = simulate(sim, 24, 29)
        scorer = StreamingScorer(settings, "industrial", model)
        scorer.warm_up(history)
        tracker = AlertTracker(store, settings)
        stamps = sorted(later["ts"].unique())
        for lo in range(0, len(stamps), 6):  # ticks of one minute
            tick = later[later["ts"].isin(stamps[lo : lo + 6])]
            tracker.update("industrial", scorer.score(tick))
        alerts = alerts_frame(store, "industrial")
    finally:
        store.close()
    t0, t1 = ms(26), ms(26 + hours)
    mine = alerts[alerts["device_id"] == "pump-001"]
    during = mine[(mine["opened_ts"] >= t0) & (mine["opened_ts"] <= t1)]
    assert len(during), alerts
    assert "thermal" in set(during["family"])
    # and it was not an alarm that rings anyway: the quiet devices stay (nearly) quiet
    others = alerts[alerts["device_id"] != "pump-001"]
    assert len(others) <= 1
