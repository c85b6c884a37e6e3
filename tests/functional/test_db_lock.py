"""One writer per database: the run lock lives in the database, not in a data folder.

Real processes on one SQLite file from two folders; on PostgreSQL when
``ITAP_TEST_PG_URL`` names a database (CI starts the server; these tests start nothing).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from itap_bench.engine import derived_config
from itap_engine.config import Settings, load_settings
from itap_engine.store import run_lock as db_lock
from itap_engine.store.run_lock import LockHeld, RunLock

REPO = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("ITAP_TEST_PG_URL")

HOLDER = """
import sys, time
from itap_engine.config import load_settings
from itap_engine.store.run_lock import RunLock
lock = RunLock(load_settings(sys.argv[1]), "holder test", url=sys.argv[2] if len(sys.argv) > 2 else None)
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def folder_config(folder: Path, db: str, **sections: dict) -> Path:
    """A config in ``folder`` whose data folder is its own but whose database is ``db``."""
    return derived_config(
        load_settings(REPO / "config.toml"),
        folder,
        fleet=[{"profile": "industrial", "devices": 3, "prefix": "pump", "sites": ["north"]}],
        database={"url": db},
        **sections,
    )


def start_holder(config: Path, url: str | None = None) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", HOLDER, str(config), *([url] if url else [])]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    assert line.strip() == "held", proc.stderr.read()  # type: ignore[union-attr]
    return proc


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    proc.wait(timeout=30)


@pytest.fixture
def two_folders(tmp_path: Path) -> tuple[Settings, Settings, Path]:
    shared = tmp_path / "shared" / "itap.db"
    url = f"sqlite:///{shared}"
    a = load_settings(folder_config(tmp_path / "a", url))
    b = load_settings(folder_config(tmp_path / "b", url))
    assert a.resolve(a.paths.data_dir) != b.resolve(b.paths.data_dir)
    return a, b, shared


def test_a_lock_taken_from_one_folder_holds_for_another_folder_on_the_same_database(two_folders) -> None:
    a, b, shared = two_folders
    holder = start_holder(a.source.parent / "config.toml")  # type: ignore[union-attr]
    try:
        with pytest.raises(LockHeld, match=f"holder test, pid {holder.pid} on ") as error:
            RunLock(b, "itap --once").acquire()
        assert holder.poll() is None  # refused while the holder still held it: no wait
        assert error.value.exit_code == 3
    finally:
        stop(holder)  # killed: its lease row stays, its pid is gone
    with sqlite3.connect(shared) as conn:
        assert conn.execute("SELECT pid FROM run_lease").fetchone() == (holder.pid,)
    lock = RunLock(b, "itap --once").acquire()  # a dead holder on this host is taken over
    try:
        with sqlite3.connect(shared) as conn:
            assert conn.execute("SELECT pid, purpose FROM run_lease").fetchone() == (os.getpid(), "itap --once")
        probe = subprocess.run(
            [sys.executable, "-c", HOLDER, str(a.source)], capture_output=True, text=True, timeout=60
        )
        assert probe.returncode != 0 and "LockHeld" in probe.stderr and "itap --once" in probe.stderr  # B keeps A out
    finally:
        lock.release()
    with sqlite3.connect(shared) as conn:
        assert conn.execute("SELECT count(*) FROM run_lease").fetchone() == (0,)


def _lease_row(shared: Path, host: str, beat: float) -> None:
    with sqlite3.connect(shared) as conn:
        conn.execute(db_lock._TABLE)
        conn.execute(
            f"INSERT OR REPLACE INTO run_lease ({db_lock._COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                db_lock.LOCK_NAME,
                "elsewhere:1:x",
                host,
                1,
                0.0,
                "itap engine",
                "2026-01-01T00:00:00+00:00",
                beat,
                beat + db_lock.LEASE_S,
            ),
        )


def test_a_holder_on_another_host_is_respected_until_its_lease_expires(two_folders) -> None:
    _, b, shared = two_folders
    shared.parent.mkdir(parents=True, exist_ok=True)
    _lease_row(shared, "other-host", time.time())
    with pytest.raises(LockHeld, match="itap engine, pid 1 on other-host"):
        RunLock(b, "itap --once").acquire()
    _lease_row(shared, "other-host", time.time() - db_lock.LEASE_S - 1)  # silent past its lease
    RunLock(b, "itap --once").acquire().release()


def test_the_heartbeat_renews_the_lease(two_folders, monkeypatch) -> None:
    _, b, shared = two_folders
    monkeypatch.setattr(db_lock, "HEARTBEAT_S", 0.05)
    lock = RunLock(b, "itap engine").acquire()
    try:
        with sqlite3.connect(shared) as conn:
            first = conn.execute("SELECT heartbeat_at FROM run_lease").fetchone()[0]
        deadline = time.monotonic() + 10
        while True:
            with sqlite3.connect(shared) as conn:
                beat, expires = conn.execute("SELECT heartbeat_at, expires_at FROM run_lease").fetchone()
            if beat > first:
                break
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.05)
        assert expires == pytest.approx(beat + db_lock.LEASE_S)
        assert not lock.lost
    finally:
        lock.release()


@pytest.mark.slow
def test_engine_in_one_folder_and_once_in_another_never_both_write(tmp_path: Path) -> None:
    """`itap engine` in folder A, `itap --once` in folder B, one ITAP_DB_URL: the second
    run exits 3 at once naming the engine; after the engine stops, --once runs."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    small = {
        "simulation": {"fault_rate_per_device_day": 0.0, "state_dwell_s": 86400},
        "detection": {"bootstrap_hours": 3.0, "detector": "robust_z"},
        "engine": {"tick_seconds": 1.0, "sim_speed": 60.0},
    }
    configs = {name: folder_config(tmp_path / name, "sqlite:///unused.db", **small) for name in ("a", "b")}

    def env(name: str) -> dict[str, str]:
        return {
            "PATH": "/usr/bin:/bin",
            "ITAP_CONFIG": str(configs[name]),
            "HOME": str(tmp_path / name),
            "ITAP_DB_URL": url,
        }

    engine = subprocess.Popen(
        [sys.executable, "-m", "itap_tui.cli", "engine"],
        env=env("a"),
        cwd=tmp_path / "a",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # the engine takes the lock before it bootstraps
            assert engine.poll() is None, engine.communicate()
            try:
                with sqlite3.connect(tmp_path / "shared.db") as conn:
                    if conn.execute("SELECT count(*) FROM run_lease").fetchone()[0]:
                        break
            except sqlite3.OperationalError:
                pass
            assert time.monotonic() < deadline, "the engine did not take the lock"
            time.sleep(0.1)
        second = subprocess.run(
            [sys.executable, "-m", "itap_tui.cli", "--once", "--json"],
            env=env("b"),
            cwd=tmp_path / "b",
            capture_output=True,
            text=True,
            timeout=120,
        )
        # it answered while the engine still held the lock: it did not wait for it
        assert second.returncode == 3 and engine.poll() is None, second.stderr
        summary = json.loads(second.stdout)
        assert summary["status"] == "UNKNOWN" and f"itap engine, pid {engine.pid}" in summary["error"]
        assert not (tmp_path / "b" / "data" / "itap.lock").exists()
    finally:
        stop(engine, signal.SIGTERM)
    third = subprocess.run(
        [sys.executable, "-m", "itap_tui.cli", "--once", "--json"],
        env=env("b"),
        cwd=tmp_path / "b",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert third.returncode != 3, third.stdout + third.stderr


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="ITAP_TEST_PG_URL not set")
def test_postgres_advisory_lock_one_writer_and_freed_when_the_holder_dies(tmp_path: Path) -> None:
    a = folder_config(tmp_path / "a", "sqlite:///unused.db")
    b = load_settings(folder_config(tmp_path / "b", "sqlite:///unused.db"))
    holder = start_holder(a, PG_URL)
    try:
        with pytest.raises(LockHeld, match=f"holder test, pid {holder.pid}"):
            RunLock(b, "itap --once", url=PG_URL).acquire()
    finally:
        stop(holder)  # SIGKILL: no release; the server frees the lock with the connection
    deadline = time.monotonic() + 15
    while True:
        try:
            lock = RunLock(b, "itap --once", url=PG_URL).acquire()
            break
        except LockHeld:
            assert time.monotonic() < deadline, "the advisory lock outlived its holder"
            time.sleep(0.2)
    try:
        with pytest.raises(LockHeld, match="itap --once"):
            RunLock(b, "itap engine", url=PG_URL).acquire()  # a second connection, even in one process
    finally:
        lock.release()
    RunLock(b, "itap engine", url=PG_URL).acquire().release()


async def test_an_engine_whose_lease_was_taken_over_stops_ticking(tmp_path: Path) -> None:
    from itap_engine.engine.service import Engine

    settings = load_settings(folder_config(tmp_path, "sqlite:///itap.db", detection={"bootstrap_hours": 3.0}))
    engine = Engine(settings, schedule=False)
    await engine.start()
    try:
        assert await engine.tick_now() is not None
        engine._lock.lost = True  # what the heartbeat sets when another run took the lease
        assert await engine.tick_now() is None
        assert "taken over" in (engine.last_error or "")
    finally:
        await engine.stop()


def test_a_heartbeat_that_finds_its_lease_taken_marks_the_lock_lost(two_folders, monkeypatch) -> None:
    _, b, shared = two_folders
    monkeypatch.setattr(db_lock, "HEARTBEAT_S", 0.05)
    lock = RunLock(b, "itap engine").acquire()
    try:
        with sqlite3.connect(shared) as conn:  # another run took the lease (after it expired)
            conn.execute("UPDATE run_lease SET holder = 'other:1:y'")
        deadline = time.monotonic() + 10
        while not lock.lost:
            assert time.monotonic() < deadline, "the heartbeat did not notice"
            time.sleep(0.05)
    finally:
        lock.release()
    with sqlite3.connect(shared) as conn:  # releasing a lost lock leaves the new holder's row alone
        assert conn.execute("SELECT holder FROM run_lease").fetchone() == ("other:1:y",)


def test_a_run_refused_by_the_console_names_the_console(tmp_path: Path) -> None:
    """The console's in-process engine holds the lock as the console: a refused
    ``itap --once`` used to name the holder 'itap engine' while the console was open."""
    config = folder_config(tmp_path / "site", f"sqlite:///{tmp_path / 'itap.db'}")
    console = (
        "import sys, time\n"
        "from itap_engine.config import load_settings\n"
        "from itap_engine.facade.local import LocalFacade\n"
        "LocalFacade(load_settings(sys.argv[1]), schedule=False).engine._lock.acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", console, str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held", proc.stderr
        with pytest.raises(LockHeld, match=r"\(the itap console, pid "):
            RunLock(load_settings(config), "itap --once").acquire()
    finally:
        stop(proc)
