"""``itap replay``: stored history through the console, read-only; every key, the
header, the end of the interval, snapshots, and the command line's errors."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from _sites import small_config
from test_tui import ready, wait_for

from itap_engine.config import load_settings
from itap_engine.engine.core import EngineCore
from itap_engine.engine.drill import run_scenario
from itap_engine.errors import ItapError
from itap_engine.facade.past import cut_detail
from itap_engine.facade.replay import ReplayFacade, check_interval, read_span
from itap_engine.scenario import parse_scenario
from itap_engine.snapshot import AnomalyRow, DeviceDetail
from itap_engine.store.readonly import ReadOnlyStore
from itap_tui import cli
from itap_tui.replay import ReplayApp
from itap_tui.screens import FaultModal
from itap_tui.widgets import EngineStatus

DRILL = {"fault": [{"device": "pump-002", "fault": "overheat_drift", "start": "10m", "duration": "20m", "severity": 4}]}


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, datetime, datetime]:
    """A site whose stored history has one incident: (folder, drill start, incident opened)."""
    folder = tmp_path_factory.mktemp("replay")
    settings = load_settings(small_config(folder))
    core = EngineCore(settings)
    try:
        core.bootstrap()
        core.resume()
        result = run_scenario(core, parse_scenario(DRILL, settings, Path("drill.toml")), step_s=300)
    finally:
        core.close()
    incident = min((i for i in result.incidents if i.device_id == "pump-002"), key=lambda i: i.opened)
    return folder, result.started, incident.opened


def fingerprint(folder: Path) -> dict[str, str]:
    """The database file and its write-ahead log. The -shm index is shared memory, not
    data, and SQLite may leave an empty -wal beside a WAL database a reader opened."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.glob("itap.db*"))
        if not path.name.endswith("-shm") and path.stat().st_size
    }


def replay_app(folder: Path, start: datetime, end: datetime) -> ReplayApp:
    # speed 1 and 600 s frames: a frame never plays by itself during a test, a step is 10 minutes
    facade = ReplayFacade(load_settings(folder / "config.toml"), start, end, speed=1, interval_s=600)
    return ReplayApp(facade, theme="textual-dark")


def header(app: ReplayApp) -> str:
    return str(app.screen.query_one(EngineStatus).render())


async def test_every_replay_key_and_nothing_written(history: tuple[Path, datetime, datetime]) -> None:
    folder, started, _opened = history
    before = fingerprint(folder)
    app = replay_app(folder, started, started + timedelta(hours=1))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert app.snapshot.stats.mode == "replay"
        assert header(app).startswith("▶ REPLAY") and started.strftime("%Y-%m-%d %H:%M:%S") in header(app)
        await pilot.press("space")
        await wait_for(pilot, lambda: app.snapshot.stats.paused)
        assert "REPLAY PAUSED" in header(app)
        await pilot.press("full_stop")
        later = started + timedelta(minutes=10)
        await wait_for(pilot, lambda: app.snapshot.stats.sim_time == later)
        assert later.strftime("%H:%M:%S") in header(app) and "17%" in header(app)
        await pilot.press("plus")
        await wait_for(pilot, lambda: app.snapshot.stats.replay.speed == 2)
        assert "×2" in header(app)
        await pilot.press("full_stop")  # a step is now 20 minutes
        await wait_for(pilot, lambda: app.snapshot.stats.sim_time == later + timedelta(minutes=20))
        await pilot.press("minus")
        await wait_for(pilot, lambda: app.snapshot.stats.replay.speed == 1)
        await pilot.press("p")  # p plays too
        await wait_for(pilot, lambda: not app.snapshot.stats.paused)
        assert header(app).startswith("▶ REPLAY")
        await pilot.press("space")
        await wait_for(pilot, lambda: app.snapshot.stats.paused)
        for key in ("f", "a", "r", "t", "m", "N"):  # writes and time travel: one warning each, no dialog
            await pilot.press(key)
            await pilot.pause()
            assert not isinstance(app.screen, FaultModal)
        warnings = [str(n.message) for n in app._notifications if "read-only" in str(n.message)]
        assert len(warnings) == 6, warnings
        await pilot.press("q")
    assert fingerprint(folder) == before


async def test_the_replay_shows_incidents_as_stored_and_stops_at_the_end(
    history: tuple[Path, datetime, datetime],
) -> None:
    folder, _started, opened = history
    app = replay_app(folder, opened - timedelta(minutes=5), opened + timedelta(minutes=10))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("space")
        await wait_for(pilot, lambda: app.snapshot.stats.paused)
        assert "pump-002" not in {a.device_id for a in app.snapshot.anomalies}  # five minutes before it opened
        await pilot.press("full_stop")
        await wait_for(pilot, lambda: app.snapshot.stats.sim_time == opened + timedelta(minutes=5))
        [incident] = [a for a in app.snapshot.anomalies if a.alert_id is not None and a.device_id == "pump-002"]
        assert (incident.family, incident.status) == ("thermal", "open")
        # the drill-down as of the replay clock: readings up to it, the incident open then
        detail = await app.engine.call(app.facade.device_detail, "pump-002", 3600)
        clock_ms = int((opened + timedelta(minutes=5) - datetime(1970, 1, 1)).total_seconds() * 1000)
        assert detail.ts and detail.ts[-1] <= clock_ms and detail.ts[0] > clock_ms - 3600_000
        assert [a.status for a in detail.alerts if a.alert_id == incident.alert_id] == ["open"]

        await pilot.press("full_stop")  # past the end: it stops there
        await wait_for(pilot, lambda: app.snapshot.stats.replay.ended)
        assert app.snapshot.stats.sim_time == opened + timedelta(minutes=10) and "REPLAY END" in header(app)
        await pilot.press("space")  # play again: from the start
        await wait_for(pilot, lambda: app.snapshot.stats.sim_time == opened - timedelta(minutes=5))
        await pilot.press("q")


def test_the_drill_down_is_cut_at_the_replay_clock() -> None:
    row = AnomalyRow(
        "d", "industrial", 5000, 3.0, "critical", "thermal", (), alert_id=1, status="closed", opened_ts=2000
    )
    later = replace(row, alert_id=2, opened_ts=9000)
    detail = DeviceDetail(
        device_id="d",
        profile="industrial",
        ts=(1000, 2000, 3000, 4000),
        series={"temp_c": (1.0, 2.0, 3.0, 4.0)},
        scores=(0.1, 0.2, 0.3, 0.4),
        threshold=1.0,
        fault_labels=(None, None, "x", "x"),
        alerts=(row, later),
        faults=(),
        quarantined=(),
        contributors=(),
    )
    cut = cut_detail(detail, 1000, 3000, open_then={1})
    assert cut.ts == (2000, 3000) and cut.series["temp_c"] == (2.0, 3.0) and cut.scores == (0.2, 0.3)
    assert cut.fault_labels == (None, "x")
    assert [(a.alert_id, a.status) for a in cut.alerts] == [(1, "open")]  # open then; #2 opened later


@pytest.mark.parametrize("size", [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")])
def test_replay_snapshot(snap_compare, size, history) -> None:  # type: ignore[no-untyped-def]
    folder, _started, opened = history

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await ready(pilot)
        await pilot.press("space")
        await wait_for(pilot, lambda: pilot.app.snapshot.stats.paused)
        await pilot.press("full_stop")
        await wait_for(pilot, lambda: pilot.app.snapshot.stats.sim_time == opened + timedelta(minutes=5))
        await pilot.pause()

    assert snap_compare(
        replay_app(folder, opened - timedelta(minutes=5), opened + timedelta(hours=1)),
        terminal_size=size,
        run_before=run_before,
    )


# ---------------------------------------------------------------------- read-only, interval, command line
def test_the_read_only_store_refuses_writes_and_never_creates_a_database(
    history: tuple[Path, datetime, datetime], tmp_path: Path
) -> None:
    folder, _, _ = history
    settings = load_settings(folder / "config.toml")
    store = ReadOnlyStore(settings)
    try:
        with pytest.raises(Exception, match="readonly"):
            store.set_watermark("replay.was.here", "1")
    finally:
        store.close()
    empty = load_settings(small_config(tmp_path / "empty"))
    with pytest.raises(ItapError, match=r"no database at .*nothing stored"):
        ReadOnlyStore(empty)
    assert not list((tmp_path / "empty").glob("itap.db*"))


def test_an_empty_or_missed_interval_is_one_line(history: tuple[Path, datetime, datetime]) -> None:
    folder, started, _ = history
    span = read_span(load_settings(folder / "config.toml"))
    assert span is not None and span[0] < started < span[1]
    with pytest.raises(ItapError, match="is not before --to"):
        check_interval(started, started, span)
    with pytest.raises(ItapError, match=r"nothing stored between .* readings cover"):
        check_interval(span[1] + timedelta(hours=1), span[1] + timedelta(hours=2), span)
    with pytest.raises(ItapError, match="no readings are stored"):
        check_interval(started, span[1], None)


def run_cli(args: list[str], capsys, monkeypatch, terminal: bool = True) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    launched: list[tuple] = []
    monkeypatch.setattr(cli, "has_terminal", lambda: terminal)
    monkeypatch.setattr("itap_tui.replay.run_replay", lambda *a, **k: launched.append(a) or 0)
    code = cli.main(args)
    err = capsys.readouterr().err
    return code, err + (f"launched {launched[0][1]} {launched[0][2]} {launched[0][3]}" if launched else "")


def test_itap_replay_command_line(history, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    folder, _started, _ = history
    config = ["--config", str(folder / "config.toml")]
    span = read_span(load_settings(folder / "config.toml"))
    assert span is not None
    code, err = run_cli(["replay", *config, "--from", "yesterday"], capsys, monkeypatch)
    assert code == 2 and err.strip() == (
        "itap: error: --from 'yesterday': not a time (try -2h, 05:00 or 2026-01-01T05:00, data time in UTC)"
    )
    code, err = run_cli(["replay", *config, "--from", "-2h"], capsys, monkeypatch, terminal=False)
    assert code == 2 and err.startswith("itap: error: itap replay needs a terminal") and err.count("\n") == 1
    code, err = run_cli(["replay", *config, "--from", "-1h", "--to", "-2h"], capsys, monkeypatch)
    assert code == 2 and "is not before --to" in err and err.count("\n") == 1
    code, err = run_cli(["replay", *config, "--from", "2020-01-01", "--to", "2020-01-02"], capsys, monkeypatch)
    assert code == 2 and "nothing stored between 2020-01-01 00:00:00 and 2020-01-02 00:00:00" in err
    with pytest.raises(SystemExit) as stopped:
        run_cli(["replay", *config, "--speed", "0"], capsys, monkeypatch)
    assert stopped.value.code == 2 and "--speed: 0 is out of range" in capsys.readouterr().err
    # --from -2h (no '='): two hours before the newest reading, up to it, at the given speed
    code, err = run_cli(["replay", *config, "--from", "-2h", "--speed", "300"], capsys, monkeypatch)
    assert code == 0 and err == f"launched {span[1] - timedelta(hours=2)} {span[1]} 300.0", err


REPLAY_REFUSES = {
    "inject_fault",
    "retrain",
    "time_travel",
    "acknowledge",
    "unacknowledge",
    "acknowledge_all",
    "mute",
    "maintenance",
    "note",
}
"""The actions ``ReplayApp`` answers with "a replay is read-only"."""


async def test_the_replay_help_lists_only_keys_that_work_in_a_replay(
    history: tuple[Path, datetime, datetime],
) -> None:
    """The help of a replay leaves out what a replay refuses (faults, acks, mutes,
    notes, retrain, time travel and the fault dialog) and lists the replay's keys."""
    from itap_tui.app import ItapApp
    from itap_tui.screens import AnomaliesScreen, FleetScreen, HelpScreen

    folder, started, _opened = history
    app = replay_app(folder, started, started + timedelta(hours=1))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        entries = app.screen.entries()
        texts = {description for _, _, description in entries}
        refused = [
            b
            for b in (*ItapApp.BINDINGS, *FleetScreen.BINDINGS, *AnomaliesScreen.BINDINGS, *FaultModal.BINDINGS)
            if b.action in REPLAY_REFUSES
        ]
        assert refused
        for binding in refused:
            assert (binding.tooltip or binding.description) not in texts, binding.description
        assert not any(section == "Fault dialog" for section, _, _ in entries)
        for wanted in ("Pause or play the replay", "Pause and move one step forward", "Play faster", "Play slower"):
            assert wanted in texts, wanted
        listed = {keys for _, keys, _ in entries}
        for key in ("f", "r", "t", "m", "N"):  # the keys the test above sees refused
            assert not any(
                key in keys.split(", ") and section in ("Everywhere", "Fleet") for section, keys, _ in entries
            ), key
        assert "/" in listed
        await pilot.press("escape", "q")
