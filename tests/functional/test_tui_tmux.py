"""The console in a real terminal: ``itap`` under tmux, driven by keys.

Bootstraps an empty database from a small config in ``tmp_path``, waits for the fleet
table, injects a fault through the dialog, sees the alert on the anomalies screen,
drills down to the device, takes the incident through its life (acknowledge, undo, a
note, mute the device), looks at the events view, goes back in time and returns to
live, and quits; asserts on ``tmux capture-pane -p`` text and on
a clean exit code.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

TMUX = shutil.which("tmux") or "/usr/bin/tmux"
REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(TMUX).exists(), reason="tmux is not installed"),
]


def small_config(folder: Path) -> Path:
    from itap_bench.engine import derived_config
    from itap_engine.config import load_settings

    return derived_config(
        load_settings(REPO / "config.toml"),
        folder,
        fleet=[
            {"profile": "industrial", "devices": 3, "prefix": "pump", "sites": ["north"]},
            {"profile": "aircraft", "devices": 1, "prefix": "ac", "sites": ["fleet-a"]},
        ],
        simulation={"fault_rate_per_device_day": 0.0, "state_dwell_s": 86400},
        detection={"bootstrap_hours": 1.5, "detector": "robust_z"},
        engine={"tick_seconds": 0.5, "sim_speed": 60.0, "retrain_minutes": 600, "housekeeping_minutes": 600},
    )


class Terminal:
    def __init__(self, session: str, log_file: Path | None = None) -> None:
        self.session = session
        self.history: list[str] = []
        self.log_file = log_file

    def keys(self, *keys: str, pause: float = 0.25) -> None:
        """One key at a time, as a person types (a burst can merge keys)."""
        for key in keys:
            subprocess.run([TMUX, "send-keys", "-t", self.session, key], check=True)
            time.sleep(pause)

    def screen(self) -> str:
        result = subprocess.run(
            [TMUX, "capture-pane", "-p", "-t", self.session], check=False, capture_output=True, text=True
        )
        return result.stdout

    def wait(self, condition: Callable[[str], bool], timeout: float = 60.0, what: str = "") -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if condition(text):
                self.history.append(text)
                return text
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; screen was:\n{text}{self.logged_errors()}")

    def logged_errors(self) -> str:
        """The console's ERROR lines (a failed worker's toast may have gone by the capture)."""
        if self.log_file is None or not self.log_file.exists():
            return ""
        errors = [line for line in self.log_file.read_text(errors="replace").splitlines() if " ERROR " in line]
        return "\nlogged errors:\n" + "\n".join(errors[-20:]) if errors else ""


@pytest.fixture
def terminal(tmp_path: Path):  # type: ignore[no-untyped-def]
    config = small_config(tmp_path / "site")
    session = f"itap-test-{uuid.uuid4().hex[:8]}"
    exit_file = tmp_path / "exit-code"
    command = (
        f"cd {shlex.quote(str(tmp_path))} && {shlex.quote(sys.executable)} -m itap_tui.cli "
        f"--config {shlex.quote(str(config))}; echo $? > {shlex.quote(str(exit_file))}; sleep 60"
    )
    subprocess.run(
        [TMUX, "new-session", "-d", "-s", session, "-x", "130", "-y", "40", command],
        check=True,
        env={**__import__("os").environ, "TERM": "xterm-256color"},
    )
    term = Terminal(session, log_file=config.parent / "itap.log")
    term.exit_file = exit_file  # type: ignore[attr-defined]
    try:
        yield term
    finally:
        subprocess.run([TMUX, "kill-session", "-t", session], check=False, capture_output=True)


def test_itap_in_tmux(terminal: Terminal) -> None:
    # bootstrap progress, then the fleet table
    terminal.wait(lambda s: "Device" in s and "pump-002" in s and "LIVE" in s, timeout=180, what="the fleet table")
    terminal.keys("s", "s")  # sort by device: ac-001, pump-001, pump-002, pump-003
    screen = terminal.wait(lambda s: "sort: device" in s, what="sort by device")
    terminal.keys("Down", "Down")
    # inject power_spike on pump-002 from the dialog
    terminal.keys("f")
    screen = terminal.wait(lambda s: "Inject a fault" in s, what="the fault dialog")
    assert "pump-002" in screen and "power_spike" in screen
    terminal.keys("Down", "Down", "Enter", "3", "Tab", "10m", "Enter")
    screen = terminal.wait(lambda s: "power_spike" in s and "ACTIVE" in s, timeout=60, what="the fault becoming active")
    assert "Inject a fault" not in screen
    # the alert on the anomalies screen
    terminal.keys("2")
    terminal.keys("/", *"pump-002", "Enter")
    screen = terminal.wait(
        lambda s: any("pump-002" in line and ("CRIT" in line or "WARN" in line) for line in s.splitlines()),
        timeout=120,
        what="an alert for pump-002",
    )
    terminal.keys("s")  # severity first: alerts above readings
    terminal.keys("Enter")
    screen = terminal.wait(lambda s: "Why (contributors)" in s and "pump-002" in s, what="the device screen")
    terminal.wait(lambda s: "1. " in s, timeout=30, what="the contributors of the alert")
    # the incident's life: acknowledge, undo, a note, mute the device, the events
    terminal.keys("a")
    # (notifications wrap: wait on single words)
    terminal.wait(lambda s: "undoes" in s, what="the acknowledgement")
    terminal.keys("Escape")
    terminal.wait(lambda s: "incidents:" in s and "Top signals" in s, what="back to the anomalies")
    terminal.keys("u")
    terminal.wait(lambda s: "again" in s, what="the acknowledgement undone")
    terminal.keys("N")
    terminal.wait(lambda s: "clears" in s, what="the note prompt")
    terminal.keys(*"crew on site", "Enter")
    terminal.wait(lambda s: "saved" in s, what="the note on the incident")
    terminal.keys("m")
    terminal.wait(lambda s: "Mute" in s and "lifts" in s, what="the mute prompt")
    terminal.keys("C-u", *"30m", "Enter")
    # the toast that says "until" can be gone before a loaded machine captures it: wait
    # for the prompt to close (the fleet shows the mute below)
    terminal.wait(lambda s: "lifts" not in s, what="the mute prompt closed")
    terminal.keys("l")
    screen = terminal.wait(lambda s: "events, newest first" in s and "opened" in s, what="the events view")
    assert "fault power_spike" in screen or "incident #" in screen
    terminal.keys("Escape", "Escape")
    terminal.wait(lambda s: "Key signals" in s, what="back to the fleet")
    terminal.wait(
        lambda s: any("pump-002" in line and "muted" in line for line in s.splitlines()), what="pump-002 muted"
    )
    # time travel: the fleet before the fault, then live again
    terminal.keys("t")
    terminal.wait(lambda s: "Show the fleet at" in s, what="the time prompt")
    terminal.keys("C-u", *"-20m")
    # the prompt shows what was typed before it is sent (under load, a screen can lag
    # the keys; the failure then names this step rather than a missing past)
    terminal.wait(lambda s: "-20m" in s, what="the typed time in the prompt")
    terminal.keys("Enter")
    screen = terminal.wait(lambda s: "PAST" in s and "not live" in s, what="the past")
    assert "LIVE" not in screen.splitlines()[0]
    terminal.keys("t")
    terminal.wait(lambda s: "LIVE" in s.splitlines()[0] if s.strip() else False, what="live again")
    terminal.keys("q")
    deadline = time.monotonic() + 60
    exit_file: Path = terminal.exit_file  # type: ignore[attr-defined]
    while not exit_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert exit_file.exists(), terminal.screen()
    assert exit_file.read_text().strip() == "0"
    assert "Traceback" not in terminal.screen()
