"""``itap --once`` in real subprocesses on real SQLite files: exit codes, JSON, lock, report."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import _sites as sites
import psutil
import pytest

from itap_bench.engine import derived_config
from itap_engine.config import load_settings
from itap_engine.store import schema as models
from itap_engine.store.sql import Store

REPO = Path(__file__).resolve().parents[2]
TOP_KEYS = {
    "schema",
    "status",
    "exit_code",
    "message",
    "error",
    "run_id",
    "started_at",
    "finished_at",
    "bootstrapped",
    "interval",
    "rows",
    "sources",
    "scored",
    "validation_alerts",
    "alerts",
    "models",
    "timings_s",
}

pytestmark = pytest.mark.slow


ENGINE = {"tick_seconds": 10.0, "sim_speed": 60.0}
"""One run covers (wall seconds since the last run) x sim_speed: a slow machine must not
stretch a run past the six hours the model knows (false alarms, CRITICAL)."""


def small_config(folder: Path) -> Path:
    """The small site (3 pumps, no random faults, 6 h bootstrap); a run covers at least
    10 simulated minutes.

    States last a day: six hours of history cannot show the model every state change.
    The robust-z detector flags an overheat promptly on so short a history.
    """
    return sites.small_config(folder, engine=ENGINE)


def once(folder: Path, *args: str, wait: bool = True) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    env = sites.env_of(folder)
    command = [sys.executable, "-m", "itap_tui.cli", "--once", *args]
    if not wait:
        return subprocess.Popen(command, env=env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=env, cwd=folder, capture_output=True, text=True, timeout=120, check=False)


def lease(folder: Path) -> tuple | None:
    """The run lock's lease row in the folder's database, if any."""
    try:
        with sqlite3.connect(folder / "itap.db") as conn:
            return conn.execute("SELECT holder, purpose FROM run_lease").fetchone()
    except sqlite3.OperationalError:  # no database or no lease table yet
        return None


template, site = sites.site_fixtures("once", engine=ENGINE)


def test_first_run_bootstraps_holds_the_lock_and_a_second_run_is_incremental(tmp_path: Path) -> None:
    folder = tmp_path / "fresh"
    small_config(folder)
    first = once(folder, "--json", wait=False)
    deadline = time.monotonic() + 30
    while lease(folder) is None:  # the run lock lives in the database
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    second = once(folder, "--json")  # while the first bootstraps
    # it did not wait for the lock: the first run still holds it
    assert second.returncode == 3 and first.poll() is None
    assert len(second.stderr.strip().splitlines()) == 1 and "holds" in second.stderr
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    summary = json.loads(out)
    assert set(summary) == TOP_KEYS
    assert summary["schema"] == "itap.once/1" and summary["status"] == "OK" and summary["exit_code"] == 0
    assert summary["bootstrapped"] is True and summary["models"]["industrial"] >= 1
    assert summary["rows"] == {
        "in": 180,
        "inserted": 180,
        "duplicates": 0,
        "conflicts": 0,
        "quarantined": 0,
    }  # 600 s, 3 pumps
    assert summary["scored"] == 180 and summary["alerts"]["open"] == []
    assert summary["interval"]["from"] == "2026-01-01T06:00:00" and summary["interval"]["simulated_seconds"] == 600
    assert {"bootstrap", "score", "total"} <= set(summary["timings_s"])
    assert lease(folder) is None and not (folder / "data" / "itap.lock").exists()

    time.sleep(1.2)
    again = once(folder, "--json")
    follow = json.loads(again.stdout)
    assert again.returncode == follow["exit_code"] != 3, again.stderr  # the detector's verdict is not the point here
    assert follow["bootstrapped"] is False and follow["run_id"] > summary["run_id"]
    assert follow["interval"]["from"] == summary["interval"]["to"]
    seconds = follow["interval"]["simulated_seconds"]
    assert 600 <= seconds <= 600 * 30
    assert follow["rows"]["duplicates"] == 0 and follow["rows"]["inserted"] == follow["rows"]["in"]
    assert abs(follow["rows"]["in"] - 3 * seconds / 10) <= 3
    store = Store(load_settings(folder / "config.toml"))
    try:
        assert store.count_readings("industrial") == 3 * 2160 + 180 + follow["rows"]["in"]
    finally:
        store.close()


def test_plain_text_summary_without_a_terminal(site: Path) -> None:
    result = once(site)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ITAP OK") and "\x1b[" not in result.stdout
    assert result.stderr == ""
    # Nagios perfdata after '|' on line 1: open incidents, rows, scored, seconds
    line = result.stdout.splitlines()[0]
    status, perf = line.split(" | ")
    assert "|" not in status
    assert re.fullmatch(r"open_incidents=0;;;0 rows=(\d+);;;0 scored=(\d+);;;0 seconds=[0-9.]+s;;;0", perf), perf


def test_profile_limits_the_runs_status_to_one_profile(site: Path) -> None:
    store = Store(load_settings(site / "config.toml"))
    with store.session() as session:
        session.add(models.FaultCommand(device_id="pump-002", fault="overheat_drift", severity=4.0, duration_s=600))
        session.commit()
    store.close()
    other = once(site, "--json", "--profile", "aircraft")  # the fleet here is all industrial
    summary = json.loads(other.stdout)
    assert other.returncode == 0 and summary["status"] == "OK", summary["message"]
    assert summary["alerts"]["open"] == [] and summary["scored"] == 0 and summary["rows"]["inserted"] == 0
    assert set(summary["models"]) <= {"aircraft"}
    store = Store(load_settings(site / "config.toml"))
    try:  # the cycle itself covered the whole fleet: the pump's alert is stored
        assert store.count(models.Alert, models.Alert.device_id == "pump-002") >= 1
    finally:
        store.close()
    unknown = once(site, "--profile", "nope")
    assert unknown.returncode == 3 and "unknown profile 'nope'" in unknown.stdout.splitlines()[0]


def test_validation_alerts_exit_1(site: Path) -> None:
    inbox = site / "inbox"
    inbox.mkdir()
    lines = ["device_id,ts,state,rpm,temp_c,vibration_g,current_a,voltage_v"]
    for i in range(40):
        temp = "999" if i % 4 == 0 else "68.0"  # a quarter out of range
        lines.append(f"ext-001,2026-01-01T00:{i:02d}:00,RUN,1480,{temp},0.35,42,400")
    (inbox / "batch.csv").write_text("\n".join(lines) + "\n")
    result = once(site, "--json")
    summary = json.loads(result.stdout)
    assert result.returncode == 1 and summary["status"] == "WARNING", summary["message"]
    assert summary["rows"]["quarantined"] == 10 and summary["validation_alerts"]
    assert any(s["source"] == "batch.csv" for s in summary["sources"])
    assert (inbox / "done" / "batch.csv").exists()


def test_a_corrected_redelivery_counts_conflicts(site: Path) -> None:
    inbox = site / "inbox"
    inbox.mkdir()
    header = "device_id,ts,state,rpm,temp_c,vibration_g,current_a,voltage_v"
    rows = [f"ext-002,2026-01-01T00:{i:02d}:00,RUN,1480,{{t}},0.35,42,400" for i in range(10)]
    (inbox / "a.csv").write_text("\n".join([header, *(r.format(t=68.0) for r in rows)]) + "\n")
    assert once(site, "--json").returncode in (0, 1)
    corrected = [r.format(t=71.5 if i in (2, 5) else 68.0) for i, r in enumerate(rows)]
    (inbox / "b.csv").write_text("\n".join([header, *corrected]) + "\n")
    result = once(site, "--json")
    summary = json.loads(result.stdout)
    rows_ = summary["rows"]
    assert rows_["conflicts"] == 2 and rows_["in"] == (
        rows_["inserted"] + rows_["duplicates"] + rows_["conflicts"] + rows_["quarantined"]
    )
    [source] = [s for s in summary["sources"] if s["source"] == "b.csv"]
    assert (source["rows_in"], source["duplicates"], source["conflicts"]) == (10, 8, 2)
    assert result.returncode == 1 and "conflict" in summary["message"], (result.returncode, summary["message"])


def test_a_critical_fault_exits_2_and_the_report_names_the_device(site: Path) -> None:
    store = Store(load_settings(site / "config.toml"))
    with store.session() as session:
        session.add(models.FaultCommand(device_id="pump-002", fault="overheat_drift", severity=4.0, duration_s=600))
        session.commit()
    store.close()
    report = site / "out" / "report.html"
    report.parent.mkdir()  # --report does not create folders (a missing one is UNKNOWN: test_cli_values)
    result = once(site, "--json", "--report", str(report))
    summary = json.loads(result.stdout)
    assert result.returncode == 2 and summary["status"] == "CRITICAL", (summary["message"], result.stderr)
    assert {a["device_id"] for a in summary["alerts"]["open"]} == {"pump-002"}
    alert = summary["alerts"]["open"][0]
    assert alert["severity"] == "critical" and alert["contributors"][0]["signal"] == "temp_c"
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>") and "CRITICAL" in page
    assert '<tr class="critical"><td>critical</td><td><b>pump-002</b>' in page
    assert "<script" not in page and "http" not in page.split("</style>", 1)[1]


def test_a_report_that_cannot_be_written_leaves_the_runs_status(site: Path) -> None:
    result = once(site, "--json", "--report", "/proc/itap-r.html")  # the folder exists; the write fails
    summary = json.loads(result.stdout)
    assert summary["status"] != "UNKNOWN" and result.returncode == summary["exit_code"]
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "cannot write the report" in result.stderr


def test_an_error_exits_3_with_one_line(site: Path) -> None:
    (site / "config.toml").write_text(
        (site / "config.toml")
        .read_text()
        .replace('url = "sqlite:///itap.db"', 'url = "sqlite:////proc/itap-nowhere/itap.db"')
    )
    result = once(site, "--json")
    assert result.returncode == 3
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("itap: ")
    summary = json.loads(result.stdout)
    assert summary["status"] == "UNKNOWN" and summary["error"]


def test_unknown_is_reported_on_stdout_in_the_runs_own_format(tmp_path: Path) -> None:
    """A monitoring plugin reads stdout: a run that cannot start still prints its status
    there (the JSON line with --json, the plain status line otherwise), plus one line
    on stderr."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    command = [sys.executable, "-m", "itap_tui.cli", "--config", str(tmp_path / "nope.toml"), "--once"]
    as_json = subprocess.run([*command, "--json"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert as_json.returncode == 3
    [line] = as_json.stdout.splitlines()  # one JSON object per line: cron appends JSON Lines
    summary = json.loads(line)
    assert summary["status"] == "UNKNOWN" and "nope.toml" in summary["error"] and set(summary) == TOP_KEYS
    assert len(as_json.stderr.strip().splitlines()) == 1 and "nope.toml" in as_json.stderr
    plain = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert plain.returncode == 3 and plain.stdout.startswith("ITAP UNKNOWN - ")
    assert "nope.toml" in plain.stdout.splitlines()[0]  # the reason is on the line a plugin reads


def test_a_stale_lock_is_taken_over_and_a_live_one_is_respected(site: Path) -> None:
    from itap_engine.store import run_lock as db_lock

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        created = psutil.Process(sleeper.pid).create_time()
        with sqlite3.connect(site / "itap.db") as conn:  # a lease row of a live process on this host
            conn.execute(db_lock._TABLE)
            conn.execute(
                f"INSERT INTO run_lease ({db_lock._COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    db_lock.LOCK_NAME,
                    "x",
                    socket.gethostname(),
                    sleeper.pid,
                    created,
                    "itap --once",
                    "2026-01-01T00:00:00+00:00",
                    time.time(),
                    time.time() + 60,
                ),
            )
        held = once(site)
        assert held.returncode == 3 and "holds" in held.stderr and f"pid {sleeper.pid}" in held.stderr
    finally:
        sleeper.kill()
        sleeper.wait()
    taken = once(site)  # the holder is gone: the lock is stale
    assert taken.returncode == 0, taken.stderr
    assert lease(site) is None
    assert os.path.exists(site / "itap.log")


# ---------------------------------------------------------------------- the contract: any failure is UNKNOWN (3)
def _assert_unknown(folder: Path, *args: str, needle: str) -> None:
    """Exit 3 with the reason: one JSON line with --json, one status line otherwise."""
    as_json = once(folder, "--json", *args)
    assert as_json.returncode == 3, as_json.stderr
    [line] = as_json.stdout.splitlines()
    summary = json.loads(line)
    assert summary["status"] == "UNKNOWN" and needle in summary["error"] and set(summary) == TOP_KEYS
    assert "Traceback" not in as_json.stderr and len(as_json.stderr.strip().splitlines()) == 1
    plain = once(folder, *args)
    assert plain.returncode == 3 and "Traceback" not in plain.stderr
    first = plain.stdout.splitlines()[0]
    assert first.startswith("ITAP UNKNOWN - ") and needle in first  # the status line names the reason


def test_a_binary_config_file_is_unknown_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    _assert_unknown(tmp_path, needle="not a text file")


def test_a_data_dir_that_is_a_file_is_unknown_not_a_traceback(tmp_path: Path) -> None:
    base = load_settings(REPO / "config.toml")
    derived_config(
        base,
        tmp_path,
        database={"url": "sqlite:///data/itap.db"},
        paths={"log_file": "data/itap.log", "inbox_dir": "data/inbox"},
    )
    (tmp_path / "data").write_text("not a folder")
    _assert_unknown(tmp_path, needle="is a file, not a folder")


def test_a_bad_option_with_once_is_unknown(tmp_path: Path) -> None:
    small_config(tmp_path)
    _assert_unknown(tmp_path, "--no-such-option", needle="--no-such-option")


def test_escape_sequences_from_an_inbox_file_never_reach_the_output(site: Path) -> None:
    """A file name, a CSV header and a device id carrying terminal escapes: --once text,
    JSON (strings too) and the HTML report show them as visible escapes."""
    import re

    raw = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200b-\u200d\ufeff]")
    inbox = site / "inbox"
    inbox.mkdir(exist_ok=True)
    lines = ["device_id,ts,rpm,temp_c,vibration_g,current_a,voltage_v,\x1b]0;pwned\x07"]
    lines += [f"pump-001,2026-01-01T05:00:{i * 10:02d},1500,60,0.2,10,400,x" for i in range(3)]
    lines.append("pump\x1b[31m-009,2026-01-01T05:01:00,1500,60,0.2,10,400,x")
    (inbox / "evil\x1b[2J.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = once(site, "--json", "--report", str(site / "report.html"))
    assert result.returncode in (0, 1, 2), result.stderr
    assert not raw.search(result.stdout + result.stderr)
    summary = json.loads(result.stdout)
    assert not raw.search(json.dumps(summary, ensure_ascii=False))  # decoded strings carry none either
    assert any("\\x1b[2J" in s["source"] for s in summary["sources"])
    page = (site / "report.html").read_text(encoding="utf-8")
    assert not raw.search(page)
    (inbox / "evil\x1b[2J-2.csv").write_text("\n".join(lines).replace("05:0", "05:3") + "\n", encoding="utf-8")
    plain = once(site)
    assert not raw.search(plain.stdout + plain.stderr), plain.stdout
