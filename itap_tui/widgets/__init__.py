"""The console's widgets, one per module."""

from __future__ import annotations

from itap_tui.widgets.anomaly_table import AnomalyTable
from itap_tui.widgets.contributors import ContributorsPanel
from itap_tui.widgets.device_table import DeviceTable
from itap_tui.widgets.engine_status import EngineStatus
from itap_tui.widgets.filter_bar import FilterBar
from itap_tui.widgets.signal_plot import SignalPlot
from itap_tui.widgets.validation_panel import ValidationPanel

__all__ = [
    "AnomalyTable",
    "ContributorsPanel",
    "DeviceTable",
    "EngineStatus",
    "FilterBar",
    "SignalPlot",
    "ValidationPanel",
]
