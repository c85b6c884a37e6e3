"""Pilot tests of the console: every binding and every screen transition.

Most run against the deterministic :class:`itap_bench.fake_facade.FakeFacade` (fast, no
database); the end-to-end ones at the bottom run the real ``LocalFacade`` on a small
config in ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from rich.text import Text
from textual.widgets import DataTable, Input, OptionList

from itap_bench.fake_facade import FakeFacade
from itap_engine.snapshot import Progress
from itap_tui.app import ItapApp
from itap_tui.filtering import Filter, FilterError
from itap_tui.format import Palette, bar, fmt_value, score_text, status_text
from itap_tui.screens import AnomaliesScreen, BootstrapScreen, DeviceScreen, FaultModal, FleetScreen, HelpScreen
from itap_tui.screens.fault_modal import parse_duration
from itap_tui.widgets import AnomalyTable, ContributorsPanel, DeviceTable, EngineStatus, ValidationPanel
from itap_tui.widgets.keyed_table import KeyedTable

MARKUP_ID = "[bold red]x[/]"


async def wait_for(pilot, condition: Callable[[], bool], timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.02)


async def ready(pilot) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await wait_for(pilot, lambda: app.snapshot is not None and not isinstance(app.screen, BootstrapScreen))
    await pilot.pause()


async def tick(pilot, facade: FakeFacade, ticks: int = 1) -> None:  # type: ignore[no-untyped-def]
    seq = facade.advance(ticks).seq
    await wait_for(pilot, lambda: pilot.app.snapshot is not None and pilot.app.snapshot.seq >= seq)
    await pilot.pause()


def cell_text(table: DataTable, row: str, column: str) -> str:
    value = table.get_cell(row, column)
    return value.plain if isinstance(value, Text) else str(value)


def table_devices(table: DataTable) -> list[str]:
    return [table.coordinate_to_cell_key((i, 0))[0].value for i in range(table.row_count)]


# ---------------------------------------------------------------------- pure helpers
@pytest.mark.parametrize(
    ("text", "seconds"),
    [("600", 600), ("600s", 600), ("10m", 600), ("1.5h", 5400), ("10 min", 600), ("ten", None), ("", None)],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("fraction", "expected"), [(0.0, "    "), (1.0, "████"), (0.5, "██  "), (2.0, "████"), (0.125 / 4 * 4, "▌   ")]
)
def test_bar(fraction: float, expected: str) -> None:
    assert bar(fraction, 4) == expected


def test_status_has_a_word_and_a_symbol_not_only_colour() -> None:
    palette = Palette()
    for status, word in [("ok", "OK"), ("warning", "WARN"), ("critical", "CRIT"), ("stale", "STALE")]:
        text = status_text(status, palette).plain
        assert word in text and not text.startswith(word)
    assert score_text(None, 0.5, "ok", palette).plain.strip() == "—"
    assert fmt_value(None) == "—" and fmt_value(35012.4) == "35,012" and fmt_value(0.3512) == "0.351"


def test_filter_language() -> None:
    from itap_engine.snapshot import DeviceRow

    row = DeviceRow("pump-003", "industrial", "north", "RUN", {}, 0.9, 0.5, "critical", 0)
    assert Filter.parse("critical").matches_device(row)
    assert Filter.parse("pump-00 profile:industrial").matches_device(row)
    assert Filter.parse("sev:critical site:north").matches_device(row)
    assert not Filter.parse("aircraft").matches_device(row)
    assert not Filter.parse("status:ok").matches_device(row)
    assert Filter.parse("").matches_device(row)
    # the words on screen (✖ CRIT, ▲ WARN) find what they show
    assert Filter.parse("CRIT").matches_device(row) and Filter.parse("status:crit").matches_device(row)
    assert not Filter.parse("warn").matches_device(row)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("score>nan", "compare a name with a number"),
        ("temp_c>", "compare a name with a number"),
        ("score>1e400", "is not a finite number"),
    ],
)
def test_a_broken_comparison_is_an_error_not_an_empty_table(text: str, error: str) -> None:
    """'score>nan', 'temp_c>' and 'score>1e400' were taken as words to search for (or
    an infinite limit) and showed "No device matches" (fresh-eyes review)."""
    with pytest.raises(FilterError, match=error):
        Filter.parse(text, keys=("device", "profile"), numbers=("score", "temp_c"))


# ---------------------------------------------------------------------- fleet
async def test_fleet_table_and_status_line() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert isinstance(app.screen, FleetScreen)
        table = app.screen.query_one(DeviceTable)
        assert table.row_count == 10
        # worst first: the critical device, then the warning one
        assert table_devices(table)[:2] == ["pump-007", "pump-004"]
        assert cell_text(table, "pump-007", "status") == "✖ CRIT"
        assert "temp_c" in cell_text(table, "pump-001", "signals")
        status = app.screen.query_one(EngineStatus).render()
        assert "LIVE" in str(status) and "sim 2026-01-01 06:00:10" in str(status)
        assert "industrial v3" in str(status)


async def test_at_120_columns_every_fleet_column_fits_without_scrolling_sideways() -> None:
    """At 120 columns (a common terminal) the fleet table was 125 wide: the Profile column
    was cut to "industri" above a horizontal scrollbar. A unit the signal's name already
    says is not repeated (``altitude_ft 35,131``, not ``35,131 ft``) and the injected-fault
    column is headed "Fault", the key that injects one."""
    app = ItapApp(FakeFacade(devices=25))  # pumps and aircraft (the widest key signals)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        table = app.screen.query_one(DeviceTable)
        await wait_for(pilot, lambda: not table._widen_scheduled)
        await pilot.pause()
        assert table.max_scroll_x == 0, (table.virtual_size.width, table.scrollable_content_region.width)
        lines = [str(line.text) for line in app.screen._compositor.render_strips()]
        assert any(line.rstrip().endswith("industrial") for line in lines)
        assert any(line.rstrip().endswith("aircraft") and "altitude_ft " in line for line in lines)
        assert "temp_c" in cell_text(table, "pump-001", "signals") and "°C" in cell_text(table, "pump-001", "signals")


async def test_markup_in_data_is_shown_literally() -> None:
    facade = FakeFacade(devices=6, extra_devices=(MARKUP_ID,))
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        table = app.screen.query_one(DeviceTable)
        assert cell_text(table, MARKUP_ID, "device") == MARKUP_ID
        panel = app.screen.query_one(ValidationPanel)
        assert any(MARKUP_ID in cell_text(panel, key.value, "device") for key in panel.rows)
        # drill into it: header, and the quarantined CSV row holding markup, stay literal
        table.move_cursor(row=table.get_row_index(MARKUP_ID))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DeviceScreen) and app.screen.detail is not None)
        await pilot.pause()
        assert MARKUP_ID in str(app.screen.query_one("#device-header").render())
        quarantine = app.screen.query_one("#quarantine", KeyedTable)
        raw = quarantine.get_cell_at((0, 3))
        assert MARKUP_ID in raw.plain


async def test_live_updates_change_cells_in_place_and_keep_the_cursor(monkeypatch: pytest.MonkeyPatch) -> None:
    facade = FakeFacade(devices=20)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        table = app.screen.query_one(DeviceTable)
        cleared: list[bool] = []
        added: list[object] = []
        monkeypatch.setattr(table, "clear", lambda *a, **k: cleared.append(True))
        original_add = table.add_row
        monkeypatch.setattr(table, "add_row", lambda *a, **k: added.append(k.get("key")) or original_add(*a, **k))
        await pilot.press("s", "s")  # sort by device id: a stable order
        await pilot.press("down", "down", "down")
        under = table.cursor_device
        before = cell_text(table, under, "signals")
        updates = table.updates
        await tick(pilot, facade, 2)
        assert table.cursor_device == under
        assert cell_text(table, under, "signals") != before
        assert table.updates > updates
        assert not cleared and not added
        # sorted by score, rows move but the cursor stays on its device
        await pilot.press("s", "s", "s", "s")  # back to status (5 sorts)
        await pilot.press("down")
        under = table.cursor_device
        await tick(pilot, facade, 3)
        assert table.cursor_device == under


async def test_sort_cycles_columns() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        table = app.screen.query_one(DeviceTable)
        summary = app.screen.query_one("#fleet-summary")
        assert "sort: status" in str(summary.render())
        await pilot.press("s")
        assert "sort: score" in str(summary.render())
        scores = [float(cell_text(table, d, "score").split()[0]) for d in table_devices(table)]
        assert scores == sorted(scores, reverse=True)
        await pilot.press("s")
        assert table_devices(table) == sorted(table_devices(table))
        await pilot.press("s")
        assert "sort: profile" in str(summary.render())
        assert table_devices(table)[0].startswith("ac-")


async def test_filter_then_clear() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        table = app.screen.query_one(DeviceTable)
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"aircraft", "enter")
        assert table_devices(table) == ["ac-001", "ac-002"]
        assert app.focused is table
        assert "filter: aircraft (2 shown)" in str(app.screen.query_one("#fleet-summary").render())
        await tick(pilot, facade)
        assert table.row_count == 2
        await pilot.press("slash", "escape")
        assert table.row_count == 10


async def test_a_filter_that_hides_the_cursors_device_puts_the_cursor_on_its_first_match() -> None:
    """The cursor stays on its device while the device is shown; when a new filter hides
    it, the cursor goes to the first match (and the view to the top). It went to the
    row at the same index, clamped: the last match, at the bottom of the list."""
    facade = FakeFacade(devices=60)  # 12 aircraft, 48 pumps
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        table = app.screen.query_one(DeviceTable)
        await pilot.press(*["down"] * 30)
        assert table.cursor_device is not None and table.cursor_device.startswith("pump-")
        await pilot.press("slash", *"ac-", "enter")
        assert table.row_count == 12
        assert table.cursor_row == 0 and table.cursor_device == table_devices(table)[0]
        assert table.scroll_y == 0
        await pilot.press("down", "down")
        under = table.cursor_device
        await pilot.press("slash", *"0", "enter")  # "ac-0": the cursor's device still shown
        assert table.cursor_device == under


# ---------------------------------------------------------------------- help, palette, navigation
async def test_help_lists_every_binding() -> None:
    facade = FakeFacade(devices=6)
    app = ItapApp(facade)
    async with app.run_test(size=(100, 60)) as pilot:
        await ready(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        entries = app.screen.entries()
        text = "\n".join(f"{keys} {description}" for _, keys, description in entries)
        for bindings in (
            ItapApp.BINDINGS,
            FleetScreen.BINDINGS,
            AnomaliesScreen.BINDINGS,
            DeviceScreen.BINDINGS,
            FaultModal.BINDINGS,
        ):
            for binding in bindings:
                assert (binding.tooltip or binding.description) in text, binding.description
        keys = {keys for _, keys, _ in entries}
        for key in ("?", "/", "s", "enter", "esc", "f", "a", "p", "r", "ctrl+p", "q"):
            assert any(key in k.split(", ") for k in keys), key
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)


async def test_number_keys_switch_screens() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("2")
        assert isinstance(app.screen, AnomaliesScreen)
        await pilot.press("1")
        assert isinstance(app.screen, FleetScreen)
        await pilot.press("2", "escape")
        assert isinstance(app.screen, FleetScreen)


async def test_command_palette_runs_the_same_actions() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"Anomalies")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, AnomaliesScreen))
        titles = [command.title for command in app.get_system_commands(app.screen)]
        for title in (
            "Fleet",
            "Drill down",
            "Filter",
            "Sort",
            "Inject fault",
            "Acknowledge alert",
            "Pause live updates",
            "Retrain",
            "Help",
            "Quit",
        ):
            assert title in titles


# ---------------------------------------------------------------------- anomalies
async def test_anomalies_ranked_filtered_and_drill_down() -> None:
    facade = FakeFacade(devices=20)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("2")
        table = app.screen.query_one(AnomalyTable)
        scores = [float(table.get_cell_at((i, 2)).plain) for i in range(table.row_count)]
        assert scores == sorted(scores, reverse=True)
        assert table.get_cell_at((0, 1)).plain == "pump-007"
        assert "temp_c" in table.get_cell_at((0, 5)).plain
        await pilot.press("slash", *"warning", "enter")
        assert [table.get_cell_at((i, 1)).plain for i in range(table.row_count)] == ["pump-004"]
        await pilot.press("slash", "escape")
        await pilot.press("s")
        assert "sort: severity" in str(app.screen.query_one("#anomalies-summary").render())
        await pilot.press("s", "s", "s")
        table.move_cursor(row=0)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DeviceScreen) and app.screen.detail is not None)
        assert app.screen.device_id == "pump-007"
        await pilot.press("escape")
        assert isinstance(app.screen, AnomaliesScreen)


async def test_acknowledge_from_anomalies_and_fleet() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("2")
        table = app.screen.query_one(AnomalyTable)
        table.move_cursor(row=0)
        await pilot.press("a")
        await wait_for(pilot, lambda: ("acknowledge", (1,)) in facade.calls)
        await wait_for(pilot, lambda: "✓" in table.get_cell("alert-1", "severity").plain)
        await pilot.press("1")
        fleet = app.screen.query_one(DeviceTable)
        fleet.move_cursor(row=fleet.get_row_index("pump-004"))
        await pilot.press("a")
        await wait_for(pilot, lambda: ("acknowledge", (2,)) in facade.calls)
        # nothing to acknowledge on a healthy device: a warning, no call
        fleet.move_cursor(row=fleet.get_row_index("pump-001"))
        calls = len(facade.calls)
        await pilot.press("a")
        await pilot.pause()
        assert len(facade.calls) == calls


async def test_a_closed_alert_is_shown_closed_and_not_counted_open() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert "incidents: 2 open, 2 unacknowledged" in str(app.screen.query_one("#fleet-summary").render())
        facade.alerts[1] = replace(facade.alerts[1], status="closed")  # pump-007's critical alert
        await tick(pilot, facade)
        assert "incidents: 1 open, 1 unacknowledged" in str(app.screen.query_one("#fleet-summary").render())
        await pilot.press("2")
        table = app.screen.query_one(AnomalyTable)
        assert cell_text(table, "alert-1", "severity") == "○ CRIT closed"
        assert cell_text(table, "alert-2", "severity") == "▲ WARN"
        rows = [table.coordinate_to_cell_key((i, 0))[0].value for i in range(table.row_count)]
        assert rows[-1] == "alert-1", "closed alerts come after open alerts and readings"
        summary = str(app.screen.query_one("#anomalies-summary").render())
        assert "incidents: 1 open, 1 unacknowledged" in summary and "1 recently closed" in summary


# ---------------------------------------------------------------------- fault injection
async def test_inject_fault_through_the_modal_then_see_the_alert() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        fleet = app.screen.query_one(DeviceTable)
        await pilot.press("home")
        while fleet.cursor_device != "pump-002":  # as the operator gets there
            await pilot.press("down")
        await pilot.press("f")
        assert isinstance(app.screen, FaultModal)
        options = app.screen.query_one(OptionList)
        assert [options.get_option_at_index(i).id for i in range(options.option_count)] == list(
            facade.latest().profiles["industrial"].faults
        )
        assert app.focused is options
        await pilot.press("enter")  # overheat_drift, on to severity
        assert app.focused.id == "fault-severity"
        await pilot.press(*"1.5", "tab")  # a field's text is selected on focus: typing replaces it
        await pilot.press(*"5m", "enter")
        await wait_for(pilot, lambda: any(c[0] == "inject_fault" for c in facade.calls))
        assert ("inject_fault", (("pump-002",), "overheat_drift", 1.5, 300.0)) in facade.calls
        assert isinstance(app.screen, FleetScreen)
        await wait_for(pilot, lambda: "overheat_drift" in cell_text(fleet, "pump-002", "fault"))
        await tick(pilot, facade, 3)
        assert "⚡ overheat_drift" in cell_text(fleet, "pump-002", "fault")
        assert cell_text(fleet, "pump-002", "status") in ("✖ CRIT ⚡", "▲ WARN ⚡")
        await wait_for(pilot, lambda: "ACTIVE" in cell_text(fleet, "pump-002", "fault"))
        await pilot.press("2")
        table = app.screen.query_one(AnomalyTable)
        devices = [table.get_cell_at((i, 1)).plain for i in range(table.row_count)]
        assert "pump-002" in devices
        row = devices.index("pump-002")
        assert table.get_cell_at((row, 0)).plain.split()[1] in ("CRIT", "WARN")


async def test_fault_modal_several_devices_validation_and_cancel() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("f")
        modal = app.screen
        assert isinstance(modal, FaultModal)
        devices = modal.query_one("#fault-devices", Input)
        devices.focus()
        await pilot.press("ctrl+a", "ctrl+k", *"pump-001, nope-9")
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, FaultModal)
        assert "Unknown device: nope-9" in str(modal.query_one("#fault-error").render())
        await pilot.press("ctrl+a", "ctrl+k", *"pump-001, ac-001")
        await pilot.pause()
        assert modal.query_one(OptionList).option_count == 1  # only sensor_dropout is shared
        await pilot.press("ctrl+a", "ctrl+k", *"pump-001,pump-003", "tab", "down", "ctrl+s")
        await wait_for(pilot, lambda: any(c[0] == "inject_fault" for c in facade.calls))
        assert ("inject_fault", (("pump-001", "pump-003"), "bearing_wear", 1.0, 600.0)) in facade.calls
        await pilot.press("f", "escape")
        assert isinstance(app.screen, FleetScreen)
        assert sum(1 for c in facade.calls if c[0] == "inject_fault") == 1


# ---------------------------------------------------------------------- device drill-down
async def test_device_screen_keys() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade, detail_refresh_s=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        fleet = app.screen.query_one(DeviceTable)
        fleet.move_cursor(row=fleet.get_row_index("pump-007"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DeviceScreen) and app.screen.detail is not None)
        screen = app.screen
        await pilot.pause()
        why = str(screen.query_one(ContributorsPanel).render())
        assert "temp_c" in why and "thermal" in why and "62%" in why
        alerts = screen.query_one("#alert-history", KeyedTable)
        assert alerts.row_count == 1
        header = lambda: str(screen.query_one("#device-header").render())  # noqa: E731
        assert "temp_c 2/5" in header()  # opens on the signal that drives the incident
        await pilot.press("n")
        assert " 3/5" in header()
        await pilot.press("N", "N")
        assert "rpm 1/5" in header()
        await pilot.press("w")
        await wait_for(pilot, lambda: ("device_detail", ("pump-007", 6 * 3600, None)) in facade.calls)
        assert "│ 6 h" in header()
        from textual.widgets import TabbedContent

        tabs = screen.query_one(TabbedContent)
        await pilot.press("h")  # t is time travel, here as everywhere
        assert tabs.active == "tab-faults"
        await pilot.press("h")
        assert tabs.active == "tab-quarantine"
        await pilot.press("a")
        await wait_for(pilot, lambda: ("acknowledge", (1,)) in facade.calls)
        await pilot.press("f")
        assert isinstance(app.screen, FaultModal)
        assert app.screen.query_one("#fault-devices", Input).value == "pump-007"
        await pilot.press("escape", "escape")
        assert isinstance(app.screen, FleetScreen)


# ---------------------------------------------------------------------- pause, retrain, quit, bootstrap
async def test_pause_and_resume() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: facade.paused)
        status = app.screen.query_one(EngineStatus)
        assert "PAUSED" in str(status.render()) and status.has_class("-paused")
        table = app.screen.query_one(DeviceTable)
        before = cell_text(table, "pump-001", "signals")
        await tick(pilot, facade)
        assert cell_text(table, "pump-001", "signals") == before  # the screen holds still
        await pilot.press("p")
        await wait_for(pilot, lambda: not facade.paused)
        await pilot.pause()
        assert cell_text(table, "pump-001", "signals") != before
        assert "LIVE" in str(status.render())


async def test_retrain() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        messages: list[str] = []
        notify = app.notify
        app.notify = lambda message, *args, **kwargs: (messages.append(str(message)), notify(message, *args, **kwargs))[
            1
        ]  # type: ignore[method-assign]
        await pilot.press("r")
        await wait_for(pilot, lambda: ("retrain", (None,)) in facade.calls)
        # the message names the new versions (the header shows them from the next tick)
        await wait_for(pilot, lambda: any("Retrained: " in m for m in messages))
        [message] = [m for m in messages if "Retrained: " in m]
        assert "industrial v4" in message and "aircraft v3" in message, message
        await tick(pilot, facade)
        assert "industrial v4" in str(app.screen.query_one(EngineStatus).render())


async def test_quit_stops_the_engine() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("q")
        await wait_for(pilot, lambda: facade.stopped)
        await pilot.pause(0.1)
    assert app.return_value == 0
    assert app.engine_stopped
    assert not app.engine.alive


class _HeldBootstrap(FakeFacade):
    """Bootstraps only once ``release`` is set (a timed bootstrap could end before the
    keys below on a loaded machine, and the test failed so)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.release = threading.Event()

    async def start(self, progress=None) -> None:  # type: ignore[no-untyped-def]
        if progress is not None:
            progress(Progress("simulate history", 0.25, "step 1"))
        while not self.release.is_set():
            await asyncio.sleep(0.01)
        await super().start(progress)


async def test_bootstrap_shows_progress_then_the_fleet() -> None:
    facade = _HeldBootstrap(devices=10, bootstrap_steps=4, bootstrap_delay=0.05)
    app = ItapApp(facade)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BootstrapScreen))
        await wait_for(pilot, lambda: "25%" in str(app.screen.query_one("#bootstrap-stage").render()))
        # the UI answers keys while the engine bootstraps
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, BootstrapScreen)
        facade.release.set()
        await ready(pilot)
        assert isinstance(app.screen, FleetScreen)


class _Broken(FakeFacade):
    async def start(self, progress=None) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("database is locked by [bold]another[/] process")


async def test_start_failure_is_explained_and_q_quits() -> None:
    app = ItapApp(_Broken(devices=3))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BootstrapScreen) and app.screen.failed)
        assert "[bold]another[/]" in str(app.screen.query_one("#bootstrap-stage").render())
        await pilot.press("q")
        await pilot.pause(0.2)
    assert app.return_value == 1


async def test_usable_at_80x24() -> None:
    facade = FakeFacade(devices=30)
    app = ItapApp(facade)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        table = app.screen.query_one(DeviceTable)
        assert table.size.height >= 10
        assert app.screen.query_one(ValidationPanel).size.height >= 3
        await pilot.press("pagedown", "down")
        await tick(pilot, facade)
        assert table.cursor_row > 10


# ---------------------------------------------------------------------- end to end: the real engine
REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def small_console_config(folder, tick_seconds: float = 0.3):  # type: ignore[no-untyped-def]
    """3 pumps and an aircraft, 1.5 h of history, no random faults, fast ticks (robust-z detector)."""
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
        engine={"tick_seconds": tick_seconds, "sim_speed": 100.0, "retrain_minutes": 600, "housekeeping_minutes": 600},
    )


@pytest.mark.slow
async def test_end_to_end_with_the_local_facade(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Bootstrap an empty database, inject a fault from the modal, see its alert, drill down, quit."""
    from itap_engine.config import load_settings
    from itap_engine.facade.local import LocalFacade

    settings = load_settings(small_console_config(tmp_path / "site"))
    facade = LocalFacade(settings)
    app = ItapApp(facade, detail_refresh_s=0.5)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BootstrapScreen))
        await wait_for(
            pilot,
            lambda: app.start_error is not None or (app.snapshot is not None and isinstance(app.screen, FleetScreen)),
            timeout=180,
        )
        assert app.start_error is None
        fleet = app.screen.query_one(DeviceTable)
        # The first snapshot is rendered on the next refresh after the screen appears.
        await wait_for(pilot, lambda: fleet.row_count > 0, timeout=30)
        assert sorted(table_devices(fleet)) == ["ac-001", "pump-001", "pump-002", "pump-003"]
        await pilot.press("home")
        while fleet.cursor_device != "pump-002":  # as the operator gets there
            await pilot.press("down")
        await pilot.press("f")
        assert isinstance(app.screen, FaultModal)
        await pilot.press("down", "down", "enter")  # power_spike
        await pilot.press(*"3", "tab", *"10m", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, FleetScreen))
        await wait_for(pilot, lambda: "power_spike" in cell_text(fleet, "pump-002", "fault"), timeout=30)
        await wait_for(pilot, lambda: "ACTIVE" in cell_text(fleet, "pump-002", "fault"), timeout=60)
        await pilot.press("2")
        anomalies = app.screen.query_one(AnomalyTable)

        def alert_row() -> int | None:
            for index in range(anomalies.row_count):
                if (
                    anomalies.get_cell_at((index, 1)).plain == "pump-002"
                    and "READING" not in anomalies.get_cell_at((index, 0)).plain
                ):
                    return index
            return None

        await wait_for(pilot, lambda: alert_row() is not None, timeout=120)
        anomalies.move_cursor(row=alert_row())
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: isinstance(app.screen, DeviceScreen) and app.screen.detail is not None, timeout=30
        )
        screen = app.screen
        assert screen.device_id == "pump-002"
        await wait_for(pilot, lambda: bool(screen.detail.contributors), timeout=30)
        why = str(screen.query_one(ContributorsPanel).render())
        assert screen.detail.contributors[0].signal in why
        assert any(f.fault == "power_spike" for f in screen.detail.faults)
        await pilot.press("escape", "escape")
        assert isinstance(app.screen, FleetScreen)
        await pilot.press("q")
        await wait_for(pilot, lambda: app.engine_stopped, timeout=60)
    assert app.return_value == 0


async def test_at_80_columns_the_header_keeps_the_models_and_the_device_footer_shows_help() -> None:
    """The old header cut "model aircraft v1 ·" at 80 columns (the industrial model's
    version was lost) and the device screen's footer ended before "? Help"."""
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await tick(pilot, facade)
        status = app.screen.query_one(EngineStatus)
        header = str(status.render())
        models = " · ".join(f"{name} v{v}" for name, v in sorted(app.snapshot.stats.model_versions.items()))
        assert models and header.endswith(models) and len(header) <= status.content_region.width
        await pilot.resize_terminal(160, 40)
        await pilot.pause()
        assert "rows/s" in str(app.screen.query_one(EngineStatus).render())
        await pilot.resize_terminal(80, 24)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DeviceScreen))
        await pilot.pause()
        keys = [b.description for _, b, _, _ in app.screen.active_bindings.values() if b.show]
        assert keys.index("Help") <= 2, keys  # shown before the screen's own keys fill 80 columns
