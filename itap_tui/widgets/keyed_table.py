"""A DataTable kept in step with a keyed list of rows, cell by cell."""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.widgets import DataTable

from itap_tui.widgets.navigation import NAV_BINDINGS
from itap_tui.widgets.one_line import one_line


class KeyedTable(DataTable):
    """``sync(rows)`` adds, updates (only changed cells) and removes rows by key.

    A cell is drawn as :func:`~itap_tui.widgets.one_line.one_line` draws it: a table
    redraws every cell on screen after any update (the validation panel's few rows
    cost 4 ms a tick through Rich's generic layout)."""

    BINDINGS = NAV_BINDINGS

    def __init__(self, columns: Sequence[tuple[str, str]], *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._columns = tuple(columns)
        self._plain: dict[str, tuple[str, ...]] = {}

    def on_mount(self) -> None:
        for key, label in self._columns:
            self.add_column(label, key=key)

    def sync(self, rows: Sequence[tuple[str, Sequence[Text]]]) -> None:
        wanted = dict(rows)
        for key in [k for k in self._plain if k not in wanted]:
            self.remove_row(key)
            del self._plain[key]
        for key, cells in rows:
            plain = tuple(f"{cell.plain}|{cell.style}" for cell in cells)
            old = self._plain.get(key)
            if old is None:
                self.add_row(*cells, key=key)
            elif old != plain:
                for index, (column, _) in enumerate(self._columns):
                    if old[index] != plain[index]:
                        self.update_cell(key, column, cells[index])
            self._plain[key] = plain

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> list[list[Segment]]:
        """DataTable's cell, for a one-line row's ``Text`` cell drawn by :func:`one_line`,
        cached under DataTable's own key; the rest (header, labels, taller rows, what only
        Rich can lay out) DataTable's way."""
        row_key = self._row_locations.get_key(row_index) if row_index >= 0 else None
        column_key = self._column_locations.get_key(column_index) if column_index >= 0 else None
        row = self.rows.get(row_key) if row_key is not None and column_key is not None else None
        cell = self._data[row_key].get(column_key) if row is not None and row.height == 1 else None  # type: ignore[index]
        if not isinstance(cell, Text):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        cache_key = (
            row_key,
            column_key,
            base_style,
            cursor,
            hover,
            self._show_hover_cursor,
            self._update_count,
            self._pseudo_class_state,
        )
        lines = self._cell_render_cache.get(cache_key)
        if lines is not None:
            return lines
        line = one_line(cell, width, self.cell_padding, self.app.console)
        if line is None:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        fixed = row_index < self.fixed_rows or column_index < self.fixed_columns
        component_style, post_style = self._get_styles_to_render_cell(
            False,
            False,
            fixed,
            hover,
            cursor,
            self.show_cursor,
            self._show_hover_cursor,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css",
        )
        pre_style = base_style + Style.from_meta({"row": row_index, "column": column_index}) + component_style
        lines = [list(Segment.apply_style(line, style=pre_style, post_style=post_style))]
        self._cell_render_cache[cache_key] = lines
        return lines
