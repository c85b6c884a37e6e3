"""Keys typed ahead of a focus move go where the focus moved.

Textual sends a key to the widget focused *when the app reads it*. ``/`` opens the
filter and moves the focus there, but only after ``/`` has travelled from the table up
to the bindings; keys the terminal delivered meanwhile (a fast typist, or any typist on
a loaded machine) were already sent to the table. Unconsumed, they bubble back up to the
app's bindings: ``/pump-002`` paused the console (``p``), and in the fault dialog the
``3`` typed after choosing a fault was lost.

``/`` is therefore a priority binding (it acts when the app reads it, before the next
key is read), and until the filter's input (or a prompt's, :meth:`TypeAhead.expect`) has
the focus, the app sends the keys it reads to that input (:meth:`TypeAhead.early`), in
order, holding them until the input is mounted.

For other focus moves, :class:`TypeAhead` remembers which widget the app sent each key to. A key that comes
back to the app's bindings unconsumed, from a widget that no longer has the focus, is
handed on to the widget that has it now (or to the input that is about to get it,
:meth:`TypeAhead.expect`), as a :class:`TypedAhead`. To an expected input every key is
handed on, in order, so that ``enter`` submits after the characters typed before it;
elsewhere only printable keys are, and the others (tab, enter, arrows) go to the
bindings at once, from the new focus.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from textual import events
from textual.dom import DOMNode
from textual.widget import Widget
from textual.widgets import Input

if TYPE_CHECKING:
    from textual.app import App

CLOSING_KEYS = frozenset({"enter", "escape", "tab", "shift+tab"})
"""Keys that close an expected input: keys typed after them are not the input's."""

_REMEMBER = 256
HOLD_AT_MOST_S = 3.0
"""Keys wait for a closing key at most this long."""


class InOrderInput(Input):
    """An input whose own keys (ctrl+u, backspace, arrows, enter) act in the order typed.

    Textual types a character in the input's own turn but runs the input's bindings
    only once the key has bubbled up to the app, so when one terminal read delivers
    ``ctrl+u -20m`` (a fast typist over ssh, a loaded machine) the ``-`` was typed
    before ``ctrl+u`` cleared the line. Here a key bound on the input runs in its turn.
    """

    async def _on_key(self, event: events.Key) -> None:
        if not event.is_printable:
            for binding in self._bindings.key_to_bindings.get(event.key, ()):
                event.stop()
                event.prevent_default()
                await self.run_action(binding.action)
                return
        await super()._on_key(event)


class TypedAhead(events.Key):
    """A key handed on to the widget it was typed for."""


TypedAhead.handler_name = events.Key.handler_name  # widgets handle it as the key it is


QUIT_KEYS = frozenset({"ctrl+q", "ctrl+c"})
"""Keys that keep their (priority) bindings even while an input is expected."""


class TypeAhead:
    """Where keys went, and where keys typed ahead of a focus move belong."""

    def __init__(self, app: App[Any] | None = None) -> None:
        self.app = app
        self.expected: Widget | None = None
        """An input that was just opened and gets the focus soon."""
        self._sent: OrderedDict[int, tuple[int, Widget | None]] = OrderedDict()
        self._seq = 0
        self._closed: tuple[int, Widget | None] | None = None
        self._waiting: list[tuple[str, str | None]] = []
        """Keys for the expected input while it is not mounted yet."""
        self.closing = False
        """A key that closes the expected input is on its way to it."""
        self._closing_since = 0.0
        self._held: list[tuple[str, str | None]] = []
        """Keys read while ``closing``: read again once the input has closed."""

    def sent(self, event: events.Key, to: Widget | None) -> None:
        """The app read ``event`` and sends it to ``to`` (the focused widget)."""
        if isinstance(event, TypedAhead):
            return
        self._seq += 1
        self._sent[id(event)] = (self._seq, to)
        while len(self._sent) > _REMEMBER:
            self._sent.popitem(last=False)

    def expect(self, target: Widget) -> None:
        """``target`` was just opened and will have the focus: keys typed from now are its."""
        self.expected = target
        self._closed = None
        self._waiting = []

    async def mounted(self, target: Widget) -> None:
        """``target`` is mounted: it gets the keys typed for it meanwhile."""
        waiting, self._waiting = self._waiting, []
        for key, character in waiting:
            await self._apply(key, character, target)

    def release(self, target: Widget) -> None:
        """``target`` closed (submitted, cleared, left)."""
        if self.expected is target:
            self.expected = None
            self._waiting = []
        self.settle()

    def settle(self) -> None:
        """The closing key has been handled: the keys read meanwhile are read again, now
        that the focus is where that key put it."""
        held, self._held = self._held, []
        self.closing = False
        if self.app is not None:
            for key, character in held:
                self.app.post_message(events.Key(key, character))

    def hold(self, event: events.Key) -> bool:
        """While a closing key is on its way, keep what is read after it (True)."""
        if not self.closing or event.key in QUIT_KEYS or isinstance(event, TypedAhead):
            return False
        if time.monotonic() - self._closing_since > HOLD_AT_MOST_S:
            self.settle()  # never a console deaf to keys: whatever closes the input is late
            return False
        event.prevent_default()
        event.stop()
        self._held.append((event.key, event.character))
        return True

    async def _deliver(self, event: events.Key, target: Widget) -> None:
        if target is not self.expected:  # has the focus: it types the key after its focus event
            target._forward_event(TypedAhead(event.key, event.character))
        elif target.is_attached:
            await self._apply(event.key, event.character, target)
        else:
            self._waiting.append((event.key, event.character))

    async def _apply(self, key: str, character: str | None, target: Widget) -> None:
        """Type ``key`` into ``target`` now, in the order the app read it: a character is
        inserted, any other key runs the first binding for it from ``target`` up."""
        event = events.Key(key, character)
        if isinstance(target, Input):
            target.select_on_focus = False  # the focus, arriving later, keeps what was typed
            if event.is_printable and character is not None:
                if target.selection.is_empty:
                    target.insert_text_at_cursor(character)
                else:
                    target.replace(character, *target.selection)
                return
        elif event.is_printable:
            target._forward_event(TypedAhead(key, character))  # the widget types it itself
            return
        node: DOMNode | None = target
        while node is not None:
            for binding in node._bindings.key_to_bindings.get(key, ()):
                if await node.app.run_action(binding.action, node):
                    return
            node = node.parent

    def _on_screen(self, target: Widget) -> bool:
        """``target`` is (or will be) on the top screen."""
        if not target.is_attached:
            return target is self.expected
        return target.screen is target.app.screen

    async def early(self, event: events.Key) -> bool:
        """The app just read ``event``: if an input is expected and has not the focus
        yet, send the key there (True) instead of to the focused widget."""
        target = self.expected
        if target is None or event.key in QUIT_KEYS or (target.is_attached and target.has_focus):
            return False
        if not self._on_screen(target):
            self.expected = None
            return False
        event.prevent_default()
        event.stop()
        self._seq += 1
        await self._deliver(event, target)
        if event.key in CLOSING_KEYS:
            self.expected = None
            self._closed = (self._seq, None)  # keys read from now on are not the input's
            self.closing = self.app is not None
            self._closing_since = time.monotonic()
        return True

    async def hand_on(self, event: events.Key, focused: Widget | None) -> bool:
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
        if not self._on_screen(target):
            if target is self.expected:
                self.expected = None  # another screen is on top: its keys are its own
            return False
        closed = self._closed
        if closed is not None and seq > closed[0] and closed[1] in (None, origin):
            return self.hold(event)  # typed after the key that closed the input
        if target is not self.expected and not event.is_printable:
            return False  # tab, enter, arrows: the bindings, now, from the new focus
        event.prevent_default()
        event.stop()
        await self._deliver(event, target)
        if target is self.expected and event.key in CLOSING_KEYS:
            self.expected = None
            self._closed = (seq, origin)
        return True
