"""Incidents in the console and the command line: one count with one label
everywhere, a Why panel that never shows a closed incident as current."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from test_tui import ready, tick, wait_for

from itap_bench.fake_facade import FakeFacade
from itap_engine.config import load_settings
from itap_engine.snapshot import IncidentCounts
from itap_engine.store.schema import Alert
from itap_engine.store.sql import Store
from itap_tui import cli
from itap_tui.app import ItapApp
from itap_tui.screens import AnomaliesScreen, DeviceScreen
from itap_tui.widgets import ContributorsPanel

REPO = Path(__file__).resolve().parents[2]


def test_one_definition_and_one_label() -> None:
    assert IncidentCounts(2, 1).label() == "2 open, 1 unacknowledged"


async def test_fleet_header_and_anomalies_screen_give_the_same_count() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await facade.acknowledge(2)
        await tick(pilot, facade)
        assert "incidents: 2 open, 1 unacknowledged" in str(app.screen.query_one("#fleet-summary").render())
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, AnomaliesScreen))
        assert "incidents: 2 open, 1 unacknowledged" in str(app.screen.query_one("#anomalies-summary").render())


def test_itap_status_gives_the_same_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text((REPO / "config.toml").read_text())
    store = Store(load_settings(config))
    with store.session() as session:
        for device, acked, status in (
            ("pump-001", False, "open"),
            ("pump-002", True, "open"),
            ("pump-003", False, "closed"),
        ):
            session.add(
                Alert(
                    profile="industrial",
                    device_id=device,
                    family="thermal",
                    opened_ts=0,
                    last_ts=0,
                    status=status,
                    acknowledged=acked,
                )
            )
        session.commit()
    store.close()
    assert cli.main(["--config", str(config), "status"]) == 0
    assert "incidents: 2 open, 1 unacknowledged" in capsys.readouterr().out


async def test_the_why_panel_never_shows_a_closed_incident_as_current() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade, detail_refresh_s=3600)  # the detail is not refetched: it goes stale
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        app.open_device("pump-007")  # its critical incident is alert 1
        await wait_for(pilot, lambda: isinstance(app.screen, DeviceScreen) and app.screen.detail is not None)
        panel = app.screen.query_one(ContributorsPanel)
        assert "critical incident #1" in str(panel.render())
        facade.alerts[1] = replace(facade.alerts[1], status="closed")
        await tick(pilot, facade)
        app.screen.show_detail()
        await pilot.pause()
        why = str(panel.render())
        assert "critical incident" not in why and "No open incident" in why and "#1 is closed" in why


async def test_u_undoes_an_acknowledgement() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, AnomaliesScreen))
        table = app.screen.table
        table.move_cursor(row=table.get_row_index("alert-1"))
        await pilot.press("a")
        await wait_for(pilot, lambda: facade.alerts[1].acknowledged)
        await wait_for(pilot, lambda: app.screen.table.cursor_anomaly.acknowledged)
        await pilot.press("u")
        await wait_for(pilot, lambda: ("unacknowledge", (1,)) in facade.calls)
        assert not facade.alerts[1].acknowledged
        # from the fleet too, on the highlighted device's incident
        await pilot.press("1")
        await facade.acknowledge(2)
        await tick(pilot, facade)
        fleet = app.screen.table
        fleet.move_cursor(row=fleet.get_row_index(facade.alerts[2].device_id))
        await pilot.press("u")
        await wait_for(pilot, lambda: ("unacknowledge", (2,)) in facade.calls)


async def test_A_acknowledges_everything_the_filter_shows_and_nothing_else() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, AnomaliesScreen))
        await pilot.press("slash")
        await pilot.pause()
        await pilot.press(*"crit", "enter")
        await pilot.pause()
        await pilot.press("A")
        await wait_for(pilot, lambda: facade.alerts[1].acknowledged)
        await pilot.pause(0.2)
        assert facade.alerts[1].severity == "critical" and not facade.alerts[2].acknowledged
        assert [c for c in facade.calls if c[0] == "acknowledge"] == [("acknowledge", (1,))]


async def test_m_mutes_the_highlighted_device_for_a_period_and_0_lifts_it() -> None:
    from itap_tui.screens import PromptModal
    from itap_tui.widgets import DeviceTable

    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        table = app.screen.query_one(DeviceTable)
        while table.cursor_device != "pump-002":  # as the operator gets there
            await pilot.press("down")
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptModal))
        await pilot.press("ctrl+a", "ctrl+k", *"30m", "enter")
        await wait_for(pilot, lambda: ("mute", ("pump-002", 1800.0)) in facade.calls)
        await wait_for(pilot, lambda: "muted" in table.get_cell("pump-002", "status").plain)
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptModal))
        await pilot.press("ctrl+a", "ctrl+k", "0", "enter")
        await wait_for(pilot, lambda: ("mute", ("pump-002", None)) in facade.calls)
        await wait_for(pilot, lambda: "muted" not in table.get_cell("pump-002", "status").plain)


async def test_N_writes_a_short_note_shown_with_the_incident() -> None:
    from itap_tui.screens import PromptModal

    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, AnomaliesScreen))
        screen = app.screen
        screen.table.move_cursor(row=screen.table.get_row_index("alert-1"))
        await pilot.press("N")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptModal))
        await pilot.press(*"crew on site", "enter")
        await wait_for(pilot, lambda: ("note", (1, "crew on site")) in facade.calls)
        await wait_for(pilot, lambda: "note: crew on site" in str(screen.query_one("#anomaly-detail").render()))


async def test_validation_problems_stay_put_and_use_the_simulated_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    from itap_tui.format import fmt_ts
    from itap_tui.widgets import ValidationPanel

    facade = FakeFacade(devices=12, extra_devices=("ext-001",))
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        panel = app.screen.query_one(ValidationPanel)
        assert panel.row_count == len(app.snapshot.validation_problems) >= 2
        cleared: list[bool] = []
        monkeypatch.setattr(panel, "clear", lambda *a, **k: cleared.append(True))
        await pilot.press("v")
        await pilot.press("down")
        key = panel.coordinate_to_cell_key(panel.cursor_coordinate)[0].value
        await tick(pilot, facade, 3)
        assert panel.coordinate_to_cell_key(panel.cursor_coordinate)[0].value == key and not cleared
        problem = next(p for p in app.snapshot.validation_problems if f"p{p.id}" == key)
        assert panel.get_cell(key, "first").plain == fmt_ts(problem.first_ts)  # data time, not the wall clock
        assert panel.get_cell(key, "count").plain == str(problem.count) and problem.count > 1
        message = panel.get_cell(key, "message").plain
        assert problem.signal is None or not message.startswith(problem.signal)  # no repeated signal name


async def test_the_mute_question_wraps_at_80_columns() -> None:
    from textual.widgets import Label

    from itap_tui.screens import PromptModal

    app = ItapApp(FakeFacade(devices=10))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptModal))
        await pilot.pause()
        label = app.screen.query_one(Label)
        assert label.size.height >= 2  # the whole question, wrapped, not cut


async def test_M_puts_the_highlighted_device_in_maintenance_shown_in_the_fleet() -> None:
    from itap_tui.screens import PromptModal
    from itap_tui.widgets import DeviceTable

    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        table = app.screen.query_one(DeviceTable)
        device = table.cursor_device
        await pilot.press("M")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptModal))
        await pilot.press("ctrl+a", "ctrl+k", *"2h bearing swap", "enter")
        await wait_for(pilot, lambda: ("mute", (device, 7200.0, "maintenance: bearing swap")) in facade.calls)
        await wait_for(pilot, lambda: "maintenance" in table.get_cell(device, "status").plain)
        assert app.snapshot.silenced[device][1] == "maintenance: bearing swap"
        await pilot.press("M")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptModal))
        await pilot.press("ctrl+a", "ctrl+k", *"2 weeks", "enter")  # not a duration: nothing changes
        await pilot.pause()
        await pilot.press("M")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptModal))
        await pilot.press("ctrl+a", "ctrl+k", "0", "enter")
        await wait_for(pilot, lambda: "maintenance" not in table.get_cell(device, "status").plain)


async def test_v_goes_to_the_validation_panel_and_v_again_back_to_the_table() -> None:
    """The old ``v`` only went there: the table's keys (enter, s, a) were gone until tab."""
    from itap_tui.widgets import DeviceTable, ValidationPanel

    app = ItapApp(FakeFacade(devices=12, extra_devices=("ext-001",)))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("v")
        assert app.focused is app.screen.query_one(ValidationPanel)
        await pilot.press("v")
        assert app.focused is app.screen.query_one(DeviceTable)


async def test_at_80_columns_the_summary_lines_keep_sort_and_filter_in_sight() -> None:
    """The fleet's and the anomalies' second line cut the sort (and a filter) at 80
    columns; the incident counts and reading counts give way first."""
    from textual.widgets import Static

    from itap_tui.screens import AnomaliesScreen

    facade = FakeFacade(devices=30)
    app = ItapApp(facade)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("slash", *"pump", "enter")
        await tick(pilot, facade)
        summary = app.screen.query_one("#fleet-summary", Static)
        line = str(summary.render())
        assert "sort: " in line and "filter: pump (" in line and len(line) <= summary.content_region.width
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, AnomaliesScreen))
        await tick(pilot, facade)
        summary = app.screen.query_one("#anomalies-summary", Static)
        line = str(summary.render())
        assert line.startswith("incidents: ") and "sort: " in line and len(line) <= summary.content_region.width
        await pilot.resize_terminal(160, 40)
        await tick(pilot, facade)
        assert "top readings  │ " in str(summary.render())  # room: every part, spaced as before
