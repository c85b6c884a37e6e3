"""Console keys that must do what the screen says they do."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest
from test_tui import ready, table_devices, tick
from textual.widget import Widget

from itap_bench.fake_facade import FakeFacade
from itap_tui.app import ItapApp
from itap_tui.screens import FleetScreen
from itap_tui.widgets import DeviceTable, FilterBar, ValidationPanel, device_table


async def test_esc_clears_an_applied_filter_as_the_hint_says() -> None:
    """After ``/aircraft`` and enter the table has the focus; ``esc`` there clears the
    filter (the empty-table hint says "esc clears the filter"), and the input is empty
    the next time ``/`` opens it."""
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        fleet = app.screen
        assert isinstance(fleet, FleetScreen)
        table = fleet.query_one(DeviceTable)
        await pilot.press("slash", *"aircraft", "enter")
        await pilot.pause()
        assert table_devices(table) == ["ac-001", "ac-002"] and app.focused is table
        await pilot.press("escape")
        await pilot.pause()
        assert not fleet.filter
        assert table.row_count == 10
        assert "filter:" not in str(fleet.query_one("#fleet-summary").render())
        await tick(pilot, facade)
        assert table.row_count == 10  # the next snapshot does not bring the filter back
        await pilot.press("slash")
        from textual.widgets import Input

        assert isinstance(app.focused, Input) and app.focused.value == ""
        await pilot.press("escape")
        # a filter that matches nothing: the hint names esc, and esc brings the fleet back
        await pilot.press("slash", *"nosuchdevice", "enter")
        await pilot.pause()
        assert table.row_count == 0
        assert "esc clears the filter" in str(fleet.query_one("#fleet-empty").render())
        await pilot.press("escape")
        await pilot.pause()
        assert table.row_count == 10 and app.screen is fleet


async def test_a_typed_filter_reaches_the_table_in_the_turn_the_input_changed() -> None:
    """The filter bar hands each typed filter to the screen as the input's value
    changes, not by a message: a message reached the screen after the frame that
    showed the typed character, so at 10,000 devices every filter keystroke cost a
    second frame (15-30 ms) before the table followed."""
    from textual.widgets import Input

    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        fleet = app.screen
        assert isinstance(fleet, FleetScreen)
        table = fleet.query_one(DeviceTable)
        await pilot.press("slash")
        field = fleet.query_one("#fleet-filter Input", Input)
        field.value = "aircraft"  # no await: nothing else has run
        assert fleet.filter.describe() == "aircraft"
        assert table_devices(table) == ["ac-001", "ac-002"]
        field.value = "aircraft:"  # cannot apply: the error shows, the last good filter stays
        assert fleet.filter.describe() == "aircraft" and fleet.query_one(FilterBar).error
        await pilot.press("escape")
        assert not fleet.filter and table.row_count == 10


async def test_the_running_console_keeps_full_garbage_collections_rare_and_restores_them_on_exit() -> None:
    """Once the engine has started, what exists is frozen out of garbage collections
    and full collections wait for GC_FULL_EVERY younger ones (a full collection holds
    the GIL: at 10,000 devices 80-180 ms every few ticks, and a key pressed then
    waited). On exit both are undone, so a process that goes on is as before."""
    import gc

    from itap_tui.app import GC_FULL_EVERY

    before = gc.get_threshold()
    assert before[2] != GC_FULL_EVERY
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (before[0], before[1], GC_FULL_EVERY)
        await pilot.press("q")
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


@contextlib.contextmanager
def layout_requests() -> Iterator[list[str]]:
    """The widgets (class names) that ask for a layout pass meanwhile."""
    asked: list[str] = []
    original = Widget.refresh

    def refresh(widget: Widget, *regions, **options):  # type: ignore[no-untyped-def]
        if options.get("layout"):
            asked.append(type(widget).__name__)
        return original(widget, *regions, **options)

    Widget.refresh = refresh  # type: ignore[method-assign]
    try:
        yield asked
    finally:
        Widget.refresh = original  # type: ignore[method-assign]


async def settle(pilot, quiet: int = 3, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until nothing asks for a layout pass for ``quiet`` pauses in a row: the
    footer rebuilds itself after a focus change at its own pace, which on a busy
    machine can fall after the screen looks ready."""
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < quiet:
        if time.monotonic() > deadline:
            raise AssertionError("the screen kept asking for layout passes")
        with layout_requests() as asked:
            await pilot.pause(0.05)
        streak = 0 if asked else streak + 1


async def test_a_new_snapshot_redraws_without_a_layout_pass() -> None:
    """A snapshot changes the header line, the summary and the table, all of fixed
    size: none of them asks for a layout pass, which repaints every widget on the
    screen (the header line did, at every tick)."""
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await settle(pilot)
        with layout_requests() as asked:
            before = str(app.screen.query_one("#engine-status").render())
            await tick(pilot, facade, 3)
            after = str(app.screen.query_one("#engine-status").render())
        assert before != after  # the header line did change
        assert asked == []


async def test_a_filter_keystroke_redraws_without_a_layout_pass_unless_a_scrollbar_goes() -> None:
    """Typing a filter changes the input's text width and the table's row count:
    neither asks for a layout pass (a repaint of every widget) while the scrollbars
    stay; a filter that leaves fewer rows than the screen holds takes the vertical
    scrollbar away, and that one lays the screen out again."""
    facade = FakeFacade(devices=120)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        fleet = app.screen
        table = fleet.query_one(DeviceTable)
        assert table.show_vertical_scrollbar
        await pilot.press("slash")
        await settle(pilot)
        with layout_requests() as asked:
            await pilot.press(*"pump")
            await pilot.pause()
            assert 40 < table.row_count < 120 and table.show_vertical_scrollbar
            assert asked == []
            await pilot.press(*"-00")  # pump-001 .. pump-009: they fit
            await pilot.pause()
        assert table.row_count < 10 and not table.show_vertical_scrollbar
        assert "DeviceTable" in asked
        assert table.virtual_size.height == table.row_count + table.header_height


async def test_a_filter_error_shows_what_was_typed_as_text_not_markup() -> None:
    """The error quotes the typed key; ``[bold]x:`` is shown as typed, not as a bold x."""
    app = ItapApp(FakeFacade(devices=10))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("slash", *"[bold]x:y")
        await pilot.pause()
        bar = app.screen.query_one(FilterBar)
        assert "[bold]x" in bar.error
        assert "[bold]x" in str(bar.query_one(".filter-error").render())


async def test_a_filter_keystroke_leaves_the_validation_panel_alone() -> None:
    """A filter or sort key shows the same snapshot again: the validation panel's
    problems are the ones shown, so it is not redrawn (setting its subtitle repainted
    it at every key, widening the frame to the bottom of the screen)."""
    app = ItapApp(FakeFacade(devices=120))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        panel = app.screen.query_one(ValidationPanel)
        assert panel.row_count  # the fake fleet has problems to show
        await pilot.press("slash")
        await settle(pilot)
        repaints: list[object] = []
        original = panel.refresh

        def refresh(*regions, **options):  # type: ignore[no-untyped-def]
            repaints.append(options)
            return original(*regions, **options)

        panel.refresh = refresh  # type: ignore[method-assign]
        await pilot.press(*"pump", "backspace")
        await pilot.pause()
        assert app.screen.query_one(DeviceTable).row_count < 120  # the keys did filter
        assert repaints == []


async def test_a_planned_view_waits_for_the_frame_being_prepared(monkeypatch: pytest.MonkeyPatch) -> None:
    """A view planned in the worker thread is shown only once the screen has painted
    what was pending (a key's cursor move): shown at once, it made that frame redraw
    every row on screen, and the key waited for it. Here each plan ends with a repaint
    asked for on the loop (as a key does meanwhile)."""
    facade = FakeFacade(devices=60)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        table = app.screen.query_one(DeviceTable)
        table.inline_rows = 0  # every snapshot planned in the worker, as at 10,000 devices
        plan = device_table.plan_view

        def plan_then_a_key_moves(previous, request):  # type: ignore[no-untyped-def]
            view = plan(previous, request)
            app.call_from_thread(table.refresh)  # returns once the loop has run it
            return view

        monkeypatch.setattr(device_table, "plan_view", plan_then_a_key_moves)
        pending_when_shown: list[int] = []
        show = table._show

        def shown(view):  # type: ignore[no-untyped-def]
            pending_when_shown.append(len(app.screen._dirty_widgets))
            return show(view)

        table._show = shown  # type: ignore[method-assign]
        for _ in range(5):
            await tick(pilot, facade)
        assert len(pending_when_shown) >= 5
        assert set(pending_when_shown) == {0}
