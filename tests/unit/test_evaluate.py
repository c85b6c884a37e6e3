"""Evaluation metrics on a hand-made example, end to end on a small scenario, and SKAB wiring."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from itap_engine.modes.cli import main
from itap_engine.evaluation.labelled import evaluate_labelled, expected_families, fault_events

from _detection_helpers import CONFIG, load_settings

SKAB = Path(__file__).resolve().parents[3] / "shared" / "data" / "skab"


def hand_made() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    ts = np.arange(10, dtype=np.int64) * 10_000
    labels = pd.DataFrame({
        "device_id": ["A"] * 10 + ["B"] * 10,
        "ts": np.r_[ts, ts],
        "fault": [None, None, None, "power_spike", "power_spike", "power_spike", None, None, None, None] + [None] * 10,
    })
    scores = pd.DataFrame({
        "score": [0.1, 0.2, 0.1, 0.9, 0.8, 0.3, 0.1, 0.1, 0.1, 0.1] + [0.1, 0.1, 0.6] + [0.1] * 7,
    })
    alerts = pd.DataFrame({"device_id": ["A", "B"], "opened_ts": [40_000, 20_000], "family": ["electrical", "thermal"]})
    return labels, scores, alerts


def test_metrics_on_a_hand_made_example() -> None:
    labels, scores, alerts = hand_made()
    m = evaluate_labelled(labels, scores, alerts, threshold=0.5, step_ms=10_000,
                          families={"power_spike": "electrical"}, abrupt={"power_spike"})
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
    labels = pd.DataFrame({
        "device_id": ["A"] * 6 + ["B"] * 3,
        "ts": [0, 1, 2, 3, 4, 5, 0, 1, 2],
        "fault": ["x", "x", "y", None, "x", None, None, "x", "x"],
    })
    events = fault_events(labels)
    assert events[["device_id", "fault", "start_ts", "end_ts", "readings"]].values.tolist() == [
        ["A", "x", 0, 1, 2], ["A", "y", 2, 2, 1], ["A", "x", 4, 4, 1], ["B", "x", 1, 2, 2]]
    scores = pd.DataFrame({"score": np.zeros(9)})
    m = evaluate_labelled(labels, scores, pd.DataFrame(columns=["device_id", "opened_ts", "family"]),
                          threshold=1.0, step_ms=1)
    assert m["events"]["x"]["events"] == 2 and m["events"]["x"]["cut_off"] == 1  # B's runs to the end


def test_expected_families(tmp_path) -> None:
    spec = load_settings(CONFIG).profile("industrial")
    assert expected_families(spec) == {
        "overheat_drift": "thermal", "bearing_wear": "mechanical", "power_spike": "electrical"}


def _config(tmp_path: Path) -> Path:
    text = CONFIG.read_text(encoding="utf-8").replace('detector = "iforest"', 'detector = "robust_z"')
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_end_to_end_small_scenario(tmp_path, capsys) -> None:
    config = _config(tmp_path)
    code = main(["evaluate", "--config", str(config), "--simulate", "--devices", "8", "--hours", "12",
                 "--train-hours", "12", "--fault-rate", "4", "--seed", "3", "--json"])
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


@pytest.mark.skipif(not (SKAB / "valve1").is_dir(), reason="SKAB dev set not available")
def test_skab_wiring(tmp_path, capsys) -> None:
    data = tmp_path / "skab"
    data.mkdir()
    for name in ("0.csv", "1.csv"):
        shutil.copy(SKAB / "valve1" / name, data / name)
    predictions = tmp_path / "pred.csv"
    code = main(["evaluate", "--config", str(_config(tmp_path)), "--skab", str(data), "--predictions",
                 str(predictions), "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["files"] == 2 and 0 <= payload["f1"] <= 1 and 0 <= payload["far"] <= 100
    assert set(pd.read_csv(predictions).columns) == {"file", "datetime", "predicted"}
    assert main(["evaluate", "--config", str(_config(tmp_path)), "--skab", str(tmp_path / "nope")]) == 2
