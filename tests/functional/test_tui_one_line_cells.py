"""Tables draw one-line cells without Rich's generic layout (``one_line``), and must
draw them exactly as DataTable does: segment for segment, for every kind of Text a
cell holds, at the column's width and narrower and wider ones."""

from __future__ import annotations

import random

import pytest
from rich.console import Console
from rich.segment import Segment
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from itap_tui.widgets.keyed_table import KeyedTable

STYLES = ("", "bold", "dim", "red", "bold #ff8800", "italic underline", "reverse")
PIECES = ("a", "pump-01", "  ", "é", "🚀", "漢字", "[bold]x[/]", "0.42", " ", "—", "⚡")


def _spanned() -> Text:
    text = Text("⚡ ", style="bold yellow", end="")
    text.append("bearing")
    text.append(" ACTIVE", style="bold")
    return text


FIXED = (
    Text("plain", end=""),
    Text("bold base", style="bold", end=""),
    _spanned(),
    Text("42", justify="right", style="dim", end=""),
    Text("left", justify="left", style="italic", end=""),
    Text("pompé-🚀", end=""),
    Text("[bold red]x[/]", end=""),
    Text("", end=""),
    Text("a\tb", end=""),  # only Rich lays these out: drawn its way, the same
    Text("centre", justify="center", end=""),
    Text("trail  ", justify="right", end=""),
    Text("cut off here", overflow="ellipsis", end=""),
    Text("two\nlines", end=""),
)


def _random_text(rng: random.Random) -> Text:
    text = Text(style=rng.choice(STYLES), justify=rng.choice((None, None, "left", "right", "center")), end="")
    for _ in range(rng.randint(0, 4)):
        text.append(rng.choice(PIECES), style=rng.choice(STYLES) or None)
    return text


class _Tables(App[None]):
    def compose(self) -> ComposeResult:
        yield KeyedTable([("a", "A"), ("b", "B"), ("c", "C")], id="t")


async def test_keyed_table_cells_are_drawn_as_datatable_draws_them() -> None:
    rng = random.Random(7)
    cells = [*FIXED, *(_random_text(rng) for _ in range(240))]
    rows = [
        (f"r{i}", [cells[3 * i % len(cells)], cells[(3 * i + 1) % len(cells)], cells[(3 * i + 2) % len(cells)]])
        for i in range(len(cells) // 3 + 1)
    ]
    app = _Tables()
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.query_one(KeyedTable)
        table.sync(rows)
        await pilot.pause()
        table.move_cursor(row=1)
        style = table.rich_style
        compared = 0
        for row in range(table.row_count):
            for column in range(len(table.columns)):
                width = table.ordered_columns[column].get_render_width(table)
                for cells_wide in (width, max(0, width - 3), 2, width + 4):
                    for cursor in (False, True):
                        ours = table._render_cell(row, column, style, cells_wide, cursor=cursor)
                        table._update_count += 1  # no cache shared between the two
                        theirs = DataTable._render_cell(table, row, column, style, cells_wide, cursor=cursor)
                        table._update_count += 1
                        assert list(Segment.simplify(ours[0])) == list(Segment.simplify(theirs[0])), (
                            row,
                            column,
                            cells_wide,
                            repr(table.get_cell_at((row, column))),
                        )
                        compared += 1
        assert compared > 1500


async def test_an_updated_row_is_redrawn_without_richs_generic_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """After an update a table redraws every cell on screen (DataTable drops its cache):
    the cells' own drawing, not Rich's ``render_lines``, which only the header needs."""
    app = _Tables()
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.query_one(KeyedTable)
        rows = [
            (f"r{i}", [Text(f"pump-{i:02d}"), Text("open", style="bold"), Text(str(i), justify="right")])
            for i in range(8)
        ]
        table.sync(rows)
        await pilot.pause()
        drawn: list[object] = []
        original = Console.render_lines

        def render_lines(console: Console, renderable: object, *args: object, **kwargs: object) -> object:
            drawn.append(renderable)
            return original(console, renderable, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Console, "render_lines", render_lines)
        rows[3] = ("r3", [Text("pump-03"), Text("resolved", style="dim"), Text("4", justify="right")])
        table.sync(rows)
        await pilot.pause()
        texts = {piece.plain for piece in drawn if isinstance(piece, Text)}
        assert texts == {column.label.plain for column in table.columns.values()}  # the header, no cell


async def test_an_updated_cell_wider_than_its_column_widens_it() -> None:
    """A validation problem that resolves changes its State cell from "open" to
    "resolved 00:00:20": the panel showed "resol", since DataTable's ``update_cell``
    keeps the column's width unless told otherwise."""
    app = _Tables()
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.query_one(KeyedTable)
        table.sync([("r1", [Text("pump-01"), Text("open"), Text("1")])])
        await pilot.pause()
        narrow = table.ordered_columns[1].content_width
        table.sync([("r1", [Text("pump-01"), Text("resolved 00:00:20"), Text("1")])])
        await pilot.pause()
        assert table.ordered_columns[1].content_width >= len("resolved 00:00:20") > narrow
        line = table.render_line(1).text
        assert "resolved 00:00:20" in line, line


async def test_a_fleet_cell_with_a_line_break_is_drawn_escaped_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cell only Rich could lay out (a tab or a line break, say in a signal's name
    from data) is drawn on the row's one line with the characters escaped; drawing
    the table raised before."""
    from test_tui import ready

    from itap_bench.fake_facade import FakeFacade
    from itap_tui.app import ItapApp
    from itap_tui.widgets import DeviceTable, device_table

    cells = device_table.row_cells

    def hostile(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = cells(*args, **kwargs)
        out[4] = Text("temp\nc\t1", end="")
        return out

    monkeypatch.setattr(device_table, "row_cells", hostile)
    app = ItapApp(FakeFacade(devices=5))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        screen_text = "\n".join(str(line.text) for line in app.screen._compositor.render_strips())
        assert "temp\\x0ac\\x091" in screen_text  # escaped, as visible() escapes
        assert app.screen.query_one(DeviceTable).row_count == 5
