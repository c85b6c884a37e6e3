"""Keys typed right after the key that opens a text input belong to that input.

Textual sends a key to the widget focused *when the app reads it*. ``/`` opens the
filter and moves the focus there, but the move happens after ``/`` has travelled up
from the table to the screen's bindings; keys the terminal delivered meanwhile (a fast
typist, or any typist when the machine is loaded) were already sent to the table. They
bubble back up to the app's bindings, so ``/pump`` paused the console (``p``) and
``/mute`` opened the mute prompt (``m``).

:class:`TypeAhead` keeps the input that was just opened; the app's ``on_key`` (which only
sees keys no widget consumed) hands such keys to it, in order, until the input is
closed. A handed-on key is a :class:`TypedAhead`, which the app lets through to the
bindings once the input has seen it (``enter`` then submits after the characters before
it).
"""

from __future__ import annotations

from textual import events
from textual.widgets import Input

CLOSING_KEYS = frozenset({"enter", "escape", "tab", "shift+tab"})
"""Keys after which the input no longer expects type-ahead."""


class TypedAhead(events.Key):
    """A key handed on to the input it was typed for."""


TypedAhead.handler_name = events.Key.handler_name  # widgets handle it as the key it is


class TypeAhead:
    """The input that gets keys typed ahead of its focus, if any."""

    def __init__(self) -> None:
        self.target: Input | None = None

    def expect(self, target: Input | None) -> None:
        """``target`` was just opened (None: closed)."""
        self.target = target

    def release(self, target: Input) -> None:
        """``target`` closed (submitted, cleared, left)."""
        if self.target is target:
            self.target = None

    def hand_on(self, event: events.Key) -> bool:
        """Send ``event`` (a key that reached the app's bindings) on to the expecting
        input; True if it was."""
        target = self.target
        if target is None or isinstance(event, TypedAhead):
            return False
        if not target.is_attached or target.screen is not target.app.screen:
            self.target = None  # another screen is on top: its keys are its own
            return False
        event.prevent_default()
        event.stop()
        # forwarded, as the app forwards a key it reads: it bubbles back up to the
        # bindings once the input has seen it, instead of being read as a new key
        target._forward_event(TypedAhead(event.key, event.character))
        if event.key in CLOSING_KEYS:
            self.target = None  # what follows is for the screen again
        return True
