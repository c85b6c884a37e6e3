"""A small bootstrapped site (3 pumps, no random faults) for the tests of replay,
scenarios, cron runs, the broken pipe and the HTML report; built once per module and
copied for each test (:func:`site_fixtures`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from itap_bench.engine import derived_config
from itap_engine.config import load_settings
from itap_engine.engine.core import EngineCore

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


def bootstrapped(folder: Path, **sections: dict) -> Path:
    """``folder`` with a small site's config (:func:`small_config`), history and models."""
    core = EngineCore(load_settings(small_config(folder, **sections)))
    core.bootstrap()
    core.close()
    return folder


def site_fixtures(
    name: str, files: Mapping[str, str] | None = None, **sections: dict
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The fixtures ``template`` (a site bootstrapped once per module) and ``site`` (a copy
    of it for one test, with ``files`` written into it); ``sections`` go to :func:`small_config`.

    In a test module: ``template, site = site_fixtures("once")``.
    """

    @pytest.fixture(scope="module")
    def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
        return bootstrapped(tmp_path_factory.mktemp(f"{name}-template"), **sections)

    @pytest.fixture
    def site(template: Path, tmp_path: Path) -> Path:
        target = tmp_path / "site"
        shutil.copytree(template, target)
        for file, text in (files or {}).items():
            (target / file).write_text(text)
        return target

    return template, site


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
