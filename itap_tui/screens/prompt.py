"""A one-line question: mute a device for how long."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from itap_tui.typeahead import InOrderInput, TypeAhead


class PromptModal(ModalScreen[str | None]):
    """Asks ``question``; ``enter`` returns the text, ``esc`` None."""

    DEFAULT_CSS = """
    PromptModal { align: center middle; }
    PromptModal > Vertical {
        width: 60; max-width: 95%; height: auto; padding: 0 1;
        border: round $accent; background: $panel;
    }
    PromptModal Label { width: 1fr; }
    PromptModal Input { margin-top: 1; }
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, value: str = "", *, placeholder: str = "") -> None:
        super().__init__(id="prompt")
        self.question = question
        self.value = value
        self.placeholder = placeholder
        self.field = InOrderInput(value, placeholder=placeholder)
        if (typing := self._type_ahead()) is not None:
            typing.expect(self.field)  # what is typed right after t, m or N is the answer

    def _type_ahead(self) -> TypeAhead | None:
        try:
            typing = getattr(self.app, "type_ahead", None)
        except Exception:  # made outside a running app
            return None
        return typing if isinstance(typing, TypeAhead) else None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, markup=False)
            yield self.field

    async def on_mount(self) -> None:
        self.field.focus()
        if (typing := self._type_ahead()) is not None:
            await typing.mounted(self.field)

    def _close(self, answer: str | None) -> None:
        if (typing := self._type_ahead()) is not None:
            typing.release(self.field)
        self.dismiss(answer)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._close(event.value)

    def action_cancel(self) -> None:
        self._close(None)
