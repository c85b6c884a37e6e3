"""The fleet: every device live, validation problems, and the engine's state."""

from __future__ import annotations

import time

from rich.text import Text
from textual import on
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from itap_engine.snapshot import Snapshot
from itap_tui.filtering import DEVICE_KEYS, Filter, why_empty
from itap_tui.format import STATUS_STYLE, fit_parts
from itap_tui.screens.base import LiveScreen
from itap_tui.widgets import DeviceTable, EngineStatus, FilterBar, ValidationPanel
from itap_tui.widgets.device_table import SORTS, sort_label

FLEET_FILTER_EXAMPLES = ("crit|warn", "!ok", "profile:aircraft", "score>0.5")
"""The placeholder's examples; a test checks that each matches a device of the demo fleet."""


class FleetScreen(LiveScreen):
    """Device table, validation log and status line."""

    BINDINGS = [
        Binding(
            "slash",
            "filter",
            "Filter",
            tooltip="Filter devices: id, profile, status, state or key:value",
            priority=True,
        ),
        Binding("escape", "clear_filter", "Clear filter", show=False, tooltip="Clear the filter applied with /"),
        Binding("s", "sort", "Sort", tooltip="Cycle the sort: status, score, device, profile, state"),
        Binding("S", "reverse_sort", "Reverse", show=False, tooltip="Reverse the sort order"),
        Binding("o", "resort", "Re-sort", show=False, tooltip="Re-sort now (the order holds still while you move)"),
        Binding("a", "acknowledge", "Ack", tooltip="Acknowledge the highlighted device's open incident"),
        Binding(
            "u",
            "unacknowledge",
            "Undo ack",
            show=False,
            tooltip="Undo the acknowledgement of the highlighted device's incident",
        ),
        Binding(
            "A",
            "acknowledge_all",
            "Ack all",
            show=False,
            tooltip="Acknowledge the incidents of every device the filter shows",
        ),
        Binding(
            "m",
            "mute",
            "Mute",
            show=False,
            tooltip="Mute (snooze) the highlighted device for a period: no new incident",
        ),
        Binding(
            "M",
            "maintenance",
            "Maintenance",
            show=False,
            tooltip="A maintenance window on the highlighted device from now (2h, optional reason; 0 ends it)",
        ),
        Binding("N", "note", "Note", show=False, tooltip="Write a short note on the highlighted device's incident"),
        Binding("2", "app.anomalies", "Alerts", tooltip="Open alerts and top anomalous readings"),
        Binding(
            "v",
            "focus_validation",
            "Validation",
            show=False,
            tooltip="Focus the validation panel (scroll with arrows); v again: the table",
        ),
    ]

    resort_idle_s = 5.0
    """A tick re-sorts the table only when the cursor has not moved for this long."""

    def __init__(self) -> None:
        super().__init__(id="fleet")
        self.filter = Filter()
        self.sort_index = 0
        self.sort_reverse = False
        self._resort = True

    def compose(self) -> ComposeResult:
        examples = ", ".join(f"'{e}'" for e in FLEET_FILTER_EXAMPLES)
        yield EngineStatus(id="engine-status")
        yield Static(id="fleet-summary")
        yield FilterBar(
            f"device, profile, status, !not, a|b, signal>N… e.g. {examples}",
            self._filter_changed,
            keys=DEVICE_KEYS,
            numbers=self._numbers,
            id="fleet-filter",
        )
        yield Static(id="fleet-empty", classes="empty-why")
        yield DeviceTable(id="devices")
        yield ValidationPanel(id="validation")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(DeviceTable).focus()

    @property
    def table(self) -> DeviceTable:
        return self.query_one(DeviceTable)

    def _numbers(self) -> set[str]:
        """Names ``name>N`` compares: the score and every profile's signals."""
        names = {"score"}
        snapshot = self.itap.snapshot
        if snapshot is not None:
            for info in snapshot.profiles.values():
                names.update(signal.lower() for signal in info.signals)
        return names

    def render_snapshot(self, snapshot: Snapshot) -> None:
        table = self.table
        idle = time.monotonic() - table.last_moved >= self.resort_idle_s
        table.sync(
            snapshot,
            self.palette,
            flt=self.filter,
            sort=SORTS[self.sort_index][0],
            reverse=self.sort_reverse,
            marks=self.itap.fault_marks,
            reorder=self._resort or idle,
            now=self._resort,  # a key (sort, filter, o) asked: plan it at once
        )
        self._resort = False
        if table.last_moved == float("-inf") and table.row_count and table.cursor_row != 0:
            # not navigated yet: the highlight (and f, enter, a) stays on the top row
            # rather than following the device that happened to be first at start
            table.move_cursor(row=0, animate=False)
        self.query_one(ValidationPanel).show(snapshot.validation_problems, self.palette)

    @on(DeviceTable.ViewChanged, "#devices")
    def _view_changed(self, event: DeviceTable.ViewChanged) -> None:
        snapshot = self.itap.snapshot
        if snapshot is None:
            return
        shown = event.table.row_count
        self._summary(snapshot, shown)
        self._empty(snapshot, shown)

    def _empty(self, snapshot: Snapshot, shown: int) -> None:
        """Say why the table is empty instead of showing nothing."""
        why = self.query_one("#fleet-empty", Static)
        if shown or not snapshot.devices:
            why.set_class(False, "-shown")
            return
        counts: dict[str, int] = {}
        for row in snapshot.devices:
            word = STATUS_STYLE.get(row.status, ("", row.status, ""))[1].lower()
            counts[word] = counts.get(word, 0) + 1
        why.update(Text(why_empty(self.filter, len(snapshot.devices), counts)))
        why.set_class(True, "-shown")

    def _summary(self, snapshot: Snapshot, shown: int) -> None:
        counts = self.table.view.counts
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        short = Text(no_wrap=True, overflow="ellipsis", end="")  # 80 columns: the symbols say it
        text.append(f"{sum(counts.values())} devices", style="bold")
        short.append(f"{sum(counts.values())} devices", style="bold")
        for status in ("critical", "warning", "stale", "untrained", "ok"):
            if counts.get(status):
                symbol, word, colour = STATUS_STYLE[status]
                text.append("  ")
                text.append(f"{symbol} {counts[status]} {word}", style=getattr(self.palette, colour))
                short.append(" ")
                short.append(f"{symbol}{counts[status]}", style=getattr(self.palette, colour))
        incidents = snapshot.open_incidents()
        parts: list[tuple[Text, int, Text | None]] = [
            (text, 0, short),
            (Text(f"incidents: {incidents.label()}", style="bold" if incidents.unacknowledged else "dim"), 2, None),
            (Text(f"sort: {sort_label(self.sort_index, self.sort_reverse)}", style="dim"), 1, None),
        ]
        if self.filter:
            filtered = Text(f"filter: {self.filter.describe()} ({shown} shown)", style=f"bold {self.palette.accent}")
            parts.append((filtered, 0, None))
        summary = self.query_one("#fleet-summary", Static)
        # one line high (CSS): no layout pass, which at 10k devices cost a full repaint per view
        width = summary.content_region.width or self.app.size.width - 2  # before the first layout
        summary.update(fit_parts(parts, width), layout=False)

    def _rerender(self) -> None:
        """The same snapshot under a new sort or filter: the table, not the status line
        (its update would cost a layout pass: a full repaint, at 10k devices 40-70 ms)."""
        if self.itap.snapshot is not None:
            self.render_snapshot(self.itap.snapshot)

    # ------------------------------------------------------------------ actions
    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    def action_clear_filter(self) -> None:
        """``esc`` with a filter applied clears it (what the empty table's hint says);
        without one, ``esc`` goes on to the app (back to live from a past time)."""
        if not self.filter:
            raise SkipAction()
        self.query_one(FilterBar).reset()

    def _filter_changed(self, flt: Filter) -> None:
        self.filter = flt
        self._resort = True
        self._rerender()

    def action_sort(self) -> None:
        self.sort_by(SORTS[(self.sort_index + 1) % len(SORTS)][0])

    def sort_by(self, column: str, reverse: bool = False) -> None:
        """Sort by ``column`` (a key of :data:`SORTS`) now."""
        self.sort_index = next(i for i, (key, _) in enumerate(SORTS) if key == column)
        self.sort_reverse = reverse
        self._resort = True
        self._rerender()
        # the toast after the sorted table's frame: mounting it takes a layout pass
        self.call_after_refresh(self.notify, f"Sorted by {sort_label(self.sort_index, self.sort_reverse)}", timeout=2)

    def action_reverse_sort(self) -> None:
        self.sort_by(SORTS[self.sort_index][0], not self.sort_reverse)

    def action_resort(self) -> None:
        self._resort = True
        self._rerender()

    @on(DataTable.HeaderSelected, "#devices")
    def _header(self, event: DataTable.HeaderSelected) -> None:
        """A click on a column's header sorts by it; a second click reverses."""
        column = event.column_key.value
        if column in dict(SORTS):
            same = SORTS[self.sort_index][0] == column
            self.sort_by(column, not self.sort_reverse if same else False)

    def action_focus_validation(self) -> None:
        """``v`` moves to the validation panel, and ``v`` again back to the table."""
        panel = self.query_one(ValidationPanel)
        if panel.has_focus_within:
            self.table.focus()
        else:
            panel.focus()

    def action_acknowledge(self) -> None:
        device = self.table.cursor_device
        if device is not None:
            self.itap.acknowledge_device(device)

    def action_unacknowledge(self) -> None:
        device = self.table.cursor_device
        if device is not None:
            self.itap.unacknowledge(self.itap.device_incident(device))

    def action_acknowledge_all(self) -> None:
        snapshot = self.itap.snapshot
        if snapshot is None:
            return
        shown = {row.device_id for row in snapshot.devices if self.filter.matches_device(row)}
        what = f"the filter '{self.filter.describe()}'" if self.filter else "the fleet"
        self.itap.acknowledge_all((a for a in snapshot.anomalies if a.device_id in shown), what)

    def action_mute(self) -> None:
        self.itap.ask_mute(self.table.cursor_device)

    def action_maintenance(self) -> None:
        self.itap.ask_maintenance(self.table.cursor_device)

    def action_note(self) -> None:
        device = self.table.cursor_device
        self.itap.ask_note(self.itap.device_incident(device) if device else None)

    def action_drill(self) -> None:
        device = self.table.cursor_device
        if device is not None:
            self.itap.open_device(device)

    @on(DataTable.RowSelected, "#devices")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_drill()

    def export_records(self) -> tuple[str, list]:  # type: ignore[type-arg]
        """The fleet as shown (filter, order), or the validation problems when focused."""
        from itap_tui.export import fleet_records, problem_records

        snapshot = self.itap.snapshot
        if snapshot is None:
            return "fleet", []
        if self.query_one(ValidationPanel).has_focus:
            return "validation-problems", problem_records(snapshot.validation_problems)
        view = self.table.view
        return "fleet", fleet_records([view.rows[d] for d in view.order], dict(view.silenced))

    def selected_devices(self) -> list[str]:
        device = self.table.cursor_device
        return [device] if device else []
