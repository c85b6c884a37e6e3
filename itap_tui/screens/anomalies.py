"""Open alerts and the most anomalous readings, ranked by score."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from itap_engine.safe_text import visible
from itap_engine.snapshot import Snapshot
from itap_tui.filtering import ANOMALY_KEYS, Filter, why_empty
from itap_tui.format import contributors_text, fit_parts, fmt_ts
from itap_tui.screens.base import LiveScreen
from itap_tui.widgets import AnomalyTable, EngineStatus, FilterBar
from itap_tui.widgets.anomaly_table import SORTS, sort_key

ANOMALY_FILTER_EXAMPLES = ("crit", "!ack", "thermal|mechanical", "score>0.5")
"""The placeholder's examples; a test checks each parses and matches the demo anomalies."""


class AnomaliesScreen(LiveScreen):
    """Ranked anomalies; filter by profile, severity or device; ``a`` acknowledges."""

    BINDINGS = [
        Binding("escape", "back", "Back", tooltip="Back to the fleet"),
        Binding(
            "slash", "filter", "Filter", tooltip="Filter: profile, severity, device, family or key:value", priority=True
        ),
        Binding("s", "sort", "Sort", tooltip="Cycle the sort: score, severity, time, device"),
        Binding("a", "acknowledge", "Ack", tooltip="Acknowledge the highlighted incident"),
        Binding(
            "u", "unacknowledge", "Undo ack", show=False, tooltip="Undo the acknowledgement of the highlighted incident"
        ),
        Binding("A", "acknowledge_all", "Ack all", show=False, tooltip="Acknowledge every incident the filter shows"),
        Binding("m", "mute", "Mute", show=False, tooltip="Mute (snooze) the highlighted device for a period"),
        Binding("N", "note", "Note", show=False, tooltip="Write a short note on the highlighted incident"),
        Binding("1", "app.fleet", "Fleet"),
    ]

    def __init__(self) -> None:
        super().__init__(id="anomalies")
        self.filter = Filter()
        self.sort_index = 0

    def compose(self) -> ComposeResult:
        yield EngineStatus(id="engine-status")
        yield Static(id="anomalies-summary")
        examples = ", ".join(f"'{e}'" for e in ANOMALY_FILTER_EXAMPLES)
        yield FilterBar(
            f"severity, device, family, !not, a|b… e.g. {examples}",
            self._filter_changed,
            keys=ANOMALY_KEYS,
            numbers=lambda: {"score"},
            id="anomaly-filter",
        )
        yield AnomalyTable(id="anomaly-table")
        yield Static(id="anomaly-detail")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.table.focus()

    @property
    def table(self) -> AnomalyTable:
        return self.query_one(AnomalyTable)

    def render_snapshot(self, snapshot: Snapshot) -> None:
        rows = [row for row in snapshot.anomalies if self.filter.matches_anomaly(row)]
        rows.sort(key=sort_key(SORTS[self.sort_index][0]))
        self.table.sync(rows, self.palette)
        closed = sum(1 for a in snapshot.anomalies if a.alert_id is not None and a.status == "closed")
        readings = sum(1 for a in snapshot.anomalies if a.alert_id is None)
        incidents = snapshot.open_incidents()
        parts: list[tuple[Text, int, Text | None]] = [
            (Text(f"incidents: {incidents.label()}", style="bold" if incidents.unacknowledged else "dim"), 0, None),
            (Text(f"{readings} top readings", style="dim"), 2, None),
            (Text(f"{closed} recently closed", style="dim"), 2, None),
            (Text(f"sort: {SORTS[self.sort_index][1]}", style="dim"), 1, None),
        ]
        if self.filter:
            filtered = Text(
                f"filter: {self.filter.describe()} ({len(rows)} shown)", style=f"bold {self.palette.accent}"
            )
            parts.append((filtered, 0, None))
        summary = self.query_one("#anomalies-summary", Static)
        summary.update(fit_parts(parts, summary.content_region.width or self.app.size.width - 2))
        self._detail()

    def _detail(self) -> None:
        row = self.table.cursor_anomaly
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        if row is None:
            snapshot = self.itap.snapshot
            if self.filter and snapshot is not None and snapshot.anomalies:
                counts: dict[str, int] = {}
                for a in snapshot.anomalies:
                    word = "reading" if a.alert_id is None else f"{a.status} {a.severity}"
                    counts[word] = counts.get(word, 0) + 1
                text.append(
                    why_empty(self.filter, len(snapshot.anomalies), counts, noun="anomaly").replace(
                        "anomalys", "anomalies"
                    ),
                    style=self.palette.warning,
                )
            else:
                text.append("No anomalies: the fleet looks normal.", style="dim")
        else:
            text.append(visible(row.device_id), style="bold")
            if row.alert_id is None:
                text.append(f" reading at {fmt_ts(row.ts)}", style="dim")
            elif row.status == "closed":
                text.append(
                    f" alert #{row.alert_id}, {row.severity}, closed (last above the threshold {fmt_ts(row.ts)})",
                    style="dim",
                )
            else:
                text.append(
                    f" alert #{row.alert_id}, {row.severity} since {fmt_ts(row.opened_ts or row.ts)}", style="dim"
                )
            if row.acknowledged:
                text.append(" (acknowledged)", style="dim")
            if row.note:
                text.append("  note: ", style="dim")
                text.append(row.note, style="italic")
            text.append("  why: ", style="dim")
            text.append_text(contributors_text(row.contributors, limit=4) if row.contributors else Text("—"))
        self.query_one("#anomaly-detail", Static).update(text)

    @on(DataTable.RowHighlighted, "#anomaly-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail()

    def _rerender(self) -> None:
        if self.itap.snapshot is not None:
            self.show_snapshot(self.itap.snapshot)

    def action_back(self) -> None:
        self.itap.action_fleet()

    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    def _filter_changed(self, flt: Filter) -> None:
        self.filter = flt
        self._rerender()

    def action_sort(self) -> None:
        self.sort_index = (self.sort_index + 1) % len(SORTS)
        self._rerender()
        self.notify(f"Sorted by {SORTS[self.sort_index][1]}", timeout=2)

    def action_acknowledge(self) -> None:
        row = self.table.cursor_anomaly
        if row is None:
            return
        if row.alert_id is None:
            self.notify("This is a reading, not an alert: nothing to acknowledge.", severity="warning")
            return
        self.itap.acknowledge(row.alert_id, row.device_id)

    def action_unacknowledge(self) -> None:
        self.itap.unacknowledge(self.table.cursor_anomaly)

    def action_acknowledge_all(self) -> None:
        snapshot = self.itap.snapshot
        if snapshot is None:
            return
        what = f"the filter '{self.filter.describe()}'" if self.filter else "the list"
        self.itap.acknowledge_all((a for a in snapshot.anomalies if self.filter.matches_anomaly(a)), what)

    def action_note(self) -> None:
        self.itap.ask_note(self.table.cursor_anomaly)

    def action_mute(self) -> None:
        row = self.table.cursor_anomaly
        self.itap.ask_mute(row.device_id if row else None)

    def action_drill(self) -> None:
        row = self.table.cursor_anomaly
        if row is not None:
            self.itap.open_device(row.device_id)

    @on(DataTable.RowSelected, "#anomaly-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_drill()

    def export_records(self) -> tuple[str, list]:  # type: ignore[type-arg]
        """The incidents and readings as shown (filter, sort)."""
        from itap_tui.export import anomaly_records

        snapshot = self.itap.snapshot
        if snapshot is None:
            return "incidents", []
        rows = [row for row in snapshot.anomalies if self.filter.matches_anomaly(row)]
        rows.sort(key=sort_key(SORTS[self.sort_index][0]))
        return "incidents", anomaly_records(rows)

    def selected_devices(self) -> list[str]:
        row = self.table.cursor_anomaly
        return [row.device_id] if row else []
