"""Known-good windows: short ones train, per-device ones are kept and shown."""

from __future__ import annotations

import argparse

import pytest
from _detection_helpers import local_settings, ms, open_store, quiet_fleet, simulate

from itap_engine.detection.scoring import TrainingError, train_model
from itap_engine.modes.commands import train as train_command
from itap_engine.store.queries import device_detail


def test_training_works_on_400_readings_per_device(tmp_path) -> None:
    """SKAB-sized known-good windows (400 readings) train with the default config."""
    settings = local_settings(tmp_path)
    store = open_store(settings)
    try:
        sim = quiet_fleet(settings, devices=1)
        store.insert_readings("industrial", simulate(sim, 0, 400 * 10 / 3600))  # 400 readings at 10 s
        model = train_model(store, settings, "industrial")
        assert model.device_thresholds  # calibrated on the device's own known-good scores
    finally:
        store.close()


def test_below_the_minimum_the_message_names_the_setting(tmp_path) -> None:
    settings = local_settings(tmp_path)
    store = open_store(settings)
    try:
        sim = quiet_fleet(settings, devices=1)
        store.insert_readings("industrial", simulate(sim, 0, 100 * 10 / 3600))
        with pytest.raises(TrainingError, match=r"\[features\]\.long_window"):
            train_model(store, settings, "industrial")
    finally:
        store.close()


def test_train_cli_pairs_windows_with_the_device_before_them() -> None:
    parser = argparse.ArgumentParser()
    train_command.add_arguments(parser)
    args = parser.parse_args(
        [
            "--train-until",
            "2026-01-01T12:00",
            "--device",
            "pump-001",
            "--train-from",
            "2026-01-01T02:00",
            "--train-until",
            "2026-01-01T05:00",
            "--device",
            "pump-002",
            "--train-until",
            "2026-01-01T03:00",
        ]
    )
    assert args.train_until == "2026-01-01T12:00" and args.train_from is None
    assert args.device_windows == [
        {"device": "pump-001", "from": "2026-01-01T02:00", "until": "2026-01-01T05:00"},
        {"device": "pump-002", "from": None, "until": "2026-01-01T03:00"},
    ]


def test_a_devices_own_window_is_stored_kept_by_retrain_and_shown(tmp_path) -> None:
    settings = local_settings(tmp_path)
    store = open_store(settings)
    try:
        sim = quiet_fleet(settings, devices=3)
        store.insert_readings("industrial", simulate(sim, 0, 8))
        own = (ms(2), ms(5))
        model = train_model(store, settings, "industrial", train_until_ms=ms(6), device_windows={"pump-002": own})
        assert model.device_windows == {"pump-002": own}
        again = train_model(store, settings, "industrial", train_until_ms=ms(7))  # e.g. the hourly retrain
        assert again.device_windows == {"pump-002": own}
        mine = device_detail(store, settings, "pump-002")
        assert mine.known_good == own and mine.known_good_source == "device"
        other = device_detail(store, settings, "pump-001")
        assert other.known_good_source == "profile" and other.known_good[1] <= ms(7)
    finally:
        store.close()
