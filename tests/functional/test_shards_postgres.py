"""Several engines, one fleet: ``itap engine --shard 0/2`` and ``--shard 1/2`` as real
processes on one PostgreSQL database.

Runs when ``ITAP_TEST_PG_URL`` names a database (like ``test_postgres.py``); it drops
and makes again the ``public`` schema of that database. No assertion is on time:
every wait is for a condition, with a generous deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from itap_engine.config import Settings, load_settings
from itap_engine.engine.shards import Shard
from itap_engine.store.watermarks import ENGINE_STATUS_KEY, SIM_CLOCK_KEY, for_shard

PG_URL = os.environ.get("ITAP_TEST_PG_URL")
pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.skipif(not PG_URL, reason="ITAP_TEST_PG_URL not set")]
REPO = Path(__file__).resolve().parents[2]
FLEET = [
    {"profile": "industrial", "devices": 6, "prefix": "pump", "sites": ["north"]},
    {"profile": "aircraft", "devices": 3, "prefix": "ac", "sites": ["fleet-a"]},
]


def _config(folder: Path) -> Path:
    from itap_bench.engine import derived_config

    return derived_config(
        load_settings(REPO / "config.toml"),
        folder,
        fleet=FLEET,
        simulation={"fault_rate_per_device_day": 0.0},
        detection={"bootstrap_hours": 1.0, "detector": "robust_z"},
        engine={"tick_seconds": 0.5, "sim_speed": 60.0, "retrain_minutes": 600, "housekeeping_minutes": 600},
    )


class Engines:
    """``itap engine`` processes on one config and database; stderr of each in a file."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.procs: list[subprocess.Popen[str]] = []
        self.logs: dict[int, Path] = {}
        self.env = {**os.environ, "ITAP_DB_URL": str(PG_URL)}

    def start(self, shard: str) -> subprocess.Popen[str]:
        log = self.config.parent / f"engine-{len(self.procs)}.err"
        with open(log, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "itap_tui.cli", "engine", "--config", str(self.config), "--shard", shard],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                text=True,
            )
        self.procs.append(proc)
        self.logs[proc.pid] = log
        return proc

    def stderr(self, proc: subprocess.Popen[str]) -> str:
        return self.logs[proc.pid].read_text()

    def stop(self, proc: subprocess.Popen[str]) -> tuple[int, str]:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return proc.returncode, self.stderr(proc)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _wait(condition: Callable[[], Any], what: str, engines: Engines, timeout: float = 240.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        for proc in engines.procs:
            if proc.poll() not in (None, 0, -9, -15):
                raise AssertionError(f"an engine exited with {proc.returncode}: {engines.stderr(proc)[-2000:]}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _time(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Settings, Engines]]:
    engine = sa.create_engine(PG_URL)  # type: ignore[arg-type]
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    config = _config(tmp_path / "site")
    engines = Engines(config)
    yield load_settings(config).with_overrides(database={"url": PG_URL}), engines
    engines.close()


def test_two_shards_one_fleet(site: tuple[Settings, Engines]) -> None:
    from sqlmodel import select

    from itap_engine.facade.attached import snapshot_from_db
    from itap_engine.store.queries import write_fault_commands
    from itap_engine.store.schema import FaultCommand
    from itap_engine.store.sql import Store

    settings, engines = site
    fleet = [d for group in settings.simulation.fleet for d in group.device_ids()]
    shards = [Shard(0, 2), Shard(1, 2)]
    pumps = [[d for d in settings.simulation.fleet[0].device_ids() if s.owns(d)] for s in shards]
    assert all(pumps), "the test fleet must give each shard a pump"

    engines.start("0/2")
    one = engines.start("1/2")
    store = Store(settings)
    try:

        def status(shard: Shard) -> dict[str, Any]:
            raw = store.get_watermark(for_shard(ENGINE_STATUS_KEY, shard.label))
            return json.loads(raw) if raw else {}

        def ticked(shard: Shard, ticks: int) -> bool:
            return int(status(shard).get("ticks") or 0) >= ticks

        _wait(lambda: all(ticked(s, 3) for s in shards), "both shards to tick", engines)
        # one fault per shard, commanded as an attached console does: fault_command rows
        commands = write_fault_commands(store, [pumps[0][0], pumps[1][0]], "overheat_drift", 2.0, 3600)

        def statuses() -> dict[int, str]:
            with store.session() as session:
                return {c.id: c.status for c in session.exec(select(FaultCommand))}

        _wait(lambda: all(statuses().get(c.id) == "active" for c in commands), "both faults to become active", engines)
        # run on (about 30 s of ticks at 0.5 s), then look as an attached console does
        _wait(lambda: all(ticked(s, 60) for s in shards), "both shards to run 60 ticks", engines)
        snapshot = snapshot_from_db(store, settings, seq=1)
        listed = [row.device_id for row in snapshot.devices]
        assert sorted(listed) == sorted(fleet)  # every device, exactly once
        assert {row.device_id: row.injected_fault for row in snapshot.devices if row.injected_fault} == {
            pumps[0][0]: "overheat_drift",
            pumps[1][0]: "overheat_drift",
        }
        assert all(row.last_ts is not None for row in snapshot.devices)  # both shards wrote readings
        clocks = store.watermarks_like(SIM_CLOCK_KEY)
        assert set(clocks) == {for_shard(SIM_CLOCK_KEY, s.label) for s in shards}  # a clock per shard, no other
        assert snapshot.stats.ticks >= 120  # the statuses of both shards, added up

        # a second engine for a held shard waits ...
        spare = engines.start("1/2")
        _wait(lambda: "held by another engine" in engines.stderr(spare), "the spare engine to start", engines)
        # (said only when waiting: the old code printed "waiting" at every sharded start)
        assert not any("held by another engine" in engines.stderr(s) for s in engines.procs if s is not spare)
        ticks = int(status(shards[1])["ticks"])
        _wait(lambda: ticked(shards[1], ticks + 4), "shard 1 to go on", engines)
        assert spare.poll() is None and status(shards[1])["pid"] == one.pid
        # ... and takes the shard over when its engine dies
        clock_before = store.get_watermark(for_shard(SIM_CLOCK_KEY, "1/2"))
        one.kill()
        one.wait()
        _wait(
            lambda: status(shards[1]).get("pid") == spare.pid and ticked(shards[1], 2),
            "the spare to take shard 1",
            engines,
        )
        _wait(
            lambda: _time(store.get_watermark(for_shard(SIM_CLOCK_KEY, "1/2"))) > _time(clock_before),
            "shard 1's clock to move on after the takeover",
            engines,
        )
        for proc in engines.procs:
            if proc is not one:
                code, err = engines.stop(proc)
                assert code == 0, err[-2000:]
    finally:
        store.close()


def test_a_shard_carries_out_only_its_own_devices_commands(site: tuple[Settings, Engines]) -> None:
    from itap_engine.engine.core import EngineCore
    from itap_engine.store.queries import write_fault_commands

    settings, _engines = site
    pumps = settings.simulation.fleet[0].device_ids()
    mine = next(d for d in pumps if Shard(0, 2).owns(d))
    theirs = next(d for d in pumps if Shard(1, 2).owns(d))
    core = EngineCore(settings.with_overrides(engine={"shard": "0/2"}))
    try:
        assert set(core.device_profile) == {
            d for group in settings.simulation.fleet for d in group.device_ids() if Shard(0, 2).owns(d)
        }
        core.sim_time = settings.simulation.start
        write_fault_commands(core.store, [mine, theirs, "nobody-0"], "overheat_drift", 1.0, 600)
        changed = {c.device_id: c.status for c in core.apply_commands()}
        # the other shard's command stays pending for its owner; an unknown device is
        # rejected by the shard its id hashes to
        expected = {mine: "active"}
        if Shard(0, 2).owns("nobody-0"):
            expected["nobody-0"] = "rejected"
        assert changed == expected
    finally:
        core.close()


def test_the_run_lock_and_the_shard_locks_are_one_kind_of_database_lock(site: tuple[Settings, Engines]) -> None:
    from itap_engine.store.run_lock import LOCK_NAME, PG_LOCK_KEY, DatabaseLock, LockHeld, RunLock

    settings, _engines = site
    url = str(PG_URL)
    run = RunLock(settings, "itap engine", url=url).acquire()
    probe = DatabaseLock(url, LOCK_NAME, key=PG_LOCK_KEY)
    try:
        assert not probe.try_acquire()  # the run lock is the advisory key PG_LOCK_KEY
        run.release()
        assert probe.try_acquire()
        with pytest.raises(LockHeld, match="another process"):  # a run sees it held (no lease row names it)
            RunLock(settings, "itap --once", url=url).acquire()
    finally:
        probe.close()
        run.release()
    first = DatabaseLock(url, Shard(0, 2).lock_name).acquire(wait=False)
    second = DatabaseLock(url, Shard(0, 2).lock_name)
    try:
        with pytest.raises(LockHeld, match=r"itap\.shard\.0/2"):
            second.acquire(wait=False)
        with DatabaseLock(url, Shard(1, 2).lock_name) as other:  # another shard's lock is free
            assert other.held
        first.close()
        assert second.acquire(wait=False).held  # taken over once the holder let go
    finally:
        first.close()
        second.close()


def test_once_of_a_shard_takes_that_shards_lock_not_the_whole_databases(
    site: tuple[Settings, Engines], capsys: pytest.CaptureFixture[str]
) -> None:
    from itap_engine.engine.shards import ShardLock, writer_lock
    from itap_engine.modes.once import run_once
    from itap_engine.store.run_lock import DatabaseLock, RunLock

    settings, _engines = site
    sharded = settings.with_overrides(engine={"shard": "0/2"})
    assert isinstance(writer_lock(sharded, "itap --once"), ShardLock)
    assert isinstance(writer_lock(settings, "itap --once"), RunLock)
    with DatabaseLock(str(PG_URL), Shard(0, 2).lock_name):  # an engine runs shard 0/2
        assert run_once(sharded, json_output=True) == 3
        summary = json.loads(capsys.readouterr().out)
        assert summary["status"] == "UNKNOWN" and "shard 0/2" in summary["error"]
        run = RunLock(settings, "itap --once", url=str(PG_URL)).acquire()  # the run lock stayed free
        run.release()


def test_shards_exclude_whole_fleet_runs_and_other_layouts(site: tuple[Settings, Engines]) -> None:
    """The review ran ``itap engine --shard 0/1`` and ``itap --once`` beside ``0/2`` and
    ``1/2``: both started and simulated every device a second time. A shard holds the run
    lock in share mode and its layout N; whole-fleet runs and other layouts are refused."""
    from itap_engine.engine.shards import ShardLock
    from itap_engine.errors import ItapError
    from itap_engine.store.run_lock import LockHeld, RunLock, ShardLocks

    settings, _engines = site
    url = str(PG_URL)

    def locks(index: int, count: int) -> ShardLocks:
        return ShardLocks(url, Shard(index, count).lock_name, index, count)

    zero, one = locks(0, 2).acquire(wait=False), locks(1, 2).acquire(wait=False)  # shards share the run lock
    try:
        with pytest.raises(LockHeld, match=r"shard 0/1: engines of another layout \(N = 2\)"):
            locks(0, 1).acquire(wait=False)
        with pytest.raises(LockHeld, match="shard engines"):  # itap --once, the console, a whole-fleet engine
            RunLock(settings, "itap --once", url=url).acquire()
        with pytest.raises(LockHeld, match="another ITAP run holds shard 0/2"):  # --once of a running shard
            ShardLock(settings.with_overrides(engine={"shard": "0/2"}), Shard(0, 2)).acquire()
        spare = locks(1, 2)
        with pytest.raises(LockHeld, match=r"itap\.shard\.1/2"):  # the spare of a held shard waits (here: not)
            spare.acquire(wait=False)
    finally:
        zero.close()
        one.close()
    run = RunLock(settings, "itap engine", url=url).acquire()  # a whole-fleet engine once the shards stopped
    try:
        with pytest.raises(LockHeld, match="shard 0/2: a whole-fleet ITAP run"):
            locks(0, 2).acquire(wait=False)
    finally:
        run.release()
    single = locks(0, 1).acquire(wait=False)  # and another layout once the first is gone
    single.close()
    with pytest.raises(ItapError, match="shards need PostgreSQL") as refused:
        ShardLocks("sqlite:///x.db", Shard(0, 2).lock_name, 0, 2)
    assert refused.value.exit_code == 2
