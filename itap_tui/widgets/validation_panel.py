"""Validation problems: one row per (device, signal, check), updated in place.

Each problem shows when it was first and last seen (data time, the clock of the rest
of the console), how many cycles raised it, and whether it is still open. Rows are
keyed by problem id and never cleared, so the cursor and the scroll position stay
where the operator left them; a new problem is added at the bottom.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from itap_engine.safe_text import visible
from itap_engine.snapshot import ValidationProblemRow
from itap_tui.format import Palette, fmt_ts
from itap_tui.widgets.keyed_table import KeyedTable

LEVELS = {"error": ("✖", "ERR", "critical"), "critical": ("✖", "CRIT", "critical"), "warning": ("▲", "WARN", "warning")}

COLUMNS = (
    ("level", "Level"),
    ("device", "Device"),
    ("signal", "Signal"),
    ("check", "Check"),
    ("first", "First (sim)"),
    ("last", "Last (sim)"),
    ("count", "×"),
    ("state", "State"),
    ("message", "Message"),
)


def short_message(problem: ValidationProblemRow) -> str:
    """The message without what the row's columns already say (signal, device)."""
    text = problem.message
    if problem.signal and text.startswith(f"{problem.signal} "):
        text = text[len(problem.signal) + 1 :]
    if problem.device_id:
        text = text.replace(f" of {problem.device_id}'s readings", " of its readings")
    return text


class ValidationPanel(KeyedTable):
    """See the module docstring; ``v`` focuses it, arrows scroll (left/right for long messages)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(COLUMNS, id=id)
        self.border_title = "Validation problems"
        self.cursor_type = "row"
        self.zebra_stripes = False
        self._shown: tuple[tuple[ValidationProblemRow, ...], Palette] | None = None

    def show(self, problems: Sequence[ValidationProblemRow], palette: Palette) -> None:
        """Show ``problems``; nothing to do when they are the ones shown (a sort or a
        filter key shows the same snapshot again)."""
        shown = (tuple(problems), palette)
        if shown == self._shown:
            return
        self._shown = shown
        rows = []
        for p in problems:
            symbol, word, colour = LEVELS.get(p.level, ("·", p.level.upper()[:4], "muted"))
            resolved = p.resolved_ts is not None
            style = "dim" if resolved else ""
            rows.append(
                (
                    f"p{p.id}",
                    [
                        Text(
                            f"{symbol} {word}", style="dim" if resolved else f"bold {getattr(palette, colour)}", end=""
                        ),
                        Text(visible(p.device_id or "(input)"), style=style, end=""),
                        Text(visible(p.signal or "—"), style=style, end=""),
                        Text(p.check, style=style, end=""),
                        Text(fmt_ts(p.first_ts), style=style, end=""),
                        Text(fmt_ts(p.last_ts), style=style, end=""),
                        Text(str(p.count), style=style, justify="right", end=""),
                        Text(
                            f"resolved {fmt_ts(p.resolved_ts, with_date=False)}" if resolved else "open",
                            style=style,
                            end="",
                        ),
                        Text(visible(short_message(p)), style=style, end=""),
                    ],
                )
            )
        self.sync(rows)
        still = sum(1 for p in problems if p.resolved_ts is None)
        self.border_subtitle = f"{still} open, {len(problems) - still} resolved" if problems else "none"
