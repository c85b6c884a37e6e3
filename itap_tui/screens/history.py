"""``3``: the incident history, open and closed, newest first, in data time.

Beyond the fleet's "recently closed": every stored incident that overlaps a time range
(``r``: ``-6h``, ``-2d``, ``05:00 .. 07:00`` or ``all``), filtered like the anomalies
(``/``: device, family, severity, status, ``ack``, ``score>…``).
"""

from __future__ import annotations

import time
from datetime import datetime

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from itap_engine.snapshot import AnomalyRow, Snapshot
from itap_tui.filtering import ANOMALY_KEYS, Filter, why_empty
from itap_tui.format import contributors_text, fmt_ts
from itap_tui.screens.base import LiveScreen
from itap_tui.screens.prompt import PromptModal
from itap_tui.timepick import parse_moment
from itap_tui.widgets import EngineStatus, FilterBar
from itap_tui.widgets.keyed_table import KeyedTable

HISTORY_FILTER_EXAMPLES = ("crit", "status:closed", "thermal|mechanical")
RANGE_EXAMPLE = "-6h, -2d, 05:00 .. 07:00, 2026-01-01 .. 2026-01-02 or all"
RANGE_SEPARATOR = ".."


def parse_range(text: str, now: datetime) -> tuple[datetime | None, datetime | None] | None:
    """``-6h`` (since then), ``A .. B``, ``A ..`` or ``all``, given the data clock ``now``;
    None when not understood (or when the start is after the end)."""
    text = text.strip().lower()
    if text in ("", "all"):
        return None, None
    start_text, sep, end_text = text.partition(RANGE_SEPARATOR)
    start = parse_moment(start_text, now) if start_text.strip() else None
    end = parse_moment(end_text, now) if sep and end_text.strip() else None
    if (start_text.strip() and start is None) or (sep and end_text.strip() and end is None):
        return None
    if start is not None and end is not None and start > end:
        return None
    return start, end


class HistoryScreen(LiveScreen):
    """Every incident in a time range; ``r`` sets the range, ``/`` filters, Enter drills."""

    BINDINGS = [
        Binding("escape", "back", "Back", tooltip="Back to the previous screen"),
        Binding(
            "slash",
            "filter",
            "Filter",
            tooltip="Filter incidents: severity, device, family, status:open|closed, ack, score>…",
            priority=True,
        ),
        Binding("r", "range", "Range", tooltip=f"The time range (data time): {RANGE_EXAMPLE}"),
    ]

    def __init__(self) -> None:
        super().__init__()  # no id: the device screen's tabs are #history, and screens may repeat in the stack
        self.filter = Filter()
        self.since: datetime | None = None
        self.until: datetime | None = None
        self.incidents: list[AnomalyRow] = []
        self.loaded = False
        self._last_fetch = 0.0

    def compose(self) -> ComposeResult:
        examples = ", ".join(f"'{e}'" for e in HISTORY_FILTER_EXAMPLES)
        yield EngineStatus(id="engine-status")
        yield Static(id="history-summary")
        yield FilterBar(
            f"severity, device, family, status, !not, a|b… e.g. {examples}",
            keys=ANOMALY_KEYS,
            numbers=lambda: {"score"},
            id="history-filter",
        )
        yield KeyedTable(
            (
                ("opened", "Opened (sim)"),
                ("last", "Last (sim)"),
                ("status", "Status"),
                ("severity", "Severity"),
                ("device", "Device"),
                ("family", "Family"),
                ("peak", "Peak"),
                ("signals", "Signals"),
                ("note", "Note"),
            ),
            id="history-table",
        )
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(KeyedTable).focus()
        self.load_history()

    @work(exclusive=True, group="history", exit_on_error=False, description="incident history")
    async def load_history(self) -> None:
        self._last_fetch = time.monotonic()
        facade = self.itap.facade
        self.incidents = list(await self.itap.engine.call(facade.incident_history, self.since, self.until))
        self.loaded = True
        self.show_history()

    def render_snapshot(self, snapshot: Snapshot) -> None:
        if time.monotonic() - self._last_fetch >= self.itap.detail_refresh_s:
            self.load_history()

    def shown(self) -> list[AnomalyRow]:
        return [i for i in self.incidents if self.filter.matches_anomaly(i)]

    def show_history(self) -> None:
        rows = self.shown()
        palette = self.palette
        severity_style = {"critical": palette.critical, "warning": palette.warning}
        self.query_one(KeyedTable).sync(
            [
                (
                    str(i.alert_id),
                    [
                        Text(fmt_ts(i.opened_ts)),
                        Text(fmt_ts(i.ts)),
                        Text(i.status + (" ✓ack" if i.acknowledged else ""), style="" if i.status == "open" else "dim"),
                        Text(i.severity.upper(), style=severity_style.get(i.severity, "")),
                        Text(i.device_id),
                        Text(i.family),
                        Text(f"{i.score:.2f}"),
                        contributors_text(i.contributors),
                        Text(i.note),
                    ],
                )
                for i in rows
            ]
        )
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        text.append(f"{len(self.incidents)} incidents {self.range_text()}, newest first", style="bold")
        if self.loaded and not self.incidents:
            text.append("  │ none in this range: r widens it", style=palette.warning)
        elif self.filter:
            text.append(f"  │ filter: {self.filter.describe()} ({len(rows)} shown)", style=f"bold {palette.accent}")
            if not rows:
                counts = {"open": 0, "closed": 0}
                for i in self.incidents:
                    counts[i.status] = counts.get(i.status, 0) + 1
                text = Text(why_empty(self.filter, len(self.incidents), counts, noun="incident"), style=palette.warning)
        self.query_one("#history-summary", Static).update(text)

    def range_text(self) -> str:
        if self.since is None and self.until is None:
            return "in all stored history"
        start = f"{self.since:%Y-%m-%d %H:%M}" if self.since else "the start"
        end = f"{self.until:%Y-%m-%d %H:%M}" if self.until else "now"
        return f"from {start} to {end}"

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    @on(FilterBar.Changed)
    def _filter_changed(self, event: FilterBar.Changed) -> None:
        self.filter = event.filter
        self.show_history()

    def action_range(self) -> None:
        def chosen(answer: str | None) -> None:
            if answer is None:
                return
            now = self.itap.data_clock()
            if now is None:
                self.notify("No data clock yet: wait for the first tick.", severity="warning", markup=False)
                return
            picked = parse_range(answer, now)
            if picked is None:
                self.notify(f"Not a time range: {answer!r} (try {RANGE_EXAMPLE})", severity="warning", markup=False)
                return
            self.since, self.until = picked
            self.load_history()

        self.app.push_screen(PromptModal(f"Incidents in (data time, UTC): {RANGE_EXAMPLE}", "-6h"), chosen)

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        incident = next((i for i in self.incidents if str(i.alert_id) == event.row_key.value), None)
        if incident is not None:
            self.itap.open_device(incident.device_id)

    def export_records(self) -> tuple[str, list]:  # type: ignore[type-arg]
        from itap_tui.export import iso

        return "incidents", [
            {
                "id": i.alert_id,
                "opened": iso(i.opened_ts),
                "last": iso(i.ts),
                "status": i.status,
                "acknowledged": i.acknowledged,
                "severity": i.severity,
                "device_id": i.device_id,
                "profile": i.profile,
                "family": i.family,
                "peak_score": i.score,
                "signals": contributors_text(i.contributors).plain,
                "note": i.note,
            }
            for i in self.shown()
        ]
