"""Fault injection, entirely from the keyboard.

``tab`` moves between fields, ``enter`` moves on (and injects from the last field),
``ctrl+s`` injects from anywhere, ``esc`` cancels. Several devices are given as a
comma-separated list; the fault list offers the faults their profile declares.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from itap_engine.snapshot import ProfileInfo
from itap_tui.typeahead import InOrderInput


@dataclass(frozen=True)
class FaultRequest:
    device_ids: tuple[str, ...]
    fault: str
    severity: float
    duration_s: float


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float | None:
    """``600``, ``600s``, ``10m``, ``1.5h`` -> seconds; None if not understood."""
    match = _DURATION.match(text)
    if not match:
        return None
    value = float(match.group(1))
    unit = (match.group(2) or "s").lower()
    return value * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[unit]


class FaultTypes(OptionList):
    """The fault list: ``enter`` chooses and moves on at once, so that what is typed
    right after it (the severity) goes to the next field, not to this list."""

    def action_select(self) -> None:
        super().action_select()
        if self.has_focus:
            self.screen.focus_next()


class FaultModal(ModalScreen[FaultRequest | None]):
    """Choose device(s), fault, severity and duration; returns a :class:`FaultRequest`."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Inject"),
    ]

    def __init__(self, devices: list[str], profile_of: Mapping[str, str], profiles: Mapping[str, ProfileInfo]) -> None:
        super().__init__(id="fault-modal")
        self.initial = devices
        self.profile_of = profile_of
        self.profiles = profiles

    def compose(self) -> ComposeResult:
        with Vertical(id="fault-dialog") as dialog:
            dialog.border_title = "⚡ Inject a fault"
            yield Label("Device(s), comma separated")
            yield InOrderInput(", ".join(self.initial), id="fault-devices")
            yield Label("Fault type (↑/↓)")
            yield FaultTypes(id="fault-types")
            yield Static(id="fault-chosen")
            with Horizontal(id="fault-numbers"):
                with Vertical():
                    yield Label("Severity (0.1 – 5)")
                    yield InOrderInput("1.0", id="fault-severity")
                with Vertical():
                    yield Label("Duration (600, 10m, 1h)")
                    yield InOrderInput("10m", id="fault-duration")
            yield Static(id="fault-error")
            with Horizontal(id="fault-buttons"):
                yield Button("Inject  ctrl+s", id="fault-inject", variant="error")
                yield Button("Cancel  esc", id="fault-cancel")

    def on_mount(self) -> None:
        self._refresh_faults()
        if self.initial:
            self.query_one("#fault-types", OptionList).focus()
        else:
            self.query_one("#fault-devices", Input).focus()

    def _devices(self) -> list[str]:
        text = self.query_one("#fault-devices", Input).value
        return [part.strip() for part in text.split(",") if part.strip()]

    def _faults_for(self, devices: list[str]) -> list[str]:
        names: list[str] | None = None
        for device in devices:
            profile = self.profiles.get(self.profile_of.get(device, ""))
            faults = list(profile.faults) if profile else []
            names = faults if names is None else [f for f in names if f in faults]
        return names or []

    def _refresh_faults(self) -> None:
        options = self.query_one("#fault-types", OptionList)
        keep = options.highlighted_option.id if options.highlighted_option else None
        faults = self._faults_for(self._devices())
        options.clear_options()
        options.add_options([Option(Text(name), id=name) for name in faults])
        if faults:
            options.highlighted = faults.index(keep) if keep in faults else 0

    @on(Input.Changed, "#fault-devices")
    def _devices_changed(self) -> None:
        self._refresh_faults()
        self._error("")

    @on(Input.Submitted)
    def _next_field(self, event: Input.Submitted) -> None:
        if event.input.id == "fault-duration":
            self.action_submit()
        else:
            self.focus_next()

    @on(OptionList.OptionHighlighted, "#fault-types")
    def _fault_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        chosen = Text("▶ ", style="bold")
        chosen.append(event.option.id or "", style="bold")
        chosen.append("  (enter to choose)", style="dim")
        self.query_one("#fault-chosen", Static).update(chosen)

    @on(OptionList.OptionSelected, "#fault-types")
    def _fault_chosen(self) -> None:
        if self.query_one("#fault-types").has_focus:  # chosen with the mouse
            self.focus_next()

    @on(Button.Pressed, "#fault-inject")
    def _inject_pressed(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#fault-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def _error(self, message: str) -> None:
        widget = self.query_one("#fault-error", Static)
        widget.update(Text(message))
        widget.set_class(bool(message), "-visible")

    def validate(self) -> FaultRequest | str:
        devices = self._devices()
        if not devices:
            return "Name at least one device."
        unknown = [d for d in devices if d not in self.profile_of]
        if unknown:
            return f"Unknown device: {', '.join(unknown)}."
        options = self.query_one("#fault-types", OptionList)
        option = options.highlighted_option
        if option is None or option.id is None:
            return "These devices share no fault type (mixed profiles?)."
        try:
            severity = float(self.query_one("#fault-severity", Input).value)
        except ValueError:
            return "Severity must be a number, e.g. 1.0."
        if not 0 < severity <= 5:
            return "Severity must be between 0.1 and 5."
        duration = parse_duration(self.query_one("#fault-duration", Input).value)
        if duration is None or duration <= 0:
            return "Duration must be like 600, 600s, 10m or 1h."
        return FaultRequest(tuple(devices), option.id, severity, duration)

    def action_submit(self) -> None:
        result = self.validate()
        if isinstance(result, str):
            self._error(result)
            return
        self.dismiss(result)

    def action_cancel(self) -> None:
        self.dismiss(None)
