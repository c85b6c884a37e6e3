"""Shared helpers for the detection tests: small simulated stores in tmp_path."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from itap_engine.config import Settings, load_settings
from itap_engine.ingest.simulator import Simulator, device_ids_for
from itap_engine.store.sql import Store, to_epoch_ms

CONFIG = Path(__file__).resolve().parents[2] / "config.toml"
START = datetime(2026, 1, 1)


def local_settings(tmp_path: Path, **sections: dict) -> Settings:
    base = load_settings(CONFIG)
    # shift measured best on simulated and SKAB data together (benchmarks/RESULTS.md);
    # tests pin it whatever config.toml says
    sections.setdefault("detection", {"detector": "shift"})
    return base.with_overrides(
        database={"url": f"sqlite:///{tmp_path / 'itap.db'}"},
        paths={"artifacts_dir": str(tmp_path / "artifacts")},
        **sections,
    )


def simulate(sim: Simulator, hours_from: float, hours_to: float) -> pd.DataFrame:
    frame = sim.generate(START + timedelta(hours=hours_from), START + timedelta(hours=hours_to))
    frame["ts"] = to_epoch_ms(frame["ts"])
    return frame


def quiet_fleet(settings: Settings, devices: int = 4, fault_rate: float = 0.0) -> Simulator:
    return Simulator(settings, "industrial", device_ids_for("pump", devices), fault_rate_per_device_day=fault_rate)


def ms(hours: float) -> int:
    return int(to_epoch_ms([START + timedelta(hours=hours)])[0])


def open_store(settings: Settings) -> Store:
    return Store(settings)
