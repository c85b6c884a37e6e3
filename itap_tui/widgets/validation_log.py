"""Validation problems (missing rate, range, schema) as they happen, newest last."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import RichLog

from itap_engine.snapshot import ValidationAlertRow
from itap_engine.safe_text import visible
from itap_tui.format import Palette

LEVELS = {"error": ("✖", "ERROR", "critical"), "critical": ("✖", "CRIT", "critical"), "warning": ("▲", "WARN", "warning")}


class ValidationLog(RichLog):
    """Appends each validation alert once; keeps the last ``max_lines``."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=500, wrap=False, markup=False, auto_scroll=True)
        self._seen: set[tuple[object, ...]] = set()
        self.border_title = "Validation"

    def on_mount(self) -> None:
        self.write(Text("✔ no validation problems so far (missing rate, range and schema checks)", style="dim"))
        self._placeholder = True

    def add_alerts(self, alerts: Iterable[ValidationAlertRow], palette: Palette) -> int:
        added = 0
        for alert in sorted(alerts, key=lambda a: a.created_at):
            key = (alert.created_at, alert.check, alert.device_id, alert.signal, alert.message)
            if key in self._seen:
                continue
            self._seen.add(key)
            if getattr(self, "_placeholder", False):
                self.clear()
                self._placeholder = False
            symbol, word, colour = LEVELS.get(alert.level, ("·", alert.level.upper(), "muted"))
            line = Text(no_wrap=True, overflow="ellipsis", end="")
            line.append(alert.created_at.strftime("%H:%M:%S "), style="dim")
            line.append(f"{symbol} {word:<5} ", style=f"bold {getattr(palette, colour)}")
            line.append(f"{alert.check:<12} ", style="bold")
            if alert.device_id:
                line.append(visible(alert.device_id) + " ")
            if alert.signal:
                line.append(visible(alert.signal) + " ", style="dim")
            line.append(visible(alert.message))
            self.write(line)
            added += 1
        if len(self._seen) > 5000:
            self._seen = set(list(self._seen)[-2000:])
        if self._seen:
            self.border_subtitle = f"{len(self._seen)} problems"
        return added
