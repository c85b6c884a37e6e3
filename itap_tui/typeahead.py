"""Keys typed ahead of a focus move go where the focus moved.

Textual sends a key to the widget focused *when the app reads it*. ``/`` opens the
filter and moves the focus there, but only after ``/`` has travelled from the table up
to the bindings; keys the terminal delivered meanwhile (a fast typist, or any typist on
a loaded machine) were already sent to the table. Unconsumed, they bubble back up to the
app's bindings: ``/pump-002`` paused the console (``p``), and in the fault dialog the
``3`` typed after choosing a fault was lost.

``/`` is therefore a priority binding (it acts when the app reads it, before the next
key is read), and until the filter's input has the focus the app sends the characters,
backspace and enter it reads to that input (:meth:`TypeAhead.early_target`).

For other focus moves, :class:`TypeAhead` remembers which widget the app sent each key to. A key that comes
back to the app's bindings unconsumed, from a widget that no longer has the focus, is
handed on to the widget that has it now (or to the input that is about to get it,
:meth:`TypeAhead.expect`), as a :class:`TypedAhead`. To an expected input every key is
handed on, in order, so that ``enter`` submits after the characters typed before it;
elsewhere only printable keys are, and the others (tab, enter, arrows) go to the
bindings at once, from the new focus.
"""

from __future__ import annotations

from collections import OrderedDict

from textual import events
from textual.widget import Widget

CLOSING_KEYS = frozenset({"enter", "escape", "tab", "shift+tab"})
"""Keys that close an expected input: keys typed after them are not the input's."""

_REMEMBER = 256


class TypedAhead(events.Key):
    """A key handed on to the widget it was typed for."""


TypedAhead.handler_name = events.Key.handler_name  # widgets handle it as the key it is


class TypeAhead:
    """Where keys went, and where keys typed ahead of a focus move belong."""

    def __init__(self) -> None:
        self.expected: Widget | None = None
        """An input that was just opened and gets the focus soon."""
        self._sent: OrderedDict[int, tuple[int, Widget | None]] = OrderedDict()
        self._seq = 0
        self._closed: tuple[int, Widget | None] | None = None

    def sent(self, event: events.Key, to: Widget | None) -> None:
        """The app read ``event`` and sends it to ``to`` (the focused widget)."""
        if isinstance(event, TypedAhead):
            return
        self._seq += 1
        self._sent[id(event)] = (self._seq, to)
        while len(self._sent) > _REMEMBER:
            self._sent.popitem(last=False)

    def early_target(self, event: events.Key) -> Widget | None:
        """Where the app should send ``event``, which it just read, instead of the focused
        widget: the expected input while its focus is still on the way (characters,
        backspace and enter; other keys keep their bindings)."""
        target = self.expected
        if target is None or target.has_focus or not (event.is_printable or event.key in ("enter", "backspace")):
            return None
        if not target.is_attached or target.screen is not target.app.screen:
            return None
        return target

    def expect(self, target: Widget) -> None:
        """``target`` was just opened and will have the focus: keys typed from now are its."""
        self.expected = target
        self._closed = None

    def release(self, target: Widget) -> None:
        """``target`` closed (submitted, cleared, left)."""
        if self.expected is target:
            self.expected = None

    def hand_on(self, event: events.Key, focused: Widget | None) -> bool:
        """``event`` came back to the app's bindings unconsumed: hand it on to the widget
        it was typed for, if that is not the one it went to; True if handed on."""
        if isinstance(event, TypedAhead):
            return False
        seq, origin = self._sent.pop(id(event), (None, None))
        if seq is None or origin is None:
            return False
        target = self.expected or focused
        if target is None or target is origin:
            return False
        if not target.is_attached or target.screen is not target.app.screen:
            if target is self.expected:
                self.expected = None  # another screen is on top: its keys are its own
            return False
        if self._closed is not None and seq > self._closed[0] and origin is self._closed[1]:
            return False  # typed after the key that closed the input
        if target is not self.expected and not event.is_printable:
            return False  # tab, enter, arrows: the bindings, now, from the new focus
        event.prevent_default()
        event.stop()
        # forwarded, as the app forwards a key it reads: it bubbles back up to the
        # bindings once the target has seen it, instead of being read as a new key
        target._forward_event(TypedAhead(event.key, event.character))
        if target is self.expected and event.key in CLOSING_KEYS:
            self.expected = None
            self._closed = (seq, origin)
        return True
