"""The ``/`` filter: a one-line input that hides itself when not in use."""

from __future__ import annotations

from collections.abc import Callable, Collection

from rich.text import Text
from textual import on
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.geometry import Size
from textual.reactive import Reactive, reactive
from textual.widgets import Input, Label

from itap_engine.safe_text import visible
from itap_tui.filtering import Filter, FilterError
from itap_tui.typeahead import InOrderInput, TypeAhead


class FilterInput(InOrderInput):
    """The filter's input: its text's width changes at every keystroke, and for a
    one-line input that fills its bar that needs no layout pass (Textual's Input asks
    for one, which repaints every widget on the screen)."""

    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False)


class FilterBar(Horizontal):
    """Type a filter, ``enter`` applies it, ``esc`` clears it.

    A filter that cannot match (an unknown key or signal) is shown as an error in the
    bar and not applied: the table keeps the last good filter.

    Each filter typed goes to ``on_change`` at once, in the turn the input changed (not
    as a message: a message would reach the screen after the frame showing the typed
    character, and the table would follow a frame later; at 10,000 devices a frame
    costs 15-30 ms).

    Args:
        placeholder: the example shown in the empty input; it should match something.
        on_change: called with each filter typed, applied or cleared.
        keys: the ``key:value`` keys the screen knows.
        numbers: called for the names ``name>N`` may compare (score, signals).
    """

    # priority: they act when the app reads them, so the key typed next goes to the table
    BINDINGS = [
        Binding("escape", "clear", "Clear filter", show=False, priority=True),
        Binding("enter", "apply", "Apply filter", show=False, priority=True),
    ]

    editing: reactive[bool] = reactive(False)
    """The input is open; toggles the ``-editing`` class."""
    error: reactive[str] = reactive("")
    """Why the typed filter cannot apply ("" when it can); toggles ``-error``."""

    def __init__(
        self,
        placeholder: str,
        on_change: Callable[[Filter], None],
        *,
        keys: Collection[str] | None = None,
        numbers: Callable[[], Collection[str]] | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self._placeholder = placeholder
        self._on_change = on_change
        self.keys = keys
        self.numbers = numbers

    def compose(self) -> ComposeResult:
        yield Label("/", classes="filter-prompt")
        yield FilterInput(placeholder=self._placeholder, classes="filter-input")
        yield Label("", classes="filter-error")

    def on_mount(self) -> None:
        self.watch(self.query_one(Input), "value", self._typed, init=False)

    def watch_editing(self, editing: bool) -> None:
        self.set_class(editing, "-editing")

    def watch_error(self, error: str) -> None:
        self.set_class(bool(error), "-error")
        # the message quotes what was typed: shown as text, never read as Rich markup
        self.query_one(".filter-error", Label).update(Text(visible(error)))

    def open(self) -> None:
        """Open the input (``/``, a priority binding: it acts as the app reads it, so the
        keys typed after it go to the input; typed in the input, ``/`` is a character)."""
        field = self.query_one(Input)
        if field.has_focus:
            raise SkipAction()
        self.editing = True
        field.focus()
        if (typing := self._type_ahead()) is not None:
            typing.expect(field)  # keys typed right after / are the filter's, before its focus

    def _type_ahead(self) -> TypeAhead | None:
        typing = getattr(self.app, "type_ahead", None)
        return typing if isinstance(typing, TypeAhead) else None

    def _done_editing(self) -> None:
        self.editing = False
        if (typing := self._type_ahead()) is not None:
            typing.release(self.query_one(Input))

    @on(Input.Blurred)
    def _input_blurred(self, event: Input.Blurred) -> None:
        if (typing := self._type_ahead()) is not None:
            typing.release(event.input)

    def parse(self, text: str) -> Filter | None:
        """The filter ``text`` means, or None (and :attr:`error` set) when it cannot apply."""
        try:
            flt = Filter.parse(text, self.keys, None if self.numbers is None else self.numbers())
        except FilterError as error:
            self.error = str(error)
            return None
        self.error = ""
        return flt

    def _typed(self, value: str) -> None:
        flt = self.parse(value)
        if flt is not None:
            self._on_change(flt)

    @on(Input.Changed)
    def _stop_changed(self, event: Input.Changed) -> None:
        event.stop()  # handled as the value changed (_typed)

    def action_apply(self) -> None:
        """``enter``: the focus leaves the input now (the next key is the table's), the
        filter applies once the input has had the keys typed before ``enter``."""
        field = self.query_one(Input)
        self.screen.focus_next()
        field.call_later(lambda: self._apply(field))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._apply(event.input)

    def _apply(self, field: Input) -> None:
        flt = self.parse(field.value)
        if flt is None:
            self.app.bell()
            field.focus()
            if (typing := self._type_ahead()) is not None:
                typing.settle()
            return  # back in the input: the error is on screen
        self._done_editing()
        self._on_change(flt)
        if field.has_focus:
            self.screen.focus_next()

    def reset(self) -> None:
        """Empty the input and hand on the empty filter, once."""
        field = self.query_one(Input)
        typed, field.value = field.value, ""  # a change hands it on (_typed)
        self.error = ""
        if not typed:
            self._on_change(Filter())

    def action_clear(self) -> None:
        self.reset()
        self._done_editing()
        self.screen.focus_next()
