"""History: t shows the fleet and incidents at a past time; t or esc returns to live;
itap console --at opens there."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_tui import ready, tick, wait_for

from itap_bench.fake_facade import START, FakeFacade
from itap_engine.snapshot import Snapshot
from itap_tui import cli
from itap_tui.app import ItapApp
from itap_tui.screens import PromptModal
from itap_tui.timepick import parse_moment
from itap_tui.widgets import EngineStatus

NOW = datetime(2026, 1, 1, 12, 0, 0)


async def ask_for(pilot, moment: str) -> None:  # type: ignore[no-untyped-def]
    """``t``, then ``moment`` typed over the prompt's text, then enter."""
    await pilot.press("t")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, PromptModal))
    await pilot.press("ctrl+a", "ctrl+k", *moment, "enter")


REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("-2h", NOW - timedelta(hours=2)),
        ("-30m", NOW - timedelta(minutes=30)),
        ("- 90 s", NOW - timedelta(seconds=90)),
        ("-1d", NOW - timedelta(days=1)),
        ("05:00", NOW.replace(hour=5)),
        ("2026-01-01 05:30", datetime(2026, 1, 1, 5, 30)),
        ("2026-01-01T05:30:00+01:00", datetime(2026, 1, 1, 4, 30)),
        ("yesterday", None),
        ("25:00", None),
        ("-2x", None),
    ],
)
def test_parse_moment(text: str, moment: datetime | None) -> None:
    assert parse_moment(text, NOW) == moment


async def test_t_shows_a_past_time_and_t_or_esc_returns_to_live() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await tick(pilot, facade, 30)  # five simulated minutes
        status = app.screen.query_one(EngineStatus)
        await ask_for(pilot, "-2m")
        await wait_for(pilot, lambda: app.past is not None)
        await pilot.pause()
        [(_, (moment,))] = [c for c in facade.calls if c[0] == "snapshot_at"]
        assert moment == app._live.stats.sim_time - timedelta(minutes=2)
        assert "PAST" in str(status.render()) and moment.strftime("%H:%M:%S") in str(status.render())
        seq = facade.advance(2).seq  # live snapshots keep coming: the past stays on screen
        await pilot.pause(0.2)
        assert app.snapshot.stats.mode == "past" and "PAST" in str(status.render())
        await pilot.press("t")
        await wait_for(pilot, lambda: app.past is None)
        await pilot.pause()
        assert app.snapshot.seq == seq and "LIVE" in str(status.render())
        await ask_for(pilot, "06:01")
        await wait_for(pilot, lambda: app.past is not None)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.past is None)
        assert "LIVE" in str(status.render())


async def test_console_at_opens_at_that_time() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    app.start_at = "06:00"
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await wait_for(pilot, lambda: app.past is not None)
        assert ("snapshot_at", (START.replace(tzinfo=None),)) in facade.calls and app.past.stats.mode == "past"


def test_console_at_is_checked_and_passed_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text((REPO / "config.toml").read_text())
    seen: dict[str, object] = {}
    monkeypatch.setattr("itap_tui.app.run_console", lambda settings, **kw: seen.update(kw) or 0)
    monkeypatch.setattr(cli, "has_terminal", lambda: True)
    assert cli.main(["--config", str(config), "console", "--at=-2h"]) == 0  # a leading - needs the = form
    assert seen["at"] == "-2h"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--config", str(config), "console", "--at", "yesterday"])
    assert exit_info.value.code == 2


async def test_live_while_a_past_time_is_still_loading_stays_live() -> None:
    """esc (or t) pressed before the past snapshot arrives: the console stays live; the
    old code showed the past once it arrived, with no way back but a second esc."""
    facade = FakeFacade(devices=10)
    asked, release = threading.Event(), threading.Event()
    past_of = facade.snapshot_at

    async def slow_snapshot_at(at: datetime) -> Snapshot:
        asked.set()
        while not release.is_set():
            await asyncio.sleep(0.01)
        return await past_of(at)

    facade.snapshot_at = slow_snapshot_at  # type: ignore[method-assign]
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await tick(pilot, facade, 30)
        for back in ("escape", "t"):
            asked.clear()
            release.clear()
            await ask_for(pilot, "-2m")
            await wait_for(pilot, asked.is_set)
            await pilot.press(back)
            release.set()
            await wait_for(pilot, lambda: not any(w.group == "time-travel" and not w.is_finished for w in app.workers))
            await pilot.pause()
            assert app.past is None and app.snapshot.stats.mode != "past", back
            assert "LIVE" in str(app.screen.query_one(EngineStatus).render())
            assert not isinstance(app.screen, PromptModal)


async def test_time_travel_moves_the_device_plots_to_the_window_that_ended_then() -> None:
    from itap_tui.screens import DeviceScreen

    facade = FakeFacade(devices=10)
    app = ItapApp(facade, detail_refresh_s=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await tick(pilot, facade, 30)  # five simulated minutes
        app.open_device("pump-007")
        await wait_for(pilot, lambda: isinstance(app.screen, DeviceScreen) and app.screen.detail is not None)
        screen = app.screen
        live_end = screen.detail.ts[-1]
        await ask_for(pilot, "-2m")
        await wait_for(pilot, lambda: app.past is not None)
        await wait_for(pilot, lambda: screen.detail is not None and screen.detail.ts[-1] < live_end)
        moment = app.past.stats.sim_time
        assert screen.detail.ts[-1] == int(moment.replace(tzinfo=UTC).timestamp() * 1000)
        assert ("device_detail", ("pump-007", 3600, moment)) in facade.calls
        await pilot.press("t")  # back to live: the plots end at the newest reading again
        await wait_for(pilot, lambda: app.past is None)
        await wait_for(pilot, lambda: screen.detail.ts[-1] >= live_end)


async def test_a_screen_opened_in_the_past_says_so() -> None:
    """A device opened while the console shows a past time carries the PAST banner: a
    past snapshot has no sequence number (-1), which a fresh screen took for one it had
    already shown, and left its status line blank."""
    from itap_tui.screens import DeviceScreen

    facade = FakeFacade(devices=10)
    app = ItapApp(facade, detail_refresh_s=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await tick(pilot, facade, 30)
        await ask_for(pilot, "-2m")
        await wait_for(pilot, lambda: app.past is not None)
        app.open_device("pump-007")
        await wait_for(pilot, lambda: isinstance(app.screen, DeviceScreen))
        await pilot.pause()
        status = app.screen.query_one(EngineStatus)
        await wait_for(pilot, lambda: "PAST" in str(status.render()))


async def test_a_past_time_that_fails_says_so_and_is_logged_with_its_traceback() -> None:
    """The error toast is gone after 10 s; the log file keeps what failed (the old code
    only showed the toast, so a failure seen later had left no trace)."""
    import logging

    facade = FakeFacade(devices=10)

    async def broken_snapshot_at(at: datetime) -> Snapshot:
        raise OSError("disk I/O error")

    facade.snapshot_at = broken_snapshot_at  # type: ignore[method-assign]
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("itap_tui")
    logger.addHandler(handler)
    app = ItapApp(facade)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await ready(pilot)
            await tick(pilot, facade, 30)
            await ask_for(pilot, "-2m")
            await wait_for(pilot, lambda: bool(records))
            await pilot.pause()
            assert app.past is None
            assert any("show a past time failed: OSError: disk I/O error" in str(n.message) for n in app._notifications)
    finally:
        logger.removeHandler(handler)
    [record] = records
    assert record.levelno == logging.ERROR and record.getMessage() == "show a past time failed: OSError: disk I/O error"
    assert record.exc_info is not None and record.exc_info[0] is OSError
