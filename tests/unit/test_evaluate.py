"""Evaluation metrics on a hand-made example, end to end on a small scenario, and SKAB wiring."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _detection_helpers import CONFIG, load_settings

from itap_engine.evaluation.labelled import evaluate_labelled, expected_families, fault_events
from itap_engine.modes.cli import main

SKAB = Path(__file__).resolve().parents[3] / "shared" / "data" / "skab"


def hand_made() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    ts = np.arange(10, dtype=np.int64) * 10_000
    labels = pd.DataFrame(
        {
            "device_id": ["A"] * 10 + ["B"] * 10,
            "ts": np.r_[ts, ts],
            "fault": [None, None, None, "power_spike", "power_spike", "power_spike", None, None, None, None]
            + [None] * 10,
        }
    )
    scores = pd.DataFrame(
        {
            "score": [0.1, 0.2, 0.1, 0.9, 0.8, 0.3, 0.1, 0.1, 0.1, 0.1] + [0.1, 0.1, 0.6] + [0.1] * 7,
        }
    )
    alerts = pd.DataFrame({"device_id": ["A", "B"], "opened_ts": [40_000, 20_000], "family": ["electrical", "thermal"]})
    return labels, scores, alerts


def test_metrics_on_a_hand_made_example() -> None:
    labels, scores, alerts = hand_made()
    m = evaluate_labelled(
        labels,
        scores,
        alerts,
        threshold=0.5,
        step_ms=10_000,
        families={"power_spike": "electrical"},
        abrupt={"power_spike"},
    )
    p = m["points"]
    assert (p["precision"], p["recall"], p["f1"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert p["roc_auc"] == pytest.approx(50 / 51)
    ev = m["events"]["power_spike"]
    assert (ev["events"], ev["caught"], ev["recall"]) == (1, 1, 1.0)
    assert ev["ttd_readings_median"] == 1.0 and ev["ttd_seconds_median"] == 10.0 and ev["abrupt"]
    fa = m["false_alerts"]
    assert (fa["alerts"], fa["false_alerts"]) == (2, 1)
    assert fa["per_device_day"] == pytest.approx(1 / (20 * 10_000 / 86_400_000))
    assert m["top_family"]["share"] == 1.0
    assert m["per_fault"]["power_spike"]["point_recall"] == pytest.approx(2 / 3)


def test_events_are_runs_and_cut_off_events_are_not_judged() -> None:
    labels = pd.DataFrame(
        {
            "device_id": ["A"] * 6 + ["B"] * 3,
            "ts": [0, 1, 2, 3, 4, 5, 0, 1, 2],
            "fault": ["x", "x", "y", None, "x", None, None, "x", "x"],
        }
    )
    events = fault_events(labels)
    assert events[["device_id", "fault", "start_ts", "end_ts", "readings"]].values.tolist() == [
        ["A", "x", 0, 1, 2],
        ["A", "y", 2, 2, 1],
        ["A", "x", 4, 4, 1],
        ["B", "x", 1, 2, 2],
    ]
    scores = pd.DataFrame({"score": np.zeros(9)})
    m = evaluate_labelled(
        labels, scores, pd.DataFrame(columns=["device_id", "opened_ts", "family"]), threshold=1.0, step_ms=1
    )
    assert m["events"]["x"]["events"] == 2 and m["events"]["x"]["cut_off"] == 1  # B's runs to the end


def test_expected_families(tmp_path) -> None:
    spec = load_settings(CONFIG).profile("industrial")
    assert expected_families(spec) == {
        "overheat_drift": "thermal",
        "bearing_wear": "mechanical",
        "power_spike": "electrical",
    }


def _config(tmp_path: Path) -> Path:
    text = CONFIG.read_text(encoding="utf-8").replace('detector = "iforest"', 'detector = "robust_z"')
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_end_to_end_small_scenario(tmp_path, capsys) -> None:
    config = _config(tmp_path)
    code = main(
        [
            "evaluate",
            "--config",
            str(config),
            "--simulate",
            "--devices",
            "8",
            "--hours",
            "12",
            "--train-hours",
            "12",
            "--fault-rate",
            "4",
            "--seed",
            "3",
            "--json",
        ]
    )
    assert code == 0
    metrics = json.loads((tmp_path / "artifacts" / "metrics.json").read_text())
    assert json.loads(capsys.readouterr().out)["points"] == metrics["points"]
    assert metrics["points"]["roc_auc"] > 0.85
    assert metrics["false_alerts"]["per_device_day"] <= 2.0
    for fault in ("power_spike", "sensor_dropout"):
        ev = metrics["events"].get(fault)
        if ev and ev["events"]:
            assert ev["recall"] >= 0.75
            assert ev["ttd_readings_median"] <= 3
    assert metrics["top_family"]["share"] is None or metrics["top_family"]["share"] >= 0.7
    # 8 devices x 12 h: the support is stated, and it is too small to be quiet about
    support = metrics["support"]
    assert support["device_days"] == pytest.approx(4.0, rel=0.01) and support["events"] >= 1
    assert any("events" in w for w in support["warnings"])


@pytest.mark.skipif(not (SKAB / "valve1").is_dir(), reason="SKAB dev set not available")
def test_skab_runs_the_engine_path_in_a_scratch_store(tmp_path, capsys, monkeypatch) -> None:
    """--skab imports, trains and streams through the engine's own path, in a scratch
    store: whatever ITAP_DB_URL says, the operator's database is never touched."""
    data = tmp_path / "skab" / "valve1"
    data.mkdir(parents=True)
    for name in ("0.csv", "1.csv"):
        shutil.copy(SKAB / "valve1" / name, data / name)
    operator_db = tmp_path / "operator.db"
    monkeypatch.setenv("ITAP_DB_URL", f"sqlite:///{operator_db}")
    predictions = tmp_path / "pred.csv"
    code = main(
        [
            "evaluate",
            "--config",
            str(_config(tmp_path)),
            "--skab",
            str(tmp_path / "skab"),
            "--predictions",
            str(predictions),
            "--json",
        ]
    )
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["files"] == 2 and 0 <= payload["f1"] <= 1 and 0 <= payload["far"] <= 100
    assert payload["source"] == "skab" and payload["profile"] == "skab_pump"
    assert payload["support"]["events"] == 2 and payload["support"]["warnings"]  # 2 episodes: too few, said so
    assert {"precision", "recall", "f1", "false_alerts_per_device_day"} <= set(payload["alerts"])
    assert set(payload["baselines"]) == {"t2", "isolation_forest"}
    pred = pd.read_csv(predictions)
    assert list(pred.columns) == ["file", "datetime", "prediction"]
    assert set(pred["file"]) == {"valve1/0.csv", "valve1/1.csv"}
    assert len(pred) == payload["points"]["rows"]
    assert not operator_db.exists()  # never the operator's database
    assert main(["evaluate", "--config", str(_config(tmp_path)), "--skab", str(tmp_path / "nope")]) == 2


def test_evaluate_without_labels_says_so_and_exits_2(tmp_path, capsys, monkeypatch) -> None:
    """A database without labelled readings is not silently swapped for a simulation."""
    monkeypatch.setenv("ITAP_DB_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    code = main(["evaluate", "--config", str(_config(tmp_path))])
    assert code == 2
    err = capsys.readouterr().err
    assert "no labelled readings" in err and "--simulate" in err


def test_simulated_evaluation_never_touches_the_operators_database(tmp_path, monkeypatch, capsys) -> None:
    """ITAP_DB_URL names the operator's database: evaluate --simulate must still work in
    its own scratch store (it used to train there, deactivating the operator's model)."""
    from _detection_helpers import local_settings, quiet_fleet, simulate
    from sqlmodel import select

    from itap_engine.detection.scoring import train_model
    from itap_engine.store.schema import ModelVersion
    from itap_engine.store.sql import Store

    operator = tmp_path / "operator.db"
    settings = local_settings(tmp_path)
    store = Store(settings, url=f"sqlite:///{operator}")
    try:
        store.insert_readings("industrial", simulate(quiet_fleet(settings, devices=2), 0, 2))
        mine = train_model(store, settings, "industrial")
        readings = store.count_readings("industrial")
    finally:
        store.close()
    monkeypatch.setenv("ITAP_DB_URL", f"sqlite:///{operator}")
    code = main(
        [
            "evaluate",
            "--config",
            str(_config(tmp_path)),
            "--simulate",
            "--devices",
            "2",
            "--hours",
            "1",
            "--train-hours",
            "2",
            "--json",
        ]
    )
    assert code == 0
    store = Store(settings, url=f"sqlite:///{operator}")
    try:
        with store.session() as session:
            versions = session.exec(select(ModelVersion)).all()
        assert [(v.id, v.active) for v in versions] == [(mine.version_id, True)]
        assert store.count_readings("industrial") == readings
    finally:
        store.close()


def test_a_fault_inside_an_open_incident_is_caught_when_its_readings_are_flagged() -> None:
    """One incident per device: a fault that follows another while the incident is still
    open is caught by it, if the detector flags the fault's readings before it closes."""
    ts = np.arange(12, dtype=np.int64) * 10_000
    faults = [None, "bearing_wear", "bearing_wear", "bearing_wear", "overheat_drift", "overheat_drift"] + [None] * 6
    labels = pd.DataFrame({"device_id": ["A"] * 12 + ["B"] * 12, "ts": np.r_[ts, ts], "fault": faults + faults})
    # A: flagged through both faults; B: flagged during the first one only
    a_scores = [0.1, 0.9, 0.9, 0.9, 0.9, 0.9] + [0.1] * 6
    b_scores = [0.1, 0.9, 0.9, 0.9, 0.1, 0.1] + [0.1] * 6
    scores = pd.DataFrame({"score": a_scores + b_scores})
    alerts = pd.DataFrame(
        {
            "device_id": ["A", "B"],
            "opened_ts": [20_000, 20_000],
            "closed_ts": [90_000, 90_000],
            "family": ["mechanical", "mechanical"],
        }
    )
    m = evaluate_labelled(labels, scores, alerts, threshold=0.5, step_ms=10_000)
    assert (m["events"]["overheat_drift"]["events"], m["events"]["overheat_drift"]["caught"]) == (2, 1)
    assert m["events"]["overheat_drift"]["ttd_readings_median"] == 0.0
    # an incident that closed before the fault began does not catch it
    closed_early = alerts.assign(closed_ts=[30_000, 30_000])
    m = evaluate_labelled(labels, scores, closed_early, threshold=0.5, step_ms=10_000)
    assert m["events"]["overheat_drift"]["caught"] == 0


def test_points_use_each_devices_own_threshold() -> None:
    """With per-device thresholds (the scorer's threshold column) a reading is flagged
    against its device's threshold, as the alerts are, not against the model's."""
    labels, scores, alerts = hand_made()
    # B's 0.6 is above the model's 0.5 but below B's own 0.7: not a false positive
    own = scores.assign(threshold=[0.5] * 10 + [0.7] * 10)
    m = evaluate_labelled(labels, own, alerts, threshold=0.5, step_ms=10_000)
    assert m["points"]["precision"] == pytest.approx(1.0)
    assert m["points"]["threshold"] == 0.5
