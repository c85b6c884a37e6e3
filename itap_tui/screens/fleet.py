"""The fleet: every device live, validation problems, and the engine's state."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from itap_engine.snapshot import Snapshot
from itap_tui.filtering import Filter
from itap_tui.format import STATUS_STYLE
from itap_tui.screens.base import LiveScreen
from itap_tui.widgets import DeviceTable, EngineStatus, FilterBar, ValidationLog
from itap_tui.widgets.device_table import SORTS, sort_key


class FleetScreen(LiveScreen):
    """Device table, validation log and status line."""

    BINDINGS = [
        Binding("slash", "filter", "Filter", tooltip="Filter devices: id, profile, status, state or key:value"),
        Binding("s", "sort", "Sort", tooltip="Cycle the sort: status, score, device, profile, state"),
        Binding("a", "acknowledge", "Ack", tooltip="Acknowledge the highlighted device's open alert"),
        Binding("2", "app.anomalies", "Alerts", tooltip="Open alerts and top anomalous readings"),
        Binding("v", "focus_validation", "Validation", show=False, tooltip="Focus the validation panel (scroll with arrows)"),
    ]

    def __init__(self) -> None:
        super().__init__(id="fleet")
        self.filter = Filter()
        self.sort_index = 0

    def compose(self) -> ComposeResult:
        yield EngineStatus(id="engine-status")
        yield Static(id="fleet-summary")
        yield FilterBar("device, profile, status… e.g. 'critical' or 'profile:aircraft pump-01'", id="fleet-filter")
        yield DeviceTable(id="devices")
        yield ValidationLog(id="validation")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(DeviceTable).focus()

    @property
    def table(self) -> DeviceTable:
        return self.query_one(DeviceTable)

    def render_snapshot(self, snapshot: Snapshot) -> None:
        rows = [row for row in snapshot.devices if self.filter.matches_device(row)]
        rows.sort(key=sort_key(SORTS[self.sort_index][0]))
        self.table.sync(rows, snapshot.profiles, self.palette, self.itap.fault_marks)
        self.query_one(ValidationLog).add_alerts(snapshot.validation_alerts, self.palette)
        self._summary(snapshot, len(rows))

    def _summary(self, snapshot: Snapshot, shown: int) -> None:
        counts: dict[str, int] = {}
        for row in snapshot.devices:
            counts[row.status] = counts.get(row.status, 0) + 1
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        text.append(f"{len(snapshot.devices)} devices", style="bold")
        for status in ("critical", "warning", "stale", "untrained", "ok"):
            if counts.get(status):
                symbol, word, colour = STATUS_STYLE[status]
                text.append("  ")
                text.append(f"{symbol} {counts[status]} {word}", style=getattr(self.palette, colour))
        open_alerts = sum(1 for a in snapshot.anomalies if a.alert_id is not None and a.status == "open" and not a.acknowledged)
        text.append(f"  │ {open_alerts} open alerts", style="bold" if open_alerts else "dim")
        text.append(f"  │ sort: {SORTS[self.sort_index][1]}", style="dim")
        if self.filter:
            text.append(f"  │ filter: {self.filter.describe()} ({shown} shown)", style=f"bold {self.palette.accent}")
        self.query_one("#fleet-summary", Static).update(text)

    def _rerender(self) -> None:
        if self.itap.snapshot is not None:
            self.show_snapshot(self.itap.snapshot)

    # ------------------------------------------------------------------ actions
    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    @on(FilterBar.Changed)
    def _filter_changed(self, event: FilterBar.Changed) -> None:
        self.filter = event.filter
        self._rerender()

    def action_sort(self) -> None:
        self.sort_index = (self.sort_index + 1) % len(SORTS)
        self._rerender()
        self.notify(f"Sorted by {SORTS[self.sort_index][1]}", timeout=2)

    def action_focus_validation(self) -> None:
        self.query_one(ValidationLog).focus()

    def action_acknowledge(self) -> None:
        device = self.table.cursor_device
        if device is not None:
            self.itap.acknowledge_device(device)

    def action_drill(self) -> None:
        device = self.table.cursor_device
        if device is not None:
            self.itap.open_device(device)

    @on(DataTable.RowSelected, "#devices")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_drill()

    def selected_devices(self) -> list[str]:
        device = self.table.cursor_device
        return [device] if device else []
