"""A list of a device's signals to choose from (``c`` plots one, ``o`` overlays one)."""

from __future__ import annotations

from collections.abc import Sequence

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

NONE = "(none)"
"""The entry that removes the overlay."""


class SignalPicker(ModalScreen[str | None]):
    """Choose a signal with the arrows (or its first letters) and Enter; Escape cancels.

    Dismisses with the signal's name, ``""`` for the "(none)" entry when ``allow_none``,
    or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    SignalPicker { align: center middle; }
    SignalPicker > Vertical { width: 50; height: auto; max-height: 80%; border: round $accent; background: $panel; }
    SignalPicker OptionList { height: auto; max-height: 20; }
    """

    def __init__(self, title: str, signals: Sequence[str], current: str | None, *, allow_none: bool = False) -> None:
        super().__init__(id="signal-picker")
        self.title_text = title
        self.signals = list(signals)
        self.allow_none = allow_none
        self.current = current

    def compose(self) -> ComposeResult:
        options = [Option(name, id=name) for name in self.signals]
        if self.allow_none:
            options.insert(0, Option(NONE, id=NONE))
        with Vertical():
            yield Label(self.title_text)
            yield OptionList(*options)

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        names = ([NONE] if self.allow_none else []) + self.signals
        if self.current in names:
            options.highlighted = names.index(self.current)
        options.focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        chosen = event.option.id or ""
        self.dismiss("" if chosen == NONE else chosen)

    def action_cancel(self) -> None:
        self.dismiss(None)
