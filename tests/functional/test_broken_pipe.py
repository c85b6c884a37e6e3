"""``itap --once | head -1`` and friends: a reader that goes away early costs neither
the exit status (cron and Nagios read it) nor a line of noise on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _sites import env_of, itap, site_fixtures

from itap_engine.config import load_settings
from itap_engine.store import schema as models
from itap_engine.store.sql import Store

pytestmark = pytest.mark.slow


template, site = site_fixtures("pipe")


def closed_pipe(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``itap ARGS`` with a stdout whose reader has already gone (``| true``)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "itap_tui.cli", *args],
        env=env_of(folder),
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    process.stdout.close()  # long before the child has written anything
    _, err = process.communicate(timeout=180)
    return subprocess.CompletedProcess(process.args, process.returncode, "", err)


def test_a_closed_pipe_keeps_the_critical_status_and_says_nothing(site: Path) -> None:
    store = Store(load_settings(site / "config.toml"))
    with store.session() as session:
        session.add(models.FaultCommand(device_id="pump-002", fault="overheat_drift", severity=4.0, duration_s=600))
        session.commit()
    store.close()
    result = closed_pipe(site, "--once")
    assert (result.returncode, result.stderr) == (2, ""), result.stderr
    # the run happened: the incident it reported is stored
    listed = itap(site, "anomalies", "--json")
    assert [i["device_id"] for i in json.loads(listed.stdout)["items"]] == ["pump-002"]
    for command in (["status"], ["anomalies"], ["anomalies", "--json"], ["--once", "--json"]):
        result = closed_pipe(site, *command)
        # a later cycle may find the incident de-escalated: the status is the one the run recorded
        expected = once_status(site) if "--once" in command else 0
        assert (result.returncode, result.stderr) == (expected, ""), (command, result.stderr)


def once_status(folder: Path) -> int:
    """The exit status the newest ``--once`` run recorded with its message (``CRITICAL: ...``)."""
    store = Store(load_settings(folder / "config.toml"))
    try:
        run = next(r for r in store.iter_runs(50) if r.kind == "once")
    finally:
        store.close()
    return {"OK": 0, "WARNING": 1, "CRITICAL": 2}[run.message.split(":", 1)[0]]
