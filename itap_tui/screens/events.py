"""``l``: what happened, newest first: engine warnings, fault commands, retrains,
validation problems and incidents, all in data time (the simulated clock)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text

from itap_engine.snapshot import EventRow
from itap_tui.filtering import EVENT_KEYS, matches_event
from itap_tui.format import fmt_ts
from itap_tui.screens.fetched_list import FetchedListScreen, list_bindings
from itap_tui.widgets import FilterBar

EVENT_FILTER_EXAMPLES = ("kind:incident", "!info", "fault|retrain")
LEVEL_STYLE = {"critical": "critical", "error": "critical", "warning": "warning"}


class EventsScreen(FetchedListScreen[EventRow]):
    """The events, refreshed every ``detail_refresh_s`` while shown; ``/`` filters."""

    BINDINGS = list_bindings("Filter events: kind, level, device or words of the text")
    PREFIX = "events"
    NOUN = "event"
    DESCRIPTION = "events"
    EXPORT_NAME = "events"
    COLUMNS = (("time", "Time (sim)"), ("kind", "Kind"), ("level", "Level"), ("device", "Device"), ("text", "What"))

    @property
    def events(self) -> list[EventRow]:
        return self.rows

    def filter_bar(self) -> FilterBar:
        examples = ", ".join(f"'{e}'" for e in EVENT_FILTER_EXAMPLES)
        return FilterBar(
            f"kind, level, device, words… e.g. {examples}",
            self._filter_changed,
            keys=EVENT_KEYS,
            numbers=set,
            id="events-filter",
        )

    async def fetch(self) -> Sequence[EventRow]:
        return await self.itap.engine.call(self.itap.facade.events, 300)

    def matches(self, row: EventRow) -> bool:
        return matches_event(self.filter, row)

    def row_key(self, index: int, row: EventRow) -> str:
        return f"{row.kind}-{row.ts}-{index}-{hash(row.text) & 0xFFFF}"

    def cells(self, row: EventRow) -> list[Text]:
        level = getattr(self.palette, LEVEL_STYLE[row.level]) if row.level in LEVEL_STYLE else "dim"
        return [
            Text(fmt_ts(row.ts)),
            Text(row.kind),
            Text(row.level.upper(), style=level),
            Text(row.device_id or "—"),
            Text(row.text),
        ]

    def headline(self) -> str:
        return f"{len(self.events)} events, newest first"

    def empty_counts(self) -> dict[str, int] | None:
        if not self.events:
            return None
        counts: dict[str, int] = {}
        for e in self.events:
            counts[e.kind] = counts.get(e.kind, 0) + 1
        return counts

    def record(self, row: EventRow) -> dict[str, Any]:
        from itap_tui.export import iso

        return {"time": iso(row.ts), "kind": row.kind, "level": row.level, "device_id": row.device_id, "text": row.text}
