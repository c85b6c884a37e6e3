"""Open alerts, top anomalous readings and recently closed alerts, ranked, updated in place.

Rows are keyed by alert id (``alert-12``) or, for a reading that opened no alert, by
device and time (``reading-pump-003-1767247210000``).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from itap_engine.safe_text import visible
from itap_engine.snapshot import AnomalyRow
from itap_tui.format import SEVERITY_RANK, Palette, contributors_text, fmt_ts, severity_text
from itap_tui.widgets.navigation import NAV_BINDINGS

COLUMNS: tuple[tuple[str, str], ...] = (
    ("severity", "Severity"),
    ("device", "Device"),
    ("score", "Score"),
    ("time", "Time (sim)"),
    ("family", "Family"),
    ("signals", "Top signals"),
    ("profile", "Profile"),
)

SORTS: tuple[tuple[str, str], ...] = (
    ("score", "score ↓"),
    ("severity", "severity ↓"),
    ("time", "time ↓"),
    ("device", "device ↑"),
)


def row_key(row: AnomalyRow) -> str:
    if row.alert_id is not None:
        return f"alert-{row.alert_id}"
    return f"reading-{row.device_id}-{row.ts}"


def sort_key(column: str):  # type: ignore[no-untyped-def]
    """Closed alerts always come after the open ones and the readings."""
    if column == "severity":
        return lambda r: (r.status == "closed", -SEVERITY_RANK.get(r.severity, 0), r.acknowledged, -r.score)
    if column == "time":
        return lambda r: (r.status == "closed", -r.ts, -r.score)
    if column == "device":
        return lambda r: (r.status == "closed", r.device_id, -r.score)
    return lambda r: (r.status == "closed", -r.score, r.device_id)


class _KeyedText(Text):
    """Cell text that remembers its row key, so ``DataTable.sort`` can rank rows."""

    def __init__(self, row_key: str, text: str) -> None:
        super().__init__(visible(text), style="bold", end="")
        self.row_key = row_key


class AnomalyTable(DataTable):
    """Ranked anomalies; ``enter`` opens the device."""

    BINDINGS = [Binding("enter", "select_cursor", "Open", show=True), *NAV_BINDINGS]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._cells: dict[str, tuple[object, ...]] = {}
        self._order: list[str] = []
        self.rows_by_key: dict[str, AnomalyRow] = {}

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    @property
    def cursor_anomaly(self) -> AnomalyRow | None:
        if not self.row_count:
            return None
        try:
            key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return self.rows_by_key.get(key.value or "")

    def sync(self, rows: Sequence[AnomalyRow], palette: Palette) -> None:
        keep = self.cursor_anomaly
        keep_key = row_key(keep) if keep else None
        wanted = {row_key(r): r for r in rows}
        for key in [k for k in self._cells if k not in wanted]:
            self.remove_row(key)
            del self._cells[key]
        column_keys = [key for key, _ in COLUMNS]
        for key, row in wanted.items():
            contributors = tuple((c.signal, round(c.share, 2)) for c in row.contributors[:3])
            signature = (
                (row.severity, row.acknowledged, row.status),
                row.device_id,
                round(row.score, 3),
                row.ts,
                row.family,
                contributors,
                row.profile,
            )
            cells = [
                severity_text(row.severity, palette, row.acknowledged, closed=row.status == "closed"),
                _KeyedText(key, row.device_id),
                Text(f"{row.score:.3f}", end=""),
                Text(fmt_ts(row.ts), end=""),
                Text(visible(row.family or "—"), end=""),
                contributors_text(row.contributors) if row.contributors else Text("—", style="dim"),
                Text(row.profile, end=""),
            ]
            old = self._cells.get(key)
            if old is None:
                self.add_row(*cells, key=key)
            elif old != signature:
                for index, column in enumerate(column_keys):
                    if old[index] != signature[index]:
                        self.update_cell(key, column, cells[index])
            self._cells[key] = signature
        self.rows_by_key = wanted
        order = [row_key(r) for r in rows]
        if order != self._order:
            rank = {key: index for index, key in enumerate(order)}
            self.sort("device", key=lambda cell: rank.get(getattr(cell, "row_key", ""), 0))
            self._order = order
        if keep_key is not None and keep_key in wanted:
            index = self.get_row_index(keep_key)
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False)
