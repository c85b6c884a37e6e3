"""One device: its signals over a window, why it is anomalous, and its history."""

from __future__ import annotations

import time
from datetime import datetime

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Footer, Static, TabbedContent, TabPane

from itap_engine.safe_text import visible
from itap_engine.snapshot import AnomalyRow, DeviceDetail, Snapshot, worth_showing
from itap_tui.format import fmt_dt, fmt_ts, severity_text, status_text
from itap_tui.screens.base import LiveScreen
from itap_tui.screens.signal_picker import SignalPicker
from itap_tui.widgets import ContributorsPanel, EngineStatus, SignalPlot
from itap_tui.widgets.keyed_table import KeyedTable


def simulated_faults(detail: DeviceDetail) -> list[tuple[str, int, int]]:
    """(fault, first ts, last ts) of each run of the simulation's own fault labels in the
    window that no operator command accounts for (those are listed as commands)."""
    commanded = {f.fault for f in detail.faults}
    runs: list[tuple[str, int, int]] = []
    current: tuple[str, int, int] | None = None
    for ts, label in zip(detail.ts, detail.fault_labels, strict=False):
        if current is not None and label == current[0]:
            current = (current[0], current[1], ts)
            continue
        if current is not None:
            runs.append(current)
        current = (label, ts, ts) if label else None
    if current is not None:
        runs.append(current)
    return [run for run in runs if run[0] not in commanded]


WINDOWS: tuple[tuple[float, str], ...] = ((900, "15 min"), (3600, "1 h"), (6 * 3600, "6 h"), (24 * 3600, "24 h"))


class DeviceScreen(LiveScreen):
    """Drill-down for ``device_id``; refreshes its detail as snapshots arrive."""

    BINDINGS = [
        Binding("escape", "back", "Back", tooltip="Back to the previous screen"),
        # listed here too so that the footer shows it at 80 columns (the app's comes last)
        Binding("question_mark", "app.help", "Help", tooltip="Show every key (this screen)"),
        Binding("n", "next_signal", "Next signal", tooltip="Plot the next signal"),
        Binding("N", "previous_signal", "Prev signal", show=False, tooltip="Plot the previous signal"),
        Binding("w", "next_window", "Window", tooltip="Cycle the window: 15 min, 1 h, 6 h, 24 h"),
        Binding("c", "choose_signal", "Signal…", tooltip="Choose the signal to plot from a list"),
        Binding("o", "overlay_signal", "Overlay", tooltip="Overlay a second signal on the plot (right axis)"),
        Binding(
            "h", "next_tab", "History tab", show=False, tooltip="Cycle the history tabs: alerts, faults, quarantine"
        ),
        Binding("a", "acknowledge", "Ack", tooltip="Acknowledge this device's open alert"),
        Binding(
            "s", "toggle_score", "Score plot", tooltip="Show the score plot instead of the signal (small terminals)"
        ),
    ]

    signal_index: reactive[int] = reactive(0)
    window_index: reactive[int] = reactive(1)
    fetching: reactive[bool] = reactive(True)
    """A detail query is in flight; toggles ``-loading``."""
    score_first: reactive[bool] = reactive(False)
    """On a small terminal (one plot fits) show the score plot; toggles ``-score``."""

    def __init__(self, device_id: str) -> None:
        super().__init__()  # no id: a device can open from a screen opened from a device
        self.device_id = device_id
        self.detail: DeviceDetail | None = None
        self._last_fetch = 0.0
        self.fetches = 0
        self._signal_chosen = False
        self.overlay: str | None = None
        self._detail_at: datetime | None = None
        """The past moment the shown detail ends at (None: live)."""
        """A second signal drawn on the right axis of the signal plot (o)."""

    def compose(self) -> ComposeResult:
        yield EngineStatus(id="engine-status")
        yield Static(id="device-header")
        yield Static(id="device-known-good")
        with Horizontal(id="device-body"):
            with Vertical(id="plots"):
                yield SignalPlot(id="signal-plot")
                yield SignalPlot(id="score-plot")
            yield ContributorsPanel(id="contributors")
        with TabbedContent(id="history"):
            with TabPane("Alerts", id="tab-alerts"):
                yield KeyedTable(
                    (
                        ("opened", "Opened (sim)"),
                        ("severity", "Severity"),
                        ("score", "Score"),
                        ("family", "Family"),
                        ("why", "Top signals"),
                        ("ack", "Ack"),
                    ),
                    id="alert-history",
                )
            with TabPane("Faults", id="tab-faults"):
                yield KeyedTable(
                    (
                        ("id", "#"),
                        ("fault", "Fault"),
                        ("status", "Status"),
                        ("start", "Active from (sim)"),
                        ("severity", "Severity"),
                        ("duration", "Duration"),
                        ("message", "Message"),
                    ),
                    id="fault-history",
                )
            with TabPane("Quarantine", id="tab-quarantine"):
                yield KeyedTable(
                    (("when", "When"), ("line", "Line"), ("reason", "Reason"), ("raw", "Raw row")),
                    id="quarantine",
                )
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#alert-history", KeyedTable).focus()
        self.load_detail()

    def on_resize(self) -> None:
        self.set_class(self.size.height < 32, "-compact")

    def watch_fetching(self, fetching: bool) -> None:
        self.set_class(fetching, "-fetching")

    def watch_score_first(self, score_first: bool) -> None:
        self.set_class(score_first, "-score")

    # ------------------------------------------------------------------ data
    @work(exclusive=True, group="device-detail", exit_on_error=False, description="device detail")
    async def load_detail(self) -> None:
        self.fetching = True
        self._last_fetch = time.monotonic()
        at = self.itap.past.stats.sim_time if self.itap.past is not None else None
        self._detail_at = at
        detail = await self.itap.engine.call(
            self.itap.facade.device_detail, self.device_id, WINDOWS[self.window_index][0], at
        )
        self.fetches += 1
        self.detail = detail
        self.fetching = False
        if not self._signal_chosen:
            self._signal_chosen = True
            self._open_on_driver()
        self.show_detail()

    def _open_on_driver(self) -> None:
        """Start on the signal that drives the device's incident (its top contributor)."""
        detail = self.detail
        if detail is None:
            return
        incident = self.current_incident() or next((a for a in detail.alerts if a.alert_id is not None), None)
        contributors = incident.contributors if incident is not None and incident.contributors else detail.contributors
        signals = list(detail.series)
        for item in contributors:
            if item.signal in signals:
                self.set_reactive(DeviceScreen.signal_index, signals.index(item.signal))
                return

    def render_snapshot(self, snapshot: Snapshot) -> None:
        self._header(snapshot)
        past = self.itap.past.stats.sim_time if self.itap.past is not None else None
        if past != self._detail_at or (
            past is None and time.monotonic() - self._last_fetch >= self.itap.detail_refresh_s
        ):
            self.load_detail()  # live: refreshed; time travel: the window that ended then

    def _signals(self) -> tuple[str, ...]:
        snapshot = self.itap.snapshot
        if self.detail is not None:
            return tuple(self.detail.series)
        if snapshot is not None:
            for row in snapshot.devices:
                if row.device_id == self.device_id:
                    return tuple(row.values)
        return ()

    @property
    def signal(self) -> str | None:
        signals = self._signals()
        return signals[self.signal_index % len(signals)] if signals else None

    def _header(self, snapshot: Snapshot | None) -> None:
        """Most important first, so 80 columns still show status, score, signal and window."""
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        text.append(visible(self.device_id), style="bold")
        row = next((r for r in snapshot.devices if r.device_id == self.device_id), None) if snapshot else None
        if row is None:
            text.append("  not in the latest snapshot", style="dim")
        else:
            text.append("  ")
            text.append_text(status_text(row.status, self.palette))
            if row.score is not None:
                text.append(f"  score {row.score:.2f}")
                if row.threshold is not None:
                    text.append(f"/{row.threshold:.2f}", style="dim")
        signals = self._signals()
        if signals:
            text.append(
                f"  │ {self.signal} {self.signal_index % len(signals) + 1}/{len(signals)}", style=self.palette.accent
            )
            if self.overlay and self.overlay != self.signal:
                text.append(f" + {self.overlay}", style="cyan")
        text.append(f"  │ {WINDOWS[self.window_index][1]}", style="dim")
        if row is not None:
            if row.injected_fault:
                text.append("  │ ⚡ ", style=f"bold {self.palette.warning}")
                text.append(visible(row.injected_fault))
            text.append(f"  │ {row.profile}", style="dim")
            if row.site:
                text.append(f" @ {visible(row.site)}", style="dim")
            text.append(f" {visible(row.state or '—')}", style="dim")
        if self.fetching:
            text.append("  loading…", style="dim italic")
        self.query_one("#device-header", Static).update(text)

    def current_incident(self) -> AnomalyRow | None:
        """The device's open incident, or None: a closed one is never shown as current,
        even when the detail was fetched before the snapshot that closed it."""
        detail = self.detail
        if detail is None:
            return None
        snapshot = self.itap.snapshot
        row = next((d for d in snapshot.devices if d.device_id == detail.device_id), None) if snapshot else None
        if row is not None and row.status not in ("warning", "critical"):
            return None
        closed = {a.alert_id for a in snapshot.anomalies if a.status == "closed"} if snapshot else set()
        return next((a for a in detail.alerts if a.status == "open" and a.alert_id not in closed), None)

    def show_detail(self) -> None:
        detail = self.detail
        self._header(self.itap.snapshot)
        if detail is None:
            return
        known = self.query_one("#device-known-good", Static)
        if detail.known_good is not None:
            start, end = detail.known_good
            whose = "its own" if detail.known_good_source == "device" else f"profile {detail.profile}'s"
            known.update(
                Text(
                    f"known-good window ({whose}): {fmt_ts(start) if start is not None else '—'} .. "
                    f"{fmt_ts(end) if end is not None else '—'}",
                    no_wrap=True,
                    overflow="ellipsis",
                )
            )
            known.display = True
        else:
            known.display = False
        profile = self.itap.snapshot.profiles.get(detail.profile) if self.itap.snapshot else None
        unit = profile.units.get(self.signal or "", "") if profile else ""
        current = self.current_incident()
        shown = current or next((a for a in detail.alerts if a.alert_id is not None), None)
        interval = None
        if shown is not None:
            interval = (shown.opened_ts or shown.ts, shown.ts)
        overlay = self.overlay if self.overlay != self.signal else None
        overlay_unit = profile.units.get(overlay or "", "") if profile else ""
        self.query_one("#signal-plot", SignalPlot).show(
            detail, self.signal, unit, interval=interval, overlay=overlay, overlay_unit=overlay_unit
        )
        self.query_one("#score-plot", SignalPlot).show(detail, None, interval=interval)
        if current is not None:
            families = ", ".join(dict.fromkeys([current.family, *(c.family for c in current.contributors)]))
            headline = f"{current.severity} incident #{current.alert_id} since {fmt_ts(current.opened_ts or current.ts)}, peak {current.score:.2f}, {families}"
            self.query_one(ContributorsPanel).show(current.contributors or detail.contributors, self.palette, headline)
        else:
            last = next((a for a in detail.alerts if a.alert_id is not None), None)
            note = (
                f"Last incident #{last.alert_id} is closed (last anomalous reading {fmt_ts(last.ts)})." if last else ""
            )
            self.query_one(ContributorsPanel).show((), self.palette, note)
        palette = self.palette
        self.query_one("#alert-history", KeyedTable).sync(
            [
                (
                    f"a{alert.alert_id if alert.alert_id is not None else alert.ts}",
                    [
                        Text(fmt_ts(alert.opened_ts or alert.ts)),
                        severity_text(alert.severity, palette, alert.acknowledged),
                        Text(f"{alert.score:.3f}"),
                        Text(alert.family or "—"),
                        Text(visible(", ".join(c.signal for c in worth_showing(alert.contributors)) or "—")),
                        Text("✓ yes" if alert.acknowledged else "no"),
                    ],
                )
                for alert in detail.alerts
            ]
        )
        self.query_one("#fault-history", KeyedTable).sync(
            [
                (
                    f"f{fault.id}",
                    [
                        Text(str(fault.id)),
                        Text(fault.fault),
                        Text(fault.status.upper(), style="bold" if fault.status == "active" else ""),
                        Text(fmt_ts(fault.start_ts)),
                        Text(f"{fault.severity:g}"),
                        Text(f"{fault.duration_s:g} s"),
                        Text(visible(fault.message)),
                    ],
                )
                for fault in detail.faults
            ]
            + [
                (
                    f"sim-{start}",
                    [
                        Text("sim", style="dim"),
                        Text(label),
                        Text("SIMULATED" if end < detail.ts[-1] else "SIMULATED, ACTIVE", style="italic"),
                        Text(fmt_ts(start)),
                        Text("—"),
                        Text(f"{(end - start) / 1000:g} s+" if end >= detail.ts[-1] else f"{(end - start) / 1000:g} s"),
                        Text("a fault of the simulation itself (ground truth), not an operator command", style="dim"),
                    ],
                )
                for label, start, end in simulated_faults(detail)
            ]
        )
        self.query_one("#quarantine", KeyedTable).sync(
            [
                (
                    f"q{index}-{item.ts}-{item.line}",
                    [
                        Text(fmt_dt(item.created_at)),
                        Text("—" if item.line is None else str(item.line)),
                        Text(visible(item.reason)),
                        Text(visible(item.raw)),  # a raw CSV row: its escapes are shown, not obeyed
                    ],
                )
                for index, item in enumerate(detail.quarantined)
            ]
        )

    # ------------------------------------------------------------------ actions
    def watch_signal_index(self) -> None:
        if self.is_mounted:
            self.show_detail()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_next_signal(self) -> None:
        self.signal_index += 1

    def action_previous_signal(self) -> None:
        self.signal_index -= 1

    def action_choose_signal(self) -> None:
        signals = self._signals()
        if not signals:
            return

        def chosen(name: str | None) -> None:
            if name:
                self.signal_index = signals.index(name)

        self.app.push_screen(SignalPicker(f"Plot which signal of {self.device_id}?", signals, self.signal), chosen)

    def action_overlay_signal(self) -> None:
        signals = self._signals()
        if not signals:
            return

        def chosen(name: str | None) -> None:
            if name is None:
                return
            self.overlay = name or None
            self.show_detail()

        self.app.push_screen(
            SignalPicker("Overlay which signal (right axis)?", signals, self.overlay, allow_none=True), chosen
        )

    def action_next_window(self) -> None:
        self.window_index = (self.window_index + 1) % len(WINDOWS)
        self.load_detail()

    def action_next_tab(self) -> None:
        tabs = self.query_one(TabbedContent)
        order = ["tab-alerts", "tab-faults", "tab-quarantine"]
        tabs.active = order[(order.index(tabs.active) + 1) % len(order)] if tabs.active in order else order[0]

    @on(TabbedContent.TabActivated)
    def _tab(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane
        tables = pane.query(KeyedTable)
        if tables:
            tables.first().focus()

    def action_acknowledge(self) -> None:
        self.itap.acknowledge_device(self.device_id)

    def action_toggle_score(self) -> None:
        self.score_first = not self.score_first

    def export_records(self) -> tuple[str, list]:  # type: ignore[type-arg]
        """The device's series in the window shown: time, score, every signal, fault."""
        from itap_tui.export import series_records

        return f"{self.device_id}-series", series_records(self.detail) if self.detail is not None else []

    def selected_devices(self) -> list[str]:
        return [self.device_id]
