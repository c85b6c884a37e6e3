"""e / E export the table on screen, as filtered and sorted, and say where."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from test_tui import ready, wait_for

from itap_bench.fake_facade import FakeFacade
from itap_tui.app import ItapApp
from itap_tui.export import write_records
from itap_tui.screens import AnomaliesScreen, DeviceScreen


def _app(tmp_path: Path, **kw) -> ItapApp:  # type: ignore[no-untyped-def]
    return ItapApp(FakeFacade(devices=10, **kw), export_dir=tmp_path / "exports", detail_refresh_s=3600)


async def test_e_writes_the_filtered_fleet_in_its_order_and_says_where(tmp_path: Path) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("slash")
        await pilot.pause()
        await pilot.press(*"profile:industrial !north", "enter")
        await pilot.pause()
        await pilot.press("e")
        await wait_for(pilot, lambda: app.last_export is not None)
        path = app.last_export
        assert path.parent == tmp_path / "exports" and path.suffix == ".csv"
        rows = list(csv.DictReader(path.open()))
        table = app.screen.table
        assert [r["device_id"] for r in rows] == [
            table.coordinate_to_cell_key((i, 0))[0].value for i in range(table.row_count)
        ]
        assert rows and all(r["profile"] == "industrial" and r["site"] != "north" for r in rows)
        assert any(str(path) in str(n.message) for n in app._notifications)
        # the validation panel, when focused
        app.last_export = None
        await pilot.press("v", "E")
        await wait_for(pilot, lambda: app.last_export is not None)
        problems = json.loads(app.last_export.read_text())
        assert app.last_export.name.startswith("validation-problems-") and problems and "first_seen" in problems[0]


async def test_E_writes_the_incidents_as_filtered_and_a_device_series(tmp_path: Path) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, AnomaliesScreen))
        await pilot.press("slash")
        await pilot.pause()
        await pilot.press(*"crit", "enter")
        await pilot.pause()
        await pilot.press("E")
        await wait_for(pilot, lambda: app.last_export is not None)
        records = json.loads(app.last_export.read_text())
        assert records and all(r["severity"] == "critical" for r in records)
        app.last_export = None
        app.open_device("pump-007")
        await wait_for(pilot, lambda: isinstance(app.screen, DeviceScreen) and app.screen.detail is not None)
        await pilot.press("e")
        await wait_for(pilot, lambda: app.last_export is not None)
        series = list(csv.DictReader(app.last_export.open()))
        assert len(series) == len(app.screen.detail.ts) and {"time", "score", "temp_c", "fault"} <= set(series[0])


def test_an_export_name_from_data_cannot_leave_the_folder(tmp_path: Path) -> None:
    path = write_records([{"a": 1}], tmp_path, "../../[bold]x[/]-series", "csv")
    assert path.parent == tmp_path and "/" not in path.name and path.read_text().startswith("a\n")


async def test_l_shows_the_events_filterable_and_esc_goes_back(tmp_path: Path) -> None:
    from itap_tui.screens import EventsScreen, FleetScreen
    from itap_tui.widgets.keyed_table import KeyedTable

    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, EventsScreen) and bool(app.screen.events))
        screen = app.screen
        table = screen.query_one(KeyedTable)
        await wait_for(pilot, lambda: table.row_count == len(screen.events))
        kinds = {e.kind for e in screen.events}
        assert {"incident", "validation", "log"} <= kinds
        await pilot.press("slash")
        await pilot.pause()
        await pilot.press(*"kind:incident", "enter")
        await pilot.pause()
        assert 0 < table.row_count < len(screen.events)
        assert all(table.get_cell_at((i, 1)).plain == "incident" for i in range(table.row_count))
        await pilot.press("e")
        await wait_for(pilot, lambda: app.last_export is not None)
        assert app.last_export.name.startswith("events-")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, FleetScreen))
