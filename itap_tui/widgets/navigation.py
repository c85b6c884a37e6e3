"""Keys every table of the console shares: vi-style and Home/End on the row cursor."""

from __future__ import annotations

from textual.binding import Binding

NAV_BINDINGS = [
    Binding("j", "cursor_down", "Down", show=False),
    Binding("k", "cursor_up", "Up", show=False),
    Binding("home,g", "scroll_top", "First row", show=False),
    Binding("end,G", "scroll_bottom", "Last row", show=False),
]
"""DataTable's own ``home``/``end`` scroll sideways on a row cursor; here they go to
the first and last row, as ``g``/``G`` do."""
