"""What the events (``l``) and incident history (``3``) screens share: a list that is not
in the snapshot, fetched from the facade in a worker when the screen opens and again
every ``detail_refresh_s`` while it is shown, drawn into a keyed table (cells updated in
place) under a one-line summary, filtered with ``/``, exported as the rows shown.

A subclass says what to fetch (:meth:`FetchedListScreen.fetch`), how a row matches the
filter, its key and cells, its export record, its headline and why a filter shows
nothing; everything else is here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Static

from itap_engine.snapshot import Snapshot
from itap_tui.filtering import Filter, why_empty
from itap_tui.screens.base import LiveScreen
from itap_tui.widgets import EngineStatus, FilterBar
from itap_tui.widgets.keyed_table import KeyedTable

RowT = TypeVar("RowT")


def list_bindings(filter_tooltip: str) -> list[Binding]:
    """Escape (back) and ``/`` (filter) for a list screen; ``filter_tooltip`` says what
    the filter matches. Each screen lists them in its own ``BINDINGS`` (the help shows those)."""
    return [
        Binding("escape", "back", "Back", tooltip="Back to the previous screen"),
        Binding("slash", "filter", "Filter", tooltip=filter_tooltip, priority=True),
    ]


class FetchedListScreen(LiveScreen, Generic[RowT]):
    """A list fetched from the facade, refreshed while shown; ``/`` filters, Escape goes back.

    Widget ids are ``#<PREFIX>-summary``, ``#<PREFIX>-filter`` and ``#<PREFIX>-table``;
    the fetch runs in the worker group ``PREFIX`` (a new fetch cancels one in flight).
    """

    PREFIX: ClassVar[str]
    """Widget ids and worker group: ``events``, ``history``."""
    NOUN: ClassVar[str]
    """One row, in words: ``event``, ``incident``."""
    DESCRIPTION: ClassVar[str]
    """The fetch, in words (a failure notice names it)."""
    COLUMNS: ClassVar[tuple[tuple[str, str], ...]]
    """(key, label) of each table column."""
    EXPORT_NAME: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()  # no id: the screen may open again from a screen above it
        self.filter = Filter()
        self.rows: list[RowT] = []
        """The rows last fetched, newest first."""
        self.loaded = False
        """Whether a fetch has completed."""
        self._last_fetch = 0.0

    # ------------------------------------------------------------------ what a subclass says
    async def fetch(self) -> Sequence[RowT]:
        """The rows, from the facade (through ``self.itap.engine.call``)."""
        raise NotImplementedError

    def filter_bar(self) -> FilterBar:
        """The filter bar (its placeholder, keys and numeric fields), id ``#<PREFIX>-filter``."""
        raise NotImplementedError

    def matches(self, row: RowT) -> bool:
        raise NotImplementedError

    def row_key(self, index: int, row: RowT) -> str:
        """The table key of a shown row (``index``: its place among the rows shown)."""
        raise NotImplementedError

    def cells(self, row: RowT) -> list[Text]:
        raise NotImplementedError

    def record(self, row: RowT) -> dict[str, Any]:
        """A shown row as exported."""
        raise NotImplementedError

    def headline(self) -> str:
        """The summary's first words (bold), e.g. ``12 events, newest first``."""
        raise NotImplementedError

    def empty_note(self) -> str | None:
        """Said (as a warning) instead of the filter when there is nothing to filter."""
        return None

    def empty_counts(self) -> dict[str, int] | None:
        """The rows by kind, to explain a filter that shows none of them; None: explain nothing."""
        return None

    # ------------------------------------------------------------------ shared
    def compose(self) -> ComposeResult:
        yield EngineStatus(id="engine-status")
        yield Static(id=f"{self.PREFIX}-summary")
        yield self.filter_bar()
        yield KeyedTable(self.COLUMNS, id=f"{self.PREFIX}-table")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(KeyedTable).focus()
        self.load()

    def load(self) -> None:
        """Fetch the rows again, off the event loop."""
        self.run_worker(
            self._load,
            name=f"load {self.PREFIX}",
            group=self.PREFIX,
            description=self.DESCRIPTION,
            exclusive=True,
            exit_on_error=False,
        )

    async def _load(self) -> None:
        self._last_fetch = time.monotonic()
        self.rows = list(await self.fetch())
        self.loaded = True
        self.show_rows()

    def render_snapshot(self, snapshot: Snapshot) -> None:
        if time.monotonic() - self._last_fetch >= self.itap.detail_refresh_s:
            self.load()

    def shown(self) -> list[RowT]:
        return [row for row in self.rows if self.matches(row)]

    def show_rows(self) -> None:
        rows = self.shown()
        self.query_one(KeyedTable).sync([(self.row_key(index, row), self.cells(row)) for index, row in enumerate(rows)])
        self.query_one(f"#{self.PREFIX}-summary", Static).update(self.summary(rows))

    def summary(self, rows: Sequence[RowT]) -> Text:
        palette = self.palette
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        text.append(self.headline(), style="bold")
        note = self.empty_note()
        if note is not None:
            text.append(f"  │ {note}", style=palette.warning)
        elif self.filter:
            text.append(f"  │ filter: {self.filter.describe()} ({len(rows)} shown)", style=f"bold {palette.accent}")
            counts = None if rows else self.empty_counts()
            if counts is not None:
                text = Text(why_empty(self.filter, len(self.rows), counts, noun=self.NOUN), style=palette.warning)
        return text

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    def _filter_changed(self, flt: Filter) -> None:
        self.filter = flt
        self.show_rows()

    def export_records(self) -> tuple[str, list[dict[str, Any]]]:
        return self.EXPORT_NAME, [self.record(row) for row in self.shown()]
