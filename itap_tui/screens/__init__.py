"""The console's screens, one per module."""

from __future__ import annotations

from itap_tui.screens.anomalies import AnomaliesScreen
from itap_tui.screens.bootstrap import BootstrapScreen
from itap_tui.screens.device import DeviceScreen
from itap_tui.screens.events import EventsScreen
from itap_tui.screens.fault_modal import FaultModal, FaultRequest
from itap_tui.screens.fleet import FleetScreen
from itap_tui.screens.help import HelpScreen
from itap_tui.screens.history import HistoryScreen
from itap_tui.screens.prompt import PromptModal
from itap_tui.screens.signal_picker import SignalPicker

__all__ = [
    "AnomaliesScreen",
    "BootstrapScreen",
    "DeviceScreen",
    "EventsScreen",
    "FaultModal",
    "FaultRequest",
    "FleetScreen",
    "HelpScreen",
    "HistoryScreen",
    "PromptModal",
    "SignalPicker",
]
