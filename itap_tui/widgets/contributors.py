"""Why a device is anomalous: the contributing signals of its current alert."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from itap_engine.snapshot import MIN_SHOWN_SHARE, ContributorView
from itap_tui.format import Palette, bar


class ContributorsPanel(Static):
    """A ranked list of signals with their share of the anomaly and their family; those
    under :data:`MIN_SHOWN_SHARE` are left out (noise to an operator)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Why (contributors)"

    def show(self, contributors: Sequence[ContributorView], palette: Palette, headline: str = "") -> None:
        text = Text("Why (contributors)\n", style="bold underline", end="")
        if headline:
            text.append(headline + "\n", style="bold")
        if not contributors:
            text.append("No open incident: nothing to explain now.", style="dim")
            self.update(text)
            return
        shown = [c for c in contributors if c.share >= MIN_SHOWN_SHARE] or list(contributors[:1])
        for index, item in enumerate(shown):
            if index:
                text.append("\n")
            text.append(f"{index + 1}. ", style="dim")
            text.append(item.signal, style="bold")
            text.append(f" {item.family}\n", style="dim")
            text.append(f"   {bar(item.share, 12)}", style=palette.accent)
            text.append(f" {item.share:>4.0%}")
        self.update(text)
