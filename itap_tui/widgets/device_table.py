"""The live fleet table, updated in place from snapshots.

Rows are keyed by device id and columns by name. Each snapshot updates only the cells
whose text changed (``update_cell``), adds rows for devices that appear and removes
rows for devices that disappear (or are filtered out); it never clears the table. The
cursor stays on the same device across updates and re-sorts.

While the operator moves the cursor the row order holds still: :meth:`DeviceTable.sync`
re-sorts only when asked (``reorder=True``); otherwise rows keep their places and new
devices are added at the end. :attr:`DeviceTable.last_moved` tells the screen when
the operator last moved.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from itap_engine.safe_text import visible
from itap_engine.snapshot import DeviceRow, ProfileInfo
from itap_tui.format import STATUS_RANK, Palette, score_text, signals_text, status_text
from itap_tui.widgets.navigation import NAV_BINDINGS

COLUMNS: tuple[tuple[str, str], ...] = (
    ("device", "Device"),
    ("status", "Status"),
    ("score", "Score"),
    ("state", "State"),
    ("signals", "Key signals"),
    ("fault", "Injected"),
    ("profile", "Profile"),
)

SORTS: tuple[tuple[str, str], ...] = (
    ("status", "status ↓"),
    ("score", "score ↓"),
    ("device", "device ↑"),
    ("profile", "profile ↑"),
    ("state", "state ↑"),
)
"""The ``s`` key cycles through these (column key, label); ``S`` reverses."""


def sort_label(index: int, reverse: bool) -> str:
    label = SORTS[index][1]
    if reverse:
        label = label.replace("↓", "↥").replace("↑", "↓").replace("↥", "↑")
    return label


def sort_key(column: str):  # type: ignore[no-untyped-def]
    """A key function over :class:`DeviceRow` for a sort column."""
    if column == "status":
        return lambda r: (-STATUS_RANK.get(r.status, 0), -(r.score or 0.0), r.device_id)
    if column == "score":
        return lambda r: (-(r.score if r.score is not None else -1.0), r.device_id)
    if column == "profile":
        return lambda r: (r.profile, r.device_id)
    if column == "state":
        return lambda r: (r.state or "", r.device_id)
    return lambda r: r.device_id


class DeviceTable(DataTable):
    """One row per device; see the module docstring for how updates work."""

    BINDINGS = [Binding("enter", "select_cursor", "Open", show=True), *NAV_BINDINGS]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.fixed_columns = 1
        self.last_moved = float("-inf")
        """``time.monotonic()`` of the operator's last cursor move."""
        self._cells: dict[str, tuple[object, ...]] = {}
        self._order: list[str] = []
        self._widths: dict[str, int] = {}
        self.updates = 0
        """Cells rewritten in total (tests read it)."""

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def _moved(self) -> None:
        self.last_moved = time.monotonic()

    def action_cursor_up(self) -> None:
        self._moved()
        super().action_cursor_up()

    def action_cursor_down(self) -> None:
        self._moved()
        super().action_cursor_down()

    def action_page_up(self) -> None:
        self._moved()
        super().action_page_up()

    def action_page_down(self) -> None:
        self._moved()
        super().action_page_down()

    def action_scroll_top(self) -> None:
        self._moved()
        super().action_scroll_top()

    def action_scroll_bottom(self) -> None:
        self._moved()
        super().action_scroll_bottom()

    async def _on_click(self, event) -> None:  # type: ignore[no-untyped-def]
        self._moved()
        await super()._on_click(event)

    @property
    def cursor_device(self) -> str | None:
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return row_key.value

    def _render_row(
        self,
        row: DeviceRow,
        profile: ProfileInfo | None,
        palette: Palette,
        mark: tuple[str, str] | None,
        silenced: tuple[int, str] | None = None,
    ) -> tuple[tuple[object, ...], list[Text]]:
        names = profile.key_signals if profile else tuple(row.values)[:3]
        units = profile.units if profile else {}
        values = tuple(None if row.values.get(n) is None else round(row.values[n] or 0.0, 3) for n in names)
        fault = row.injected_fault or (mark[0] if mark else None)
        state = mark[1] if mark and mark[0] == fault else ""
        score = None if row.score is None else round(row.score, 2)
        quiet = silenced[1].split(":")[0] if silenced else ""
        signature = (
            row.device_id,
            (row.status, bool(fault), quiet),
            (score, row.status),
            row.state,
            values,
            (fault, state),
            row.profile,
        )
        fault_text = Text(end="")
        if fault:
            fault_text.append("⚡ ", style=f"bold {palette.warning}")
            fault_text.append(fault)
            if state:
                fault_text.append(f" {state}", style="bold" if state == "ACTIVE" else "dim")
        status_cell = status_text(row.status, palette)
        if fault:
            status_cell.append(" ⚡", style=f"bold {palette.warning}")
        if quiet:
            status_cell.append(f" {quiet}", style="dim italic")  # muted or maintenance: no new incident
        cells = [
            Text(visible(row.device_id), style="bold", end=""),
            status_cell,
            score_text(row.score, row.threshold, row.status, palette),
            Text(visible(row.state or "—"), end=""),
            signals_text(row.values, names, units),
            fault_text,
            Text(row.profile, end=""),
        ]
        return signature, cells

    def sync(
        self,
        rows: Sequence[DeviceRow],
        profiles: Mapping[str, ProfileInfo],
        palette: Palette,
        marks: Mapping[str, tuple[str, str]] | None = None,
        force: bool = False,
        reorder: bool = True,
        silenced: Mapping[str, tuple[int, str]] | None = None,
    ) -> None:
        """Make the table show ``rows``, touching only what changed.

        ``reorder`` puts the rows in the given order; without it rows already shown
        keep their places and new ones go at the end (the operator is navigating).
        ``marks`` maps a device to (fault, state) for faults this console injected;
        the state (sent, pending, ACTIVE) is shown next to the fault's name.
        """
        marks = marks or {}
        keep = self.cursor_device
        wanted = {row.device_id for row in rows}
        for device in [d for d in self._cells if d not in wanted]:
            self.remove_row(device)
            del self._cells[device]
        column_keys = [key for key, _ in COLUMNS]
        for row in rows:
            signature, cells = self._render_row(
                row, profiles.get(row.profile), palette, marks.get(row.device_id), (silenced or {}).get(row.device_id)
            )
            old = self._cells.get(row.device_id)
            if old is None:
                self.add_row(*cells, key=row.device_id)
                for key, cell in zip(column_keys, cells, strict=True):
                    self._widths[key] = max(self._widths.get(key, 0), cell.cell_len)
            elif force or old != signature:
                for index, (key, cell) in enumerate(zip(column_keys, cells, strict=True)):
                    if force or old[index] != signature[index]:
                        # Re-measuring a column walks every row: only when this cell is
                        # wider than anything the column has shown.
                        wider = cell.cell_len > self._widths.get(key, 0)
                        if wider:
                            self._widths[key] = cell.cell_len
                        self.update_cell(row.device_id, key, cell, update_width=wider)
                        self.updates += 1
            self._cells[row.device_id] = signature
        order = [row.device_id for row in rows]
        if not reorder:
            shown = [device for device in self._order if device in wanted]
            placed = set(shown)
            order = shown + [device for device in order if device not in placed]
        if order != self._order:
            rank = {visible(device): index for index, device in enumerate(order)}  # the cell shows visible(id)
            self.sort("device", key=lambda cell: rank[cell.plain])
            self._order = order
        if keep is not None and keep in self._cells:
            index = self.get_row_index(keep)
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False)
