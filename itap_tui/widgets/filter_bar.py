"""The ``/`` filter: a one-line input that hides itself when not in use."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Input, Label

from itap_tui.filtering import Filter


class FilterBar(Horizontal):
    """Type a filter, ``enter`` applies it, ``esc`` clears it."""

    BINDINGS = [Binding("escape", "clear", "Clear filter", show=False)]

    editing: reactive[bool] = reactive(False)
    """The input is open; toggles the ``-editing`` class."""

    @dataclass
    class Changed(Message):
        bar: FilterBar
        filter: Filter

        @property
        def control(self) -> FilterBar:
            return self.bar

    def __init__(self, placeholder: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._placeholder = placeholder

    def compose(self) -> ComposeResult:
        yield Label("/", classes="filter-prompt")
        yield Input(placeholder=self._placeholder, classes="filter-input")

    def watch_editing(self, editing: bool) -> None:
        self.set_class(editing, "-editing")

    def open(self) -> None:
        self.editing = True
        self.query_one(Input).focus()

    @on(Input.Changed)
    def _live(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.Changed(self, Filter.parse(event.value)))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.editing = False
        self.post_message(self.Changed(self, Filter.parse(event.value)))
        self.screen.focus_next()

    def action_clear(self) -> None:
        self.query_one(Input).value = ""
        self.editing = False
        self.post_message(self.Changed(self, Filter()))
        self.screen.focus_next()
