"""``l``: what happened, newest first: engine warnings, fault commands, retrains,
validation problems and incidents, all in data time (the simulated clock)."""

from __future__ import annotations

import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Static

from itap_engine.snapshot import EventRow, Snapshot
from itap_tui.filtering import EVENT_KEYS, Filter, matches_event, why_empty
from itap_tui.format import fmt_ts
from itap_tui.screens.base import LiveScreen
from itap_tui.widgets import EngineStatus, FilterBar
from itap_tui.widgets.keyed_table import KeyedTable

EVENT_FILTER_EXAMPLES = ("kind:incident", "!info", "fault|retrain")
LEVEL_STYLE = {"critical": "critical", "error": "critical", "warning": "warning"}


class EventsScreen(LiveScreen):
    """The events, refreshed every ``detail_refresh_s`` while shown; ``/`` filters."""

    BINDINGS = [
        Binding("escape", "back", "Back", tooltip="Back to the previous screen"),
        Binding(
            "slash",
            "filter",
            "Filter",
            tooltip="Filter events: kind, level, device or words of the text",
            priority=True,
        ),
    ]

    def __init__(self) -> None:
        super().__init__()  # no id: the events can open again from a screen above them
        self.filter = Filter()
        self.events: list[EventRow] = []
        self._last_fetch = 0.0

    def compose(self) -> ComposeResult:
        examples = ", ".join(f"'{e}'" for e in EVENT_FILTER_EXAMPLES)
        yield EngineStatus(id="engine-status")
        yield Static(id="events-summary")
        yield FilterBar(
            f"kind, level, device, words… e.g. {examples}", keys=EVENT_KEYS, numbers=set, id="events-filter"
        )
        yield KeyedTable(
            (("time", "Time (sim)"), ("kind", "Kind"), ("level", "Level"), ("device", "Device"), ("text", "What")),
            id="events-table",
        )
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(KeyedTable).focus()
        self.load_events()

    @work(exclusive=True, group="events", exit_on_error=False, description="events")
    async def load_events(self) -> None:
        self._last_fetch = time.monotonic()
        self.events = list(await self.itap.engine.call(self.itap.facade.events, 300))
        self.show_events()

    def render_snapshot(self, snapshot: Snapshot) -> None:
        if time.monotonic() - self._last_fetch >= self.itap.detail_refresh_s:
            self.load_events()

    def shown(self) -> list[EventRow]:
        return [e for e in self.events if matches_event(self.filter, e)]

    def show_events(self) -> None:
        rows = self.shown()
        palette = self.palette
        self.query_one(KeyedTable).sync(
            [
                (
                    f"{e.kind}-{e.ts}-{index}-{hash(e.text) & 0xFFFF}",
                    [
                        Text(fmt_ts(e.ts)),
                        Text(e.kind),
                        Text(
                            e.level.upper(),
                            style=getattr(palette, LEVEL_STYLE[e.level]) if e.level in LEVEL_STYLE else "dim",
                        ),
                        Text(e.device_id or "—"),
                        Text(e.text),
                    ],
                )
                for index, e in enumerate(rows)
            ]
        )
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        text.append(f"{len(self.events)} events, newest first", style="bold")
        if self.filter:
            text.append(f"  │ filter: {self.filter.describe()} ({len(rows)} shown)", style=f"bold {palette.accent}")
            if not rows and self.events:
                counts: dict[str, int] = {}
                for e in self.events:
                    counts[e.kind] = counts.get(e.kind, 0) + 1
                text = Text(why_empty(self.filter, len(self.events), counts, noun="event"), style=palette.warning)
        self.query_one("#events-summary", Static).update(text)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    @on(FilterBar.Changed)
    def _filter_changed(self, event: FilterBar.Changed) -> None:
        self.filter = event.filter
        self.show_events()

    def export_records(self) -> tuple[str, list]:  # type: ignore[type-arg]
        from itap_tui.export import iso

        return "events", [
            {"time": iso(e.ts), "kind": e.kind, "level": e.level, "device_id": e.device_id, "text": e.text}
            for e in self.shown()
        ]
