"""The fleet table at 10,000 devices: virtual rows, the same keys and semantics.

The table stores no rows: it shows a view (order, rows) planned off the event loop
for large fleets. These tests drive the real app over a 10,000-device fake fleet.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.segment import Segment
from test_tui import ready, tick, wait_for
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.widgets import DataTable
from textual.widgets._data_table import RowKey

from itap_bench.fake_facade import PROFILES, FakeFacade
from itap_engine.snapshot import DeviceRow
from itap_tui.app import ItapApp
from itap_tui.format import Palette
from itap_tui.widgets import DeviceTable
from itap_tui.widgets.device_table import row_cells, row_widths, sort_key

FLEET = 10_000


async def _settled(pilot, table: DeviceTable, seq: int | None = None) -> None:  # type: ignore[no-untyped-def]
    """Until the table shows the app's snapshot (or ``seq``) under the screen's choices."""
    app = pilot.app

    def done() -> bool:
        wanted = seq if seq is not None else (app.snapshot.seq if app.snapshot else 0)
        return table.settled and table.view.seq >= wanted

    await wait_for(pilot, done, timeout=240)
    await pilot.pause()


async def _big(pilot) -> DeviceTable:  # type: ignore[no-untyped-def]
    await ready(pilot)
    table = pilot.app.screen.query_one(DeviceTable)
    await wait_for(pilot, lambda: table.row_count == FLEET, timeout=240)
    await _settled(pilot, table)
    return table


async def test_the_cursor_stays_on_its_device_across_ticks_and_end_goes_to_the_last() -> None:
    facade = FakeFacade(devices=FLEET)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await _big(pilot)
        assert table.inline_rows < FLEET  # planned off the event loop
        await pilot.press("s")  # by score: every tick reorders the fleet
        await _settled(pilot, table)
        wanted = [r.device_id for r in sorted(app.snapshot.devices, key=sort_key("score"))]
        assert table.shown_devices() == wanted
        await pilot.press("pagedown", "pagedown", "down", "down")
        assert table.cursor_row > 30
        under, order = table.cursor_device, table.shown_devices()
        before = table.get_cell(under, "signals").plain
        seq = facade.advance(2).seq
        await _settled(pilot, table, seq)
        assert table.cursor_device == under  # on its device,
        assert table.shown_devices() == order  # the order held still while navigating,
        assert table.get_cell(under, "signals").plain != before  # its cells live
        assert table.updates > 0
        await pilot.press("end")
        assert table.cursor_row == FLEET - 1 and table.cursor_device == order[-1]
        await pilot.press("g")
        assert table.cursor_row == 0 and table.cursor_device == order[0]
        await pilot.press("G", "k", "k")
        assert table.cursor_device == order[-3]
        # the visible lines are the rows at the scroll position
        top = int(table.scroll_y)
        assert top > FLEET - 50
        assert table.render_line(table.header_height).text.split()[0] == order[top]


async def test_a_filter_and_its_export_at_ten_thousand(tmp_path: Path) -> None:
    facade = FakeFacade(devices=FLEET)
    app = ItapApp(facade, export_dir=tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await _big(pilot)
        await pilot.press("slash", *"ac-00", "enter")
        await _settled(pilot, table)
        expected = {r.device_id for r in app.snapshot.devices if "ac-00" in r.device_id}
        assert 0 < table.row_count == len(expected)
        assert set(table.shown_devices()) == expected
        await pilot.press("end")
        assert table.cursor_device == table.shown_devices()[-1]
        seq = facade.advance().seq
        await _settled(pilot, table, seq)
        assert set(table.shown_devices()) == expected
        await pilot.press("e")
        await wait_for(pilot, lambda: app.last_export is not None)
        rows = list(csv.DictReader(app.last_export.open()))
        assert [r["device_id"] for r in rows] == table.shown_devices()
        await pilot.press("slash", "escape")
        await _settled(pilot, table)
        assert table.row_count == FLEET


async def test_cells_are_drawn_as_datatable_draws_them() -> None:
    """The table's own cell drawing equals DataTable's generic one, segment for segment."""
    app = ItapApp(FakeFacade(devices=30, extra_devices=("[bold red]x[/]", "pompé-🚀")))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        table = app.screen.query_one(DeviceTable)
        await pilot.press("down", "down")
        style = table.rich_style
        for row in range(min(table.row_count, 12)):
            for column in range(len(table.columns)):
                width = table.ordered_columns[column].get_render_width(table)
                for cursor in (False, True):
                    ours = table._render_cell(row, column, style, width, cursor=cursor)
                    table._update_count += 1  # no cache shared between the two
                    theirs = DataTable._render_cell(table, row, column, style, width, cursor=cursor)
                    assert list(Segment.simplify(ours[0])) == list(Segment.simplify(theirs[0])), (row, column)


async def test_lines_are_drawn_as_datatable_draws_them() -> None:
    """The table's own line of a row (its per-frame shortcuts and its line cache kept
    across views) equals DataTable's, segment for segment: rows under and off the
    cursor and the hover, before and after a tick, a sort and a theme change."""
    facade = FakeFacade(devices=30, extra_devices=("[bold red]x[/]", "pompé-🚀"))
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        table = app.screen.query_one(DeviceTable)

        def compare() -> None:
            style = table.rich_style
            table._pseudo_class_state = table.get_pseudo_class_state()
            for hover, shown in ((Coordinate(0, 0), False), (Coordinate(3, 2), True), (Coordinate(4, 0), False)):
                table._show_hover_cursor = shown
                for row in range(min(table.row_count, 12)):
                    key = RowKey(table.cursor_device if row == table.cursor_row else table.view.order[row])
                    ours = table._render_line_in_row(key, 0, style, table.cursor_coordinate, hover)
                    table._update_count += 1  # no cache shared between the two
                    theirs = DataTable._render_line_in_row(table, key, 0, style, table.cursor_coordinate, hover)
                    assert [list(Segment.simplify(cell)) for part in ours for cell in part] == [
                        list(Segment.simplify(cell)) for part in theirs for cell in part
                    ], (row, hover)

        await pilot.press("down", "down")
        compare()
        await tick(pilot, facade)
        compare()
        await pilot.press("s")
        await _settled(pilot, table)
        compare()
        await pilot.press("ctrl+t")
        await pilot.pause()
        compare()


rows = st.builds(
    DeviceRow,
    device_id=st.text(min_size=1, max_size=12),
    profile=st.sampled_from([*PROFILES, "unknown"]),
    site=st.none(),
    state=st.none() | st.text(max_size=6),
    values=st.fixed_dictionaries(
        {},
        optional={
            name: st.none() | st.floats(-1e7, 1e7, allow_nan=False)
            for name in ("temp_c", "vibration_g", "current_a", "altitude_ft", "speed_kt", "heading_deg", "rpm")
        },
    ),
    score=st.none() | st.floats(-5, 500, allow_nan=False),
    threshold=st.none() | st.floats(0, 2, allow_nan=False),
    status=st.sampled_from(["ok", "warning", "critical", "stale", "untrained", "odd"]),
    last_ts=st.none(),
    injected_fault=st.none() | st.sampled_from(["overheat_drift", "speed_spike"]),
)


@settings(max_examples=150, deadline=None)
@given(
    rows,
    st.none() | st.tuples(st.sampled_from(["overheat_drift", "bearing_wear"]), st.sampled_from(["sent", "ACTIVE"])),
    st.none() | st.tuples(st.integers(0, 9), st.sampled_from(["muted", "maintenance: crew"])),
)
def test_column_widths_are_measured_without_building_the_cells(row, mark, silenced) -> None:  # type: ignore[no-untyped-def]
    profile = PROFILES.get(row.profile)
    cells = row_cells(row, profile, Palette(), mark, silenced)
    assert row_widths(row, profile, mark, silenced) == tuple(cell.cell_len for cell in cells)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 3), min_size=2, max_size=5), st.sampled_from(["", "crit|warn", "ac", "!ok", "score>0.4"])
)
def test_a_view_planned_from_the_last_equals_one_planned_afresh(steps, text) -> None:  # type: ignore[no-untyped-def]
    """Reusing the previous view (changed rows only, the filter's old answers) shows
    what planning from nothing would: the same rows, matches and, when sorted, order."""
    from itap_engine.snapshot.diff import mark_changes
    from itap_tui.filtering import Filter
    from itap_tui.widgets.device_table import ViewRequest, plan_view

    facade = FakeFacade(devices=40)
    flt = Filter.parse(text)
    view = None
    previous = None
    for step in steps:
        snapshot = facade.advance(step + 1) if step else facade._latest or facade.advance()
        if step == 3:
            facade.muted["pump-002"] = (10**15, "muted")
        snapshot = (
            mark_changes(previous, snapshot) if previous is not None and previous.seq < snapshot.seq else snapshot
        )
        request = ViewRequest(snapshot, flt, "score", False, True)
        view = plan_view(view, request)
        fresh = plan_view(None, request)
        assert view.order == fresh.order
        assert {d for d, m in view.matches.items() if m} == {d for d, m in fresh.matches.items() if m}
        assert view.counts == fresh.counts
        previous = snapshot


async def test_the_next_pages_are_drawn_ahead_so_a_page_key_only_places_them() -> None:
    """Over ``inline_rows`` devices, the rows PageDown and PageUp would show are drawn
    while the loop is idle; after PageDown only the cursor's row is drawn anew, and the
    lines are DataTable's (compared in the tests above)."""
    facade = FakeFacade(devices=FLEET, interval=3600.0)  # no tick during the test
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await _big(pilot)
        height = table.scrollable_content_region.height - table.header_height
        below = table.view.order[height : 2 * height]

        def drawn_ahead() -> bool:
            # the frame as drawing would find it now (the columns may have widened
            # for the rows drawn ahead: then they are drawn ahead again)
            plain = table._frame_context(table.rich_style)["plain"]
            return not table._widen_scheduled and all(any(key[0] == device for key in plain) for device in below)

        await wait_for(pilot, drawn_ahead, timeout=120)
        built: list[str] = []
        plain_row = table._plain_row

        def counting(device, *args, **kwargs):  # type: ignore[no-untyped-def]
            built.append(device)
            return plain_row(device, *args, **kwargs)

        table._plain_row = counting  # type: ignore[method-assign]
        await pilot.press("pagedown")
        await pilot.pause()
        table.refresh()
        await pilot.pause()
        assert table.cursor_device in below
        # of the rows now on screen only the cursor's was drawn anew (the rows built
        # meanwhile are the next pages', drawn ahead again)
        assert set(built) & set(below) <= {table.cursor_device}, built
        await pilot.press("pageup")


# ---------------------------------------------------------------------- keys re-plan over columns
@settings(max_examples=80, deadline=None)
@given(
    st.integers(0, 3),
    st.sampled_from(["status", "score", "device", "profile", "state"]),
    st.booleans(),
    st.sampled_from(["", "crit|warn", "ac", "!ok", "score>0.4", "profile:aircraft !run", "temp_c>68.5"]),
)
def test_a_keys_replan_equals_the_row_by_row_definition(steps, column, reverse, text) -> None:  # type: ignore[no-untyped-def]
    """A sort or filter key re-plans the view shown (the same snapshot) over its
    columns; the order is ``sorted`` of the rows the filter matches, and the index
    maps each shown device to its row and nothing else."""
    from itap_tui.filtering import Filter
    from itap_tui.widgets.device_table import ViewRequest, plan_view

    facade = FakeFacade(devices=60)
    facade.advance(steps + 1)
    snapshot = facade.advance()
    shown = plan_view(None, ViewRequest(snapshot))
    flt = Filter.parse(text)
    view = plan_view(shown, ViewRequest(snapshot, flt, column, reverse, True))
    wanted = sorted((r for r in snapshot.devices if flt.matches_device(r)), key=sort_key(column), reverse=reverse)
    assert view.order == [r.device_id for r in wanted]
    assert dict(view.index) == {d: i for i, d in enumerate(view.order)}
    assert len(view.index) == len(view.order) and list(view.index) == view.order
    hidden = [r.device_id for r in snapshot.devices if not flt.matches_device(r)]
    for device in hidden:
        assert device not in view.index and view.index.get(device, -7) == -7
    assert view.index.get("no-such-device") is None and "no-such-device" not in view.index
    if flt:
        assert {d for d, m in view.matches.items() if m} == {r.device_id for r in wanted}


def test_a_key_replans_the_snapshot_shown_without_reading_its_rows_again(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The snapshot's rows are read into columns once (a tick's plan, in the worker);
    sort and filter keys on it reuse them: no per-row pass on the event loop."""
    from itap_tui.filtering import Filter
    from itap_tui.widgets import fleet_columns
    from itap_tui.widgets.device_table import ViewRequest, plan_view

    facade = FakeFacade(devices=3000)
    snapshot = facade.advance()
    view = plan_view(None, ViewRequest(snapshot))
    made: list[int] = []
    original = fleet_columns.FleetColumns.__init__

    def counting(self, rows, previous=None):  # type: ignore[no-untyped-def]
        made.append(len(rows))
        original(self, rows, previous)

    monkeypatch.setattr(fleet_columns.FleetColumns, "__init__", counting)
    for column, text in (("score", ""), ("device", ""), ("device", "ac"), ("state", "crit|warn"), ("status", "")):
        view = plan_view(view, ViewRequest(snapshot, Filter.parse(text), column, False, True))
    assert made == []  # the same snapshot: its columns again
    view = plan_view(view, ViewRequest(facade.advance(), Filter(), "status", False, True))
    assert made == [3000]  # a new snapshot: read once


async def test_the_cursor_keeps_its_device_across_sort_and_filter_keys_at_ten_thousand() -> None:
    facade = FakeFacade(devices=FLEET, interval=3600.0)  # no tick during the test
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await _big(pilot)
        await pilot.press("pagedown", "down", "down")
        device = table.cursor_device
        for key in ("s", "s", "s", "S"):
            await pilot.press(key)
            await _settled(pilot, table)
            assert table.cursor_device == device, key
            assert table.view.order[table.cursor_row] == device
        await pilot.press("slash", *device[:4], "enter")  # the filter still shows it
        await _settled(pilot, table)
        assert device in table.shown_devices() and table.cursor_device == device
        rows = [r for r in app.snapshot.devices if device[:4] in r.device_id]
        column, reverse = app.screen.table._choice[1], app.screen.table._choice[2]
        assert table.shown_devices() == [r.device_id for r in sorted(rows, key=sort_key(column), reverse=reverse)]


async def test_the_first_frame_after_a_sort_fits_the_rows_it_shows() -> None:
    """Over EXACT_WIDTH_ROWS devices no plan measures every row: the frame measures
    the rows it draws before drawing them, so a sort that brings a long cell on screen
    shows it whole in that same frame (not cut, then widened a frame later)."""
    from itap_tui.widgets.device_table import EXACT_WIDTH_ROWS

    long_id = "pump-" + "w" * 30
    facade = FakeFacade(devices=EXACT_WIDTH_ROWS + 500, interval=3600.0, extra_devices=(long_id,))
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        table = app.screen.query_one(DeviceTable)
        await wait_for(pilot, lambda: table.row_count == len(facade.device_ids) and table.settled, timeout=120)
        await pilot.pause()
        table.move_cursor(row=table.view.index[long_id])
        table._moved()  # the operator put the cursor there
        await pilot.pause()
        # forget every width measured or drawn so far (as if the long id had never been seen)
        table.view = replace(table.view, widths=(0,) * len(table.view.widths))
        for column in table.ordered_columns:
            column.content_width = column.label.cell_len
        table._drawn = [0] * len(table._drawn)
        table._cell_cache.clear()
        app.screen.sort_by("device")  # plans at once; the long id sorts last
        assert table.cursor_device == long_id
        table.scroll_to(y=max(0, table.cursor_row - 5), animate=False, immediate=True)
        table._styles_cache.clear()  # the frame draws every line
        lines = table.render_lines(Region(0, 0, table.size.width, table.size.height))
        assert any(long_id in line.text for line in lines)


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
async def test_row_lines_are_datatables_lines_scrolled_or_not(size: tuple[int, int]) -> None:
    """The table's own line of a data row (one Strip, segments joined; unscrolled,
    laid out without cropping the whole line) and its header line (kept across views)
    equal DataTable's ``_render_line``: scrolled sideways at 80 columns, where the
    columns are cut, and at 200, where a blank follows them."""
    app = ItapApp(FakeFacade(devices=30, extra_devices=("[bold red]x[/]", "pompé-🚀")))
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        table = app.screen.query_one(DeviceTable)
        await pilot.press("down", "down")
        style = table.rich_style
        table._pseudo_class_state = table.get_pseudo_class_state()
        for x1 in (0, 7, 25):
            for y in range(0, table.header_height + min(table.row_count, 15)):
                ours = table._render_line(y, x1, x1 + table.size.width, style)
                table._update_count += 1
                theirs = DataTable._render_line(table, y, x1, x1 + table.size.width, style)
                table._update_count += 1
                assert list(Segment.simplify(ours)) == list(Segment.simplify(theirs)), (x1, y)
                assert ours.cell_length == theirs.cell_length == table.size.width


async def test_a_changed_rows_cells_are_built_once_not_at_every_frame(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """After a tick changed every row, each row on screen has its cells built once per
    change: frames drawn after that build none. The cells are kept in Textual's
    LRUCache, whose ``set`` keeps a key's first value, so the cells of a row that had
    changed were built anew three times a line at every frame, each time a new
    version that the row's layout and line caches then missed."""
    from itap_tui.widgets import device_table

    facade = FakeFacade(devices=FLEET, interval=3600.0)  # ticks only when the test says
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await _big(pilot)
        before = table._version
        await _settled(pilot, table, facade.advance().seq)  # every device's row changed
        shown = table.view.order[: table.scrollable_content_region.height - table.header_height]

        def drawn() -> bool:  # the new rows drawn: each has cells built since the tick
            return all(table._versions.get(device, 0) > before for device in shown)

        table.refresh()
        await wait_for(pilot, drawn, timeout=30)
        await wait_for(pilot, lambda: not table._widen_scheduled, timeout=30)
        versions = {device: table._versions.get(device) for device in shown}
        built: list[str] = []
        cells = device_table.row_cells

        def counting(row, *args, **kwargs):  # type: ignore[no-untyped-def]
            built.append(row.device_id)
            return cells(row, *args, **kwargs)

        monkeypatch.setattr(device_table, "row_cells", counting)
        for _ in range(2):
            table.refresh()
            await pilot.pause()
        for device in shown:  # as the width check, the line and the layout each ask
            table._cells(device)
        assert not set(built) & set(shown), built
        assert {device: table._versions.get(device) for device in shown} == versions


async def test_the_tables_caches_hold_a_few_screens_not_the_fleet() -> None:
    """Every cached row is objects the garbage collector walks at each full collection
    (a pause on the event loop): paging through thousands of rows keeps a few screens."""
    from itap_tui.widgets.device_table import CACHED_ROWS

    facade = FakeFacade(devices=FLEET, interval=3600.0)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await _big(pilot)
        for _ in range(40):
            await pilot.press("pagedown")
            await pilot.pause(0.03)
        frame = table._frame_context(table.rich_style)
        assert len(table._cell_cache) <= CACHED_ROWS
        assert len(frame["plain"]) <= CACHED_ROWS and len(frame["rows"]) <= CACHED_ROWS
        assert table._line_cache.maxsize <= CACHED_ROWS


async def test_a_planned_view_leaves_no_snapshot_in_a_reference_cycle() -> None:
    """Views planned in a worker thread are freed as soon as a newer one replaces them.
    A finished Textual worker is a reference cycle (worker, task, context); when the
    worker held its job, every tick's snapshot and view (at 10,000 devices ~20,000
    objects) lived on until a full garbage collection, each collection longer for it."""
    import gc

    from itap_engine.snapshot import Snapshot
    from itap_tui.widgets.device_table import FleetView

    facade = FakeFacade(devices=40)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        table = app.screen.query_one(DeviceTable)
        table.inline_rows = 0  # every view planned in a worker, as for a large fleet
        gc.collect()
        gc.disable()
        try:
            for _ in range(3):
                seq = facade.advance().seq
                await _settled(pilot, table, seq)
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            leaked = [type(o).__name__ for o in gc.garbage if isinstance(o, Snapshot | FleetView)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
        assert table.view.seq >= seq and table.updates
        assert leaked == []
