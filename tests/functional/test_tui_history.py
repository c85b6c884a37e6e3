"""``3``: the incident history screen, and the query behind it on a real SQLite file."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from test_tui import ready, wait_for

from itap_bench.fake_facade import FakeFacade
from itap_engine.store import schema as models
from itap_engine.store.queries import incident_history
from itap_tui.app import ItapApp
from itap_tui.screens.history import parse_range

NOW = datetime(2026, 1, 2, 12, 0)
MS = 1000


def test_a_range_is_relative_absolute_open_ended_or_all() -> None:
    assert parse_range("-6h", NOW) == (datetime(2026, 1, 2, 6, 0), None)
    assert parse_range("05:00 .. 07:00", NOW) == (datetime(2026, 1, 2, 5, 0), datetime(2026, 1, 2, 7, 0))
    assert parse_range("2026-01-01 .. 2026-01-02", NOW) == (datetime(2026, 1, 1), datetime(2026, 1, 2))
    assert parse_range("all", NOW) == (None, None)
    assert parse_range("07:00 .. 05:00", NOW) is None  # start after end
    assert parse_range("yesterday", NOW) is None


def _ms(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1)).total_seconds() * MS)


def test_the_history_lists_what_overlaps_the_range_and_what_was_open_then(settings, store) -> None:
    def incident(device: str, opened: datetime, closed: datetime | None) -> None:
        with store.session() as session:
            session.add(
                models.Alert(
                    profile="industrial",
                    device_id=device,
                    family="thermal",
                    severity="critical",
                    status="open" if closed is None else "closed",
                    opened_ts=_ms(opened),
                    last_ts=_ms(closed or opened),
                    closed_ts=None if closed is None else _ms(closed),
                    peak_score=2.0,
                )
            )
            session.commit()

    incident("early", datetime(2026, 1, 1, 1), datetime(2026, 1, 1, 2))
    incident("middle", datetime(2026, 1, 1, 5), datetime(2026, 1, 1, 9))
    incident("late", datetime(2026, 1, 1, 20), None)
    every = incident_history(store)
    assert [r.device_id for r in every] == ["late", "middle", "early"]  # newest opened first
    window = incident_history(store, datetime(2026, 1, 1, 6), datetime(2026, 1, 1, 8))
    assert [(r.device_id, r.status) for r in window] == [("middle", "open")]  # it was open then
    since = incident_history(store, datetime(2026, 1, 1, 3))
    assert [r.device_id for r in since] == ["late", "middle"]


async def test_3_shows_every_incident_filterable_by_range_and_text(tmp_path: Path) -> None:
    from itap_tui.screens import DeviceScreen, FleetScreen, HistoryScreen
    from itap_tui.widgets.keyed_table import KeyedTable

    facade = FakeFacade(devices=10)
    app = ItapApp(facade, export_dir=tmp_path / "exports", detail_refresh_s=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("3")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen) and app.screen.loaded)
        screen = app.screen
        table = screen.query_one(KeyedTable)
        assert screen.incidents and table.row_count == len(screen.incidents) == len(facade.alerts)
        assert "in all stored history" in str(screen.query_one("#history-summary").render())
        # a filter narrows the rows to what it names
        device = screen.incidents[0].device_id
        await pilot.press("slash")
        await pilot.pause()
        await pilot.press(*f"device:{device}", "enter")
        await pilot.pause()
        assert table.row_count == sum(1 for i in screen.incidents if i.device_id == device)
        await pilot.press("e")
        await wait_for(pilot, lambda: app.last_export is not None)
        assert app.last_export.name.startswith("incidents-")
        # a range before every incident: none, and the summary says how to widen it
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("ctrl+u", *"2000-01-01 .. 2000-01-02", "enter")
        await wait_for(pilot, lambda: screen.since is not None and screen.loaded and not screen.incidents)
        await pilot.pause()
        assert "r widens it" in str(screen.query_one("#history-summary").render())
        assert facade.calls[-1][0] == "incident_history"
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("ctrl+u", *"all", "enter")
        await wait_for(pilot, lambda: screen.since is None and bool(screen.incidents))
        await wait_for(pilot, lambda: table.row_count > 0)
        # Enter opens the incident's device; escape comes back, escape again to the fleet
        table.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DeviceScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, FleetScreen))


async def test_screens_open_again_from_a_screen_above_them(tmp_path: Path) -> None:
    """fleet -> 3 -> enter (device) -> 3 -> enter -> l -> 3: every screen can be in the stack twice."""
    from itap_tui.screens import DeviceScreen, EventsScreen, HistoryScreen

    app = ItapApp(FakeFacade(devices=10), export_dir=tmp_path / "exports", detail_refresh_s=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        for key, kind in (("3", HistoryScreen), ("enter", DeviceScreen), ("3", HistoryScreen), ("enter", DeviceScreen)):
            await pilot.press(key)
            await wait_for(pilot, lambda kind=kind: isinstance(app.screen, kind) and app.screen.is_mounted)
            if kind is HistoryScreen:
                await wait_for(pilot, lambda: app.screen.loaded)
                await pilot.pause()
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, EventsScreen))
        await pilot.press("escape")
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, EventsScreen))
        assert sum(isinstance(s, DeviceScreen) for s in app.screen_stack) == 2
