"""``3``: the incident history, open and closed, newest first, in data time.

Beyond the fleet's "recently closed": every stored incident that overlaps a time range
(``r``: ``-6h``, ``-2d``, ``05:00 .. 07:00`` or ``all``), filtered like the anomalies
(``/``: device, family, severity, status, ``ack``, ``score>…``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.widgets import DataTable

from itap_engine.snapshot import AnomalyRow
from itap_tui.filtering import ANOMALY_KEYS
from itap_tui.format import contributors_text, fmt_ts
from itap_tui.screens.fetched_list import FetchedListScreen, list_bindings
from itap_tui.screens.prompt import PromptModal
from itap_tui.timepick import parse_moment
from itap_tui.widgets import FilterBar

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


class HistoryScreen(FetchedListScreen[AnomalyRow]):
    """Every incident in a time range; ``r`` sets the range, ``/`` filters, Enter drills."""

    BINDINGS = [
        *list_bindings("Filter incidents: severity, device, family, status:open|closed, ack, score>…"),
        Binding("r", "range", "Range", tooltip=f"The time range (data time): {RANGE_EXAMPLE}"),
    ]
    PREFIX = "history"  # the device screen's tabs are #history: this screen has no id
    NOUN = "incident"
    DESCRIPTION = "incident history"
    EXPORT_NAME = "incidents"
    COLUMNS = (
        ("opened", "Opened (sim)"),
        ("last", "Last (sim)"),
        ("status", "Status"),
        ("severity", "Severity"),
        ("device", "Device"),
        ("family", "Family"),
        ("peak", "Peak"),
        ("signals", "Signals"),
        ("note", "Note"),
    )

    def __init__(self) -> None:
        super().__init__()
        self.since: datetime | None = None
        self.until: datetime | None = None

    @property
    def incidents(self) -> list[AnomalyRow]:
        return self.rows

    def filter_bar(self) -> FilterBar:
        examples = ", ".join(f"'{e}'" for e in HISTORY_FILTER_EXAMPLES)
        return FilterBar(
            f"severity, device, family, status, !not, a|b… e.g. {examples}",
            self._filter_changed,
            keys=ANOMALY_KEYS,
            numbers=lambda: {"score"},
            id="history-filter",
        )

    async def fetch(self) -> Sequence[AnomalyRow]:
        return await self.itap.engine.call(self.itap.facade.incident_history, self.since, self.until)

    def matches(self, row: AnomalyRow) -> bool:
        return self.filter.matches_anomaly(row)

    def row_key(self, index: int, row: AnomalyRow) -> str:
        return str(row.alert_id)

    def cells(self, row: AnomalyRow) -> list[Text]:
        severity_style = {"critical": self.palette.critical, "warning": self.palette.warning}
        i = row
        return [
            Text(fmt_ts(i.opened_ts)),
            Text(fmt_ts(i.ts)),
            Text(i.status + (" ✓ack" if i.acknowledged else ""), style="" if i.status == "open" else "dim"),
            Text(i.severity.upper(), style=severity_style.get(i.severity, "")),
            Text(i.device_id),
            Text(i.family),
            Text(f"{i.score:.2f}"),
            contributors_text(i.contributors),
            Text(i.note),
        ]

    def headline(self) -> str:
        return f"{len(self.incidents)} incidents {self.range_text()}, newest first"

    def empty_note(self) -> str | None:
        return "none in this range: r widens it" if self.loaded and not self.incidents else None

    def empty_counts(self) -> dict[str, int]:
        counts = {"open": 0, "closed": 0}
        for i in self.incidents:
            counts[i.status] = counts.get(i.status, 0) + 1
        return counts

    def range_text(self) -> str:
        if self.since is None and self.until is None:
            return "in all stored history"
        start = f"{self.since:%Y-%m-%d %H:%M}" if self.since else "the start"
        end = f"{self.until:%Y-%m-%d %H:%M}" if self.until else "now"
        return f"from {start} to {end}"

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
            self.load()

        self.app.push_screen(PromptModal(f"Incidents in (data time, UTC): {RANGE_EXAMPLE}", "-6h"), chosen)

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        incident = next((i for i in self.incidents if str(i.alert_id) == event.row_key.value), None)
        if incident is not None:
            self.itap.open_device(incident.device_id)

    def record(self, row: AnomalyRow) -> dict[str, Any]:
        from itap_tui.export import iso

        i = row
        return {
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
