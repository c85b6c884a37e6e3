"""A DataTable kept in step with a keyed list of rows, cell by cell."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

from itap_tui.widgets.navigation import NAV_BINDINGS


class KeyedTable(DataTable):
    """``sync(rows)`` adds, updates (only changed cells) and removes rows by key."""

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
