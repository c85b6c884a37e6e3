"""A small bootstrapped site (3 pumps, no random faults) for the tests of replay,
scenarios, the broken pipe and the HTML report; built once per module and copied."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from itap_bench.engine import derived_config
from itap_engine.config import load_settings

REPO = Path(__file__).resolve().parents[2]


def small_config(folder: Path, **sections: dict) -> Path:
    """3 pumps, no random faults, 6 h bootstrap, 10 simulated minutes per second."""
    base = load_settings(REPO / "config.toml")
    merged: dict[str, dict] = {
        "simulation": {"fault_rate_per_device_day": 0.0, "state_dwell_s": 86400},
        "detection": {"bootstrap_hours": 6.0, "detector": "robust_z"},
        "engine": {"tick_seconds": 1.0, "sim_speed": 600.0},
    }
    for key, values in sections.items():
        merged[key] = {**merged.get(key, {}), **values}
    return derived_config(
        base, folder, fleet=[{"profile": "industrial", "devices": 3, "prefix": "pump", "sites": ["north"]}], **merged
    )


def itap(folder: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``itap ARGS`` in a subprocess, in ``folder`` with its config, no terminal."""
    return subprocess.run(
        [sys.executable, "-m", "itap_tui.cli", *args],
        env=env_of(folder),
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def env_of(folder: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "ITAP_CONFIG": str(folder / "config.toml"), "HOME": str(folder)}
