"""Every key, generated from the bindings of the app and each screen."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def _bindings(bindings: list[BindingType]) -> list[Binding]:
    out = []
    for item in bindings:
        if isinstance(item, Binding):
            out.append(item)
        elif isinstance(item, tuple):
            out.append(Binding(*item))
    return out


class HelpScreen(ModalScreen[None]):
    """Lists ``sections`` of (title, bindings); ``esc``, ``?`` or ``q`` closes it."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
    ]

    def __init__(self, sections: list[tuple[str, list[BindingType]]]) -> None:
        super().__init__(id="help")
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body") as body:
            body.border_title = "Keys (esc to close)"
            yield Static(self._table())

    def _key(self, key: str) -> str:
        shown = self.app.get_key_display(Binding(key, ""))
        if shown == "⏎":
            return "enter"
        if shown.startswith("^") and len(shown) == 2:
            return f"ctrl+{shown[1]}"
        return shown

    def entries(self) -> list[tuple[str, str, str]]:
        """(section, keys as displayed, description) for every binding."""
        out: list[tuple[str, str, str]] = []
        for title, bindings in self.sections:
            seen: set[tuple[str, str]] = set()
            for binding in _bindings(bindings):
                keys = ", ".join(self._key(k.strip()) for k in binding.key.split(","))
                text = binding.tooltip or binding.description
                if (keys, text) in seen or not text:
                    continue
                seen.add((keys, text))
                out.append((title, keys, text))
        return out

    def _table(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(justify="right", style="bold", min_width=12)
        table.add_column()
        section = None
        for title, keys, description in self.entries():
            if title != section:
                section = title
                table.add_row("", "")
                table.add_row(Text(""), Text(title, style="bold underline"))
            table.add_row(Text(keys), Text(description))
        return table

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
