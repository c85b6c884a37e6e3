"""The ITAP operations console: a Textual app over an :class:`EngineFacade`.

How data moves:

* The facade lives on its own event loop in a thread (:mod:`itap_tui.engine_thread`);
  its snapshots reach the app as :class:`ItapApp.SnapshotArrived` messages (posted
  thread-safely) and are rendered at most once per message-queue drain, newest wins.
* Operator commands (inject, acknowledge, retrain, pause, device detail) run in
  workers that await the engine thread; one :meth:`on_worker_state_changed` handler
  reports their failures.
* Visible screens render the snapshot; a screen coming back into view catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events, on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from itap_engine.safe_text import visible_lines
from itap_engine.snapshot import AnomalyRow, EngineFacade, FaultCommandView, Progress, Snapshot
from itap_tui.engine_thread import EngineThread
from itap_tui.format import Palette, fmt_dt, fmt_ts
from itap_tui.screens import (
    AnomaliesScreen,
    BootstrapScreen,
    DeviceScreen,
    EventsScreen,
    FaultModal,
    FaultRequest,
    FleetScreen,
    HelpScreen,
    HistoryScreen,
    PromptModal,
)
from itap_tui.screens.base import LiveScreen
from itap_tui.screens.fault_modal import parse_duration
from itap_tui.state import load_state, save_state
from itap_tui.typeahead import TypeAhead
from itap_tui.widgets.device_table import SORTS as FLEET_SORTS
from itap_tui.widgets.navigation import NAV_BINDINGS

if TYPE_CHECKING:
    from itap_engine.config import Settings

log = logging.getLogger(__name__)

READ_ONLY_REFUSED = frozenset(
    {
        "inject_fault",
        "retrain",
        "time_travel",
        "live",
        "acknowledge",
        "unacknowledge",
        "acknowledge_all",
        "mute",
        "maintenance",
        "note",
    }
)
"""Actions a replay refuses (it cannot write, and it is the past already): its help
leaves them out."""

GC_FULL_EVERY = 100
"""Younger collections before a full one while the console runs (CPython's default:
10); see :meth:`ItapApp._freeze_long_lived`."""

DARK = Palette(ok="#4EBF71", warning="#ffa62b", critical="#ff5f6d", accent="#58a6ff", muted="dim")
LIGHT = Palette(ok="#1a7f37", warning="#9a6700", critical="#cf222e", accent="#0550ae", muted="dim")


class ItapApp(App[int]):
    """The console. ``facade`` is any :class:`EngineFacade`; the app starts and stops it."""

    CSS_PATH = "app.tcss"
    TITLE = "ITAP"
    SUB_TITLE = "fleet telemetry"

    BINDINGS = [
        Binding("question_mark", "help", "Help", tooltip="Show every key (this screen)"),
        Binding("f", "inject_fault", "Fault", tooltip="Inject a fault on the highlighted device(s)"),
        Binding("p", "toggle_pause", "Pause", tooltip="Pause or resume live updates and the engine's ticks"),
        Binding("r", "retrain", "Retrain", show=False, tooltip="Retrain the detection models"),
        Binding("1", "fleet", "Fleet", show=False, tooltip="Go to the fleet table"),
        Binding("2", "anomalies", "Anomalies", show=False, tooltip="Go to the anomalies list"),
        Binding("3", "history", "History", show=False, tooltip="Incident history: every incident in a time range"),
        Binding(
            "l",
            "events",
            "Events",
            show=False,
            tooltip="Events: engine warnings, faults, retrains, validation, incidents",
        ),
        Binding(
            "t",
            "time_travel",
            "Time",
            show=False,
            tooltip="Show the fleet and incidents at a past time (-2h, 05:00); t again: live",
        ),
        Binding("escape", "live", "Live", show=False, tooltip="Back to live from a past time"),
        Binding("e", "export('csv')", "Export", show=False, tooltip="Export the table on screen (as filtered) to CSV"),
        Binding(
            "E", "export('json')", "Export JSON", show=False, tooltip="Export the table on screen (as filtered) to JSON"
        ),
        Binding("ctrl+t", "toggle_theme", "Dark/light theme", show=False),
        Binding("q", "quit", "Quit", tooltip="Stop the engine cleanly and quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    ui_paused: reactive[bool] = reactive(False)
    """Live updates paused by the operator (``p``)."""

    @dataclass
    class SnapshotArrived(Message):
        snapshot: Snapshot

    @dataclass
    class EngineProgress(Message):
        progress: Progress

    def __init__(
        self,
        facade: EngineFacade,
        *,
        detail_refresh_s: float = 2.0,
        theme: str | None = None,
        export_dir: Path | None = None,
        state_file: Path | None = None,
    ) -> None:
        super().__init__()
        self.export_dir = export_dir or Path.cwd() / "itap-exports"
        """Where ``e``/``E`` write (``<data_dir>/exports`` from ``itap``)."""
        self.past: Snapshot | None = None
        """The past moment shown instead of live (``t``), or None."""
        self._live: Snapshot | None = None
        self.start_at: str | None = None
        """``itap console --at``: the moment to show once the engine is up."""
        self.facade = facade
        self.engine = EngineThread()
        self.snapshot: Snapshot | None = None
        self.fault_marks: dict[str, tuple[str, str]] = {}
        """device -> (fault, state) for faults injected from this console."""
        self.status_note = ""
        self.detail_refresh_s = detail_refresh_s
        self.fault_watch_s = 120.0
        self.engine_started = False
        self.engine_stopped = False
        self.start_error: str | None = None
        self.stopping = False
        self.rendered_seq = -1
        self._pause_seq = -1
        self._pending: Snapshot | None = None
        self._render_scheduled = False
        self._gc_threshold: tuple[int, int, int] | None = None
        self._unsubscribe = None
        self._palette: tuple[str, Palette] | None = None
        self.state_file = state_file
        """Where the chosen theme is remembered (``<data_dir>/console.json`` from ``itap``)."""
        remembered = load_state(state_file).get("theme")
        if remembered not in self.available_themes:
            remembered = None
        self._remembered_theme = theme or os.environ.get("ITAP_THEME") or remembered or "textual-dark"
        self.theme = self._remembered_theme
        self.fleet_screen = FleetScreen()
        self.last_export: Path | None = None
        self.type_ahead = TypeAhead(self)
        """The input just opened (``/``), which gets the keys typed ahead of its focus."""

    # ------------------------------------------------------------------ look
    @property
    def palette(self) -> Palette:
        if self._palette is None or self._palette[0] != self.theme:
            self._palette = (self.theme, DARK if self.current_theme.dark else LIGHT)
        return self._palette[1]

    def watch_theme(self) -> None:
        if self.theme != self._remembered_theme and save_state(self.state_file, theme=self.theme):
            self._remembered_theme = self.theme  # the palette's theme picker, ctrl+t
        if self.snapshot is not None and self.is_running:
            self._render(self.snapshot, force=True)

    def notify(self, message: str, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Textual's toast, with control characters from data (device ids, error
        messages) shown as escapes rather than sent to the terminal."""
        super().notify(visible_lines(message), *args, **kwargs)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key) and not event.is_forwarded:
            if await self.type_ahead.early(event) or self.type_ahead.hold(event):
                return  # typed right after / or t: the input's, in order; after its enter: later
            self.type_ahead.sent(event, self.focused or self.screen)
        await super().on_event(event)

    async def on_key(self, event: events.Key) -> None:
        """A key no widget took, on its way to the bindings: typed ahead of a focus move,
        it is the newly focused widget's (``/pump`` filters, it does not pause)."""
        await self.type_ahead.hand_on(event, self.focused)

    # ------------------------------------------------------------------ lifecycle
    def on_mount(self) -> None:
        self._unsubscribe = self.facade.subscribe(self._from_engine)
        self.install_screen(AnomaliesScreen(), "anomalies")
        self.push_screen(self.fleet_screen)
        self.push_screen(BootstrapScreen())
        self.start_engine()

    def _from_engine(self, snapshot: Snapshot) -> None:
        """Subscriber callback; may run on the engine thread."""
        self.post_message(self.SnapshotArrived(snapshot))

    def _progress(self, progress: Progress) -> None:
        self.post_message(self.EngineProgress(progress))

    @work(exclusive=True, group="engine-start", exit_on_error=False, description="start the engine")
    async def start_engine(self) -> None:
        await self.engine.call(self.facade.start, self._progress)
        self.engine_started = True
        latest = await self.engine.call_sync(self.facade.latest)
        if latest is not None:
            self.post_message(self.SnapshotArrived(latest))
        for screen in self.screen_stack:
            if isinstance(screen, BootstrapScreen):
                screen.finish()  # under the help screen it leaves when that closes
        self._freeze_long_lived()

    def _freeze_long_lived(self) -> None:
        """Keep Python's full garbage collections short and rare while the console runs.

        A full collection walks every tracked object holding the GIL, and a key
        pressed meanwhile waits: with a 10,000-device fleet they took 80-180 ms every
        few ticks. What exists once the engine has started (modules, screens, the
        engine's models and state) is frozen out of later collections; what is frozen
        is still freed when no longer referenced, only cycles among it wait for
        :meth:`on_unmount`. Full collections then wait for :data:`GC_FULL_EVERY`
        younger ones instead of 10 (at 10k devices one a minute instead of one every
        few seconds; the cyclic garbage between them is a few MB).
        """
        gc.collect()
        gc.freeze()
        if self._gc_threshold is None:  # what on_unmount restores
            self._gc_threshold = gc.get_threshold()
        young, middle, _ = self._gc_threshold
        gc.set_threshold(young, middle, GC_FULL_EVERY)

    def on_unmount(self) -> None:
        gc.unfreeze()
        if self._gc_threshold is not None:
            gc.set_threshold(*self._gc_threshold)

    @on(EngineProgress)
    def _on_progress(self, message: EngineProgress) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, BootstrapScreen):
                screen.progress(message.progress)

    @on(SnapshotArrived)
    def _on_snapshot(self, message: SnapshotArrived) -> None:
        if self._pending is None or message.snapshot.seq >= self._pending.seq:
            self._pending = message.snapshot
        if not self._render_scheduled:
            self._render_scheduled = True
            self.call_later(self._render_pending)

    def _render_pending(self) -> None:
        self._render_scheduled = False
        snapshot, self._pending = self._pending, None
        if snapshot is None:
            return
        if self.past is not None:  # showing the past: keep the newest for the way back
            self._live = snapshot
            return
        self.snapshot = snapshot
        if self.start_at and snapshot.stats.sim_time is not None:  # itap console --at
            at, self.start_at = self.start_at, None
            self.travel_to(at)
        injected = {row.device_id: row.injected_fault for row in snapshot.devices}
        for device, (fault, state) in list(self.fault_marks.items()):
            if state == "ACTIVE" and injected.get(device) != fault:
                del self.fault_marks[device]  # the fault has run its course
        self._render(snapshot)

    def visible_screens(self) -> list[Screen]:
        """The top screen and, under modals, the screens that show through."""
        out: list[Screen] = []
        for screen in reversed(self.screen_stack):
            out.append(screen)
            if not screen.is_modal:
                break
        return out

    def _render(self, snapshot: Snapshot, force: bool = False) -> None:
        for screen in self.visible_screens():
            if isinstance(screen, LiveScreen):
                if self.ui_paused and not force:
                    screen.refresh_status()
                else:
                    screen.show_snapshot(snapshot)
        if not self.ui_paused:
            self.rendered_seq = snapshot.seq

    async def action_quit(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.status_note = "stopping the engine…"
        for screen in self.visible_screens():
            if isinstance(screen, LiveScreen):
                screen.refresh_status()
        self.stop_engine()

    @work(exclusive=True, group="engine-stop", exit_on_error=False, description="stop the engine")
    async def stop_engine(self) -> None:
        self.workers.cancel_group(self, "engine-start")
        try:
            await asyncio.wait_for(self.engine.call(self.facade.stop), timeout=30)
            self.engine_stopped = True
        finally:
            if self._unsubscribe is not None:
                self._unsubscribe()
            self.engine.shutdown()
            if self.start_error is not None:
                self.exit(1, message=Text(f"itap: error: the engine could not start: {self.start_error}"))
            else:
                self.exit(0 if self.engine_stopped else 1)

    # ------------------------------------------------------------------ navigation
    def action_fleet(self) -> None:
        while len(self.screen_stack) > 1 and self.screen is not self.fleet_screen:
            if isinstance(self.screen, BootstrapScreen):
                return
            self.pop_screen()

    def action_anomalies(self) -> None:
        if isinstance(self.screen, (AnomaliesScreen, BootstrapScreen)):
            return
        self.action_fleet()
        self.push_screen("anomalies")

    # ------------------------------------------------------------------ the past
    def action_time_travel(self) -> None:
        if self.past is not None or self.travelling:
            self.action_live()
            return
        if self.snapshot is None or isinstance(self.screen, BootstrapScreen) or self.screen.is_modal:
            return

        def chosen(answer: str | None) -> None:
            if answer and answer.strip():
                self.travel_to(answer)

        self.push_screen(
            PromptModal("Show the fleet at (data time, UTC): -2h, -30m, 05:00 or 2026-01-01 05:00", "-1h"), chosen
        )

    def data_clock(self) -> datetime | None:
        """The live data clock: the simulated time of the newest live snapshot."""
        live = self._live or self.snapshot
        return live.stats.sim_time if live is not None else None

    def travel_to(self, text: str) -> None:
        from itap_tui.timepick import parse_moment

        now = self.data_clock()
        if now is None:
            self.notify("No simulated clock yet: nothing to go back to.", severity="warning", markup=False)
            return
        moment = parse_moment(text, now)
        if moment is None:
            self.notify(f"Not a time: {text!r} (try -2h, 05:00 or 2026-01-01 05:00).", severity="error", markup=False)
            return
        if moment >= now.replace(tzinfo=None):
            self.action_live()
            return
        self.run_travel(moment)

    @property
    def travelling(self) -> bool:
        """A past time is loading (``t`` again or ``esc`` cancels it)."""
        return any(w.group == "time-travel" and not w.is_finished for w in self.workers)

    @work(exclusive=True, group="time-travel", exit_on_error=False, description="show a past time")
    async def run_travel(self, moment) -> None:  # type: ignore[no-untyped-def]
        past = await self.engine.call(self.facade.snapshot_at, moment)
        if self.past is None:
            self._live = self.snapshot
        self.past = past
        self.snapshot = past
        self._render(past, force=True)
        self.notify(f"Showing {fmt_dt(moment)} (sim), not live: t or esc returns.", markup=False, timeout=6)

    def action_live(self) -> None:
        # a past time still loading is not shown once the operator asked for live
        self.workers.cancel_group(self, "time-travel")
        if self.past is None:
            return
        self.past = None
        live, self._live = self._live, None
        if live is not None:
            self.snapshot = live
            self._render(live, force=True)
        self.notify("Live again.", markup=False, timeout=3)

    def action_events(self) -> None:
        if isinstance(self.screen, (EventsScreen, BootstrapScreen)) or self.screen.is_modal:
            return
        self.push_screen(EventsScreen())

    def action_history(self) -> None:
        if isinstance(self.screen, (HistoryScreen, BootstrapScreen)) or self.screen.is_modal:
            return
        self.push_screen(HistoryScreen())

    def open_device(self, device_id: str) -> None:
        self.push_screen(DeviceScreen(device_id))

    def _context_screen(self) -> Screen:
        for screen in reversed(self.screen_stack):
            if not screen.is_modal:
                return screen
        return self.screen

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
            return
        everywhere = [
            Binding(b.key, b.action, b.description, tooltip=self.pause_help()) if b.action == "toggle_pause" else b
            for b in self.BINDINGS
            if isinstance(b, Binding)
        ]
        sections = [
            ("Everywhere", [*everywhere, Binding("ctrl+p", "command_palette", "Command palette")]),
            (
                "Fleet",
                [
                    *FleetScreen.BINDINGS,
                    Binding("enter", "", "Open the highlighted device"),
                    Binding("up,down,pageup,pagedown", "", "Move"),
                ],
            ),
            ("Tables", [Binding(b.key, b.action, b.description) for b in NAV_BINDINGS]),
            (
                "Anomalies",
                [*AnomaliesScreen.BINDINGS, Binding("enter", "", "Open the device of the highlighted anomaly")],
            ),
            ("Device", [b for b in DeviceScreen.BINDINGS if b.action != "app.help"]),  # listed under Everywhere
            ("Events", [*EventsScreen.BINDINGS]),
            ("Incident history", [*HistoryScreen.BINDINGS, Binding("enter", "", "Open the incident's device")]),
            (
                "Fault dialog",
                [
                    Binding("tab,shift+tab", "", "Next / previous field"),
                    Binding("up,down", "", "Choose the fault type"),
                    Binding("enter", "", "Next field (injects from the last)"),
                    *FaultModal.BINDINGS,
                ],
            ),
            (
                "Filter (after /)",
                [Binding("enter", "", "Apply and return to the table"), Binding("escape", "", "Clear the filter")],
            ),
        ]
        if self.read_only:  # list only what works here: no writes, no time travel, no fault dialog
            sections = [
                (title, [b for b in bindings if b.action not in READ_ONLY_REFUSED])
                for title, bindings in sections
                if title != "Fault dialog"
            ]
        self.push_screen(HelpScreen(sections))

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    # ------------------------------------------------------------------ commands
    def watch_ui_paused(self, paused: bool) -> None:
        if self.snapshot is not None and not paused:
            self._render(self.snapshot)
        else:
            for screen in self.visible_screens():
                if isinstance(screen, LiveScreen):
                    screen.refresh_status()

    def shows_paused(self, snapshot: Snapshot | None) -> bool:
        """Paused as the status line should say: the operator's choice wins until a newer snapshot."""
        if snapshot is None or snapshot.seq <= self._pause_seq:
            return self.ui_paused
        return self.ui_paused or snapshot.stats.paused

    @property
    def attached(self) -> bool:
        """Showing a database another process writes: ``p`` cannot pause that engine."""
        return getattr(self.facade, "mode", "live") == "attached"

    @property
    def read_only(self) -> bool:
        """Playing stored history (``itap replay``): writes and time travel are refused."""
        return getattr(self.facade, "mode", "live") == "replay"

    def pause_help(self) -> str:
        if self.attached:
            return "Pause or resume this view only (the engine in the other process keeps running)"
        return "Pause or resume live updates and the engine's ticks"

    def action_toggle_pause(self) -> None:
        self._pause_seq = self.snapshot.seq if self.snapshot is not None else -1
        self.ui_paused = not self.ui_paused
        if self.attached:
            text = "View paused (the engine keeps running): p resumes" if self.ui_paused else "View resumed"
        else:
            text = "Live updates and the engine paused: p resumes" if self.ui_paused else "Live updates resumed"
        self.notify(text, timeout=3)
        self.set_engine_paused(self.ui_paused)

    @work(exclusive=True, group="pause", exit_on_error=False, description="pause the engine")
    async def set_engine_paused(self, paused: bool) -> None:
        await self.engine.call_sync(self.facade.set_paused, paused)

    def action_retrain(self) -> None:
        self.notify("Retraining the models…", timeout=3)
        self.retrain()

    @work(exclusive=True, group="retrain", exit_on_error=False, description="retrain")
    async def retrain(self) -> None:
        done = await self.engine.call(self.facade.retrain, None)
        if done is None:
            self.notify("Retrain requested: the engine runs it on its next tick.", markup=False)
            return
        versions = ", ".join(f"{p} v{v}" for p, v in sorted(done.items()) if v is not None)
        if not versions:
            self.notify("Retrain failed: see the status line for the error.", severity="error", markup=False)
            return
        self.notify(f"Retrained: {versions} (scoring from the next tick).", markup=False)

    def action_inject_fault(self) -> None:
        if self.snapshot is None or isinstance(self.screen, (FaultModal, BootstrapScreen)):
            return
        context = self._context_screen()
        devices = context.selected_devices() if hasattr(context, "selected_devices") else []
        profile_of = {row.device_id: row.profile for row in self.snapshot.devices}
        self.push_screen(FaultModal(devices, profile_of, self.snapshot.profiles), self._fault_chosen)

    def ask_scenario(self) -> None:
        from itap_tui.scenario_player import ask_scenario

        ask_scenario(self)

    def _fault_chosen(self, request: FaultRequest | None) -> None:
        if request is not None:
            self.inject(request)

    @work(group="commands", exit_on_error=False, description="inject a fault")
    async def inject(self, request: FaultRequest) -> None:
        for device in request.device_ids:
            self.fault_marks[device] = (request.fault, "sent")
        self._rerender()
        results = await self.engine.call(
            self.facade.inject_fault, list(request.device_ids), request.fault, request.severity, request.duration_s
        )
        waiting = []
        for command in results:
            if command.status == "rejected":
                self.fault_marks.pop(command.device_id, None)
                self.notify(f"Fault on {command.device_id} rejected: {command.message}", severity="error", markup=False)
                continue
            when = f"active from {fmt_ts(command.start_ts)} (sim)" if command.start_ts else "starts with the next tick"
            self.notify(
                f"⚡ {command.fault} on {command.device_id}: {command.status}, {when}, for {command.duration_s:g} s",
                title="Fault injected",
                markup=False,
                timeout=6,
            )
            state = "ACTIVE" if command.status == "active" else "pending"
            self.fault_marks[command.device_id] = (command.fault, state)
            if state != "ACTIVE":
                waiting.append(command)
        self._rerender()
        for command in waiting:
            self.watch_fault(command)

    @work(group="fault-watch", exit_on_error=False, description="watch an injected fault")
    async def watch_fault(self, command: FaultCommandView) -> None:
        """Confirm when an injected fault becomes active (the engine starts it on a tick)."""
        deadline = asyncio.get_running_loop().time() + self.fault_watch_s
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.5)
            detail = await self.engine.call(self.facade.device_detail, command.device_id, 60)
            current = next((f for f in detail.faults if f.id == command.id), None)
            if current is None or current.status == "pending":
                continue
            if current.status == "rejected":
                self.fault_marks.pop(command.device_id, None)
                self.notify(f"Fault on {command.device_id} rejected: {current.message}", severity="error", markup=False)
            else:
                self.fault_marks[command.device_id] = (command.fault, "ACTIVE")
                self.notify(
                    f"⚡ {command.fault} is ACTIVE on {command.device_id} since {fmt_ts(current.start_ts)} (sim)",
                    title="Fault active",
                    markup=False,
                    timeout=8,
                )
            self._rerender()
            return

    def _rerender(self) -> None:
        if self.snapshot is not None:
            self._render(self.snapshot)

    def acknowledge_device(self, device_id: str) -> None:
        snapshot = self.snapshot
        alert = None
        if snapshot is not None:
            alert = next(
                (
                    a
                    for a in snapshot.anomalies
                    if a.device_id == device_id and a.alert_id is not None and not a.acknowledged
                ),
                None,
            )
        if alert is None or alert.alert_id is None:
            self.notify(f"{device_id} has no unacknowledged alert.", severity="warning", markup=False)
            return
        self.acknowledge(alert.alert_id, device_id)

    def acknowledge(self, alert_id: int, device_id: str) -> None:
        self.run_acknowledge(alert_id, device_id)

    @work(group="commands", exit_on_error=False, description="acknowledge an alert")
    async def run_acknowledge(self, alert_id: int, device_id: str) -> None:
        await self.engine.call(self.facade.acknowledge, alert_id)
        self.notify(f"Incident #{alert_id} on {device_id} acknowledged (u undoes).", markup=False, timeout=4)

    def device_incident(self, device_id: str) -> AnomalyRow | None:
        """The device's open incident in the newest snapshot."""
        snapshot = self.snapshot
        if snapshot is None:
            return None
        return next(
            (
                a
                for a in snapshot.anomalies
                if a.device_id == device_id and a.alert_id is not None and a.status == "open"
            ),
            None,
        )

    def unacknowledge(self, row: AnomalyRow | None) -> None:
        """Undo the acknowledgement of an incident."""
        if row is None or row.alert_id is None or not row.acknowledged:
            self.notify("Nothing to undo: no acknowledged incident here.", severity="warning", markup=False)
            return
        self.run_unacknowledge(row.alert_id, row.device_id)

    @work(group="commands", exit_on_error=False, description="undo an acknowledgement")
    async def run_unacknowledge(self, alert_id: int, device_id: str) -> None:
        await self.engine.call(self.facade.acknowledge, alert_id, False)
        self.notify(f"Incident #{alert_id} on {device_id} is unacknowledged again.", markup=False, timeout=4)

    def acknowledge_all(self, rows: Iterable[AnomalyRow], what: str) -> None:
        """Acknowledge every open, unacknowledged incident among ``rows`` (the filtered table)."""
        ids = sorted({r.alert_id for r in rows if r.alert_id is not None and r.status == "open" and not r.acknowledged})
        if not ids:
            self.notify(f"No unacknowledged incident in {what}.", severity="warning", markup=False)
            return
        self.run_acknowledge_all(ids, what)

    @work(group="commands", exit_on_error=False, description="acknowledge incidents")
    async def run_acknowledge_all(self, ids: list[int], what: str) -> None:
        for alert_id in ids:
            await self.engine.call(self.facade.acknowledge, alert_id)
        self.notify(f"{len(ids)} incident(s) in {what} acknowledged.", markup=False, timeout=5)

    def ask_note(self, row: AnomalyRow | None) -> None:
        """Ask for a short note on an incident (empty clears it)."""
        if row is None or row.alert_id is None:
            self.notify("No incident here to note.", severity="warning", markup=False)
            return
        alert_id = row.alert_id

        def chosen(answer: str | None) -> None:
            if answer is not None:
                self.run_note(alert_id, answer)

        self.push_screen(
            PromptModal(
                f"Note on incident #{alert_id} ({row.device_id}); empty clears it",
                row.note,
                placeholder="e.g. crew on site, bearing ordered",
            ),
            chosen,
        )

    @work(group="commands", exit_on_error=False, description="note an incident")
    async def run_note(self, alert_id: int, text: str) -> None:
        await self.engine.call(self.facade.note, alert_id, text)
        self.notify(f"Note on incident #{alert_id} {'saved' if text.strip() else 'cleared'}.", markup=False, timeout=4)

    def ask_mute(self, device_id: str | None) -> None:
        """Ask how long to mute a device (data time); 0 lifts a mute."""
        if device_id is None:
            return
        muted = self.snapshot.silenced.get(device_id) if self.snapshot is not None else None
        question = f"Mute {device_id}: no new incident for (e.g. 30m, 2h; 0 lifts the mute)"
        if muted:
            question += f"; now {muted[1]} until {fmt_ts(muted[0])} (sim)"

        def chosen(answer: str | None) -> None:
            if answer is None:
                return
            seconds = parse_duration(answer.strip())
            if seconds is None:
                self.notify(f"Not a duration: {answer!r} (try 30m or 2h).", severity="error", markup=False)
                return
            self.run_mute(device_id, seconds or None)

        self.push_screen(PromptModal(question, "1h"), chosen)

    def ask_maintenance(self, device_id: str | None) -> None:
        """Ask for a maintenance window on a device from now (data time): a duration and
        an optional reason; stored like a mute, shown as maintenance; 0 ends it."""
        if device_id is None:
            return

        def chosen(answer: str | None) -> None:
            if answer is None:
                return
            length, _, reason = answer.strip().partition(" ")
            seconds = parse_duration(length)
            if seconds is None:
                self.notify(f"Not a duration: {length!r} (try 2h or 30m).", severity="error", markup=False)
                return
            why = f"maintenance: {reason.strip()}" if reason.strip() else "maintenance"
            self.run_mute(device_id, seconds or None, why)

        self.push_screen(
            PromptModal(
                f"Maintenance on {device_id} from now: how long, then why (e.g. 2h bearing swap; 0 ends it)",
                "2h",
                placeholder="2h bearing swap",
            ),
            chosen,
        )

    @work(group="commands", exit_on_error=False, description="mute a device")
    async def run_mute(self, device_id: str, seconds: float | None, reason: str = "") -> None:
        until = await self.engine.call(self.facade.mute, device_id, seconds, reason)
        what = "in maintenance" if reason.startswith("maintenance") else "muted"
        if until is None:
            self.notify(f"{device_id} is no longer {what}.", markup=False, timeout=4)
        else:
            self.notify(f"{device_id} {what} until {fmt_ts(until)} (sim): no new incident.", markup=False, timeout=5)

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        message = f"{type(error).__name__}: {error}" if error is not None else "unknown error"
        # a toast is gone after 10 s: the log file keeps what failed, with its traceback
        log.error("%s failed: %s", event.worker.description or event.worker.name, message, exc_info=error)
        if event.worker.group == "engine-start":
            self.start_error = message
            for screen in self.screen_stack:
                if isinstance(screen, BootstrapScreen):
                    screen.fail(message)
            return
        if event.worker.group == "engine-stop":
            self.exit(1, message=Text(f"itap: error: the engine did not stop cleanly: {message}"))
            return
        self.notify(
            f"{event.worker.description or event.worker.name} failed: {message}",
            severity="error",
            markup=False,
            timeout=10,
        )

    def action_export(self, fmt: str = "csv") -> None:
        context = self._context_screen()
        if not hasattr(context, "export_records"):
            self.notify("Nothing to export on this screen.", severity="warning", markup=False)
            return
        name, records = context.export_records()
        self.run_export(name, records, fmt)

    @work(group="export", exit_on_error=False, description="export")
    async def run_export(self, name: str, records: list, fmt: str) -> None:  # type: ignore[type-arg]
        from itap_tui.export import write_records

        path = await asyncio.to_thread(write_records, records, self.export_dir, name, fmt)
        self.last_export = path
        self.notify(f"{len(records)} rows of {name} written to {path}", title="Exported", markup=False, timeout=10)

    # ------------------------------------------------------------------ palette
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        context = self._context_screen()
        yield SystemCommand("Fleet", "Show every device (1)", self.action_fleet)
        yield SystemCommand("Anomalies", "Open alerts and top anomalous readings (2)", self.action_anomalies)
        yield SystemCommand(
            "Events", "Engine warnings, faults, retrains, validation, incidents (l)", self.action_events
        )
        yield SystemCommand("Incident history", "Every incident in a time range (3)", self.action_history)
        if hasattr(context, "action_drill"):
            yield SystemCommand("Drill down", "Open the highlighted device (enter)", context.action_drill)
        if hasattr(context, "action_filter"):
            yield SystemCommand("Filter", "Filter the table (/)", context.action_filter)
        if hasattr(context, "action_sort"):
            yield SystemCommand("Sort", "Cycle the sort column (s)", context.action_sort)
        if isinstance(context, FleetScreen):
            yield SystemCommand("Reverse sort", "Reverse the sort order (S)", context.action_reverse_sort)
            for column, label in FLEET_SORTS:
                yield SystemCommand(
                    f"Sort by {column}", f"Sort the fleet by {label}", functools.partial(context.sort_by, column)
                )
        yield SystemCommand("Inject fault", "Inject a fault on the highlighted device (f)", self.action_inject_fault)
        yield SystemCommand("Load scenario", "Play a fault drill from a TOML file (scenarios/)", self.ask_scenario)
        if hasattr(context, "action_acknowledge"):
            yield SystemCommand(
                "Acknowledge alert", "Acknowledge the highlighted alert (a)", context.action_acknowledge
            )
        yield SystemCommand(
            "Resume live updates" if self.ui_paused else "Pause live updates",
            f"{self.pause_help()} (p)",
            self.action_toggle_pause,
        )
        yield SystemCommand("Retrain", "Retrain the detection models (r)", self.action_retrain)
        if isinstance(context, DeviceScreen):
            yield SystemCommand("Back", "Back to the previous screen (esc)", context.action_back)
            yield SystemCommand("Next signal", "Plot the next signal (n)", context.action_next_signal)
            yield SystemCommand("Window", "Cycle the plot window (w)", context.action_next_window)
        if hasattr(context, "export_records"):
            yield SystemCommand(
                "Export CSV", "Write the table on screen, as filtered, to CSV (e)", lambda: self.action_export("csv")
            )
            yield SystemCommand(
                "Export JSON", "Write the table on screen, as filtered, to JSON (E)", lambda: self.action_export("json")
            )
        yield SystemCommand("Help", "Every key (?)", self.action_help)
        yield SystemCommand("Dark/light theme", "Switch between dark and light (ctrl+t)", self.action_toggle_theme)
        yield SystemCommand("Theme", "Choose a colour theme; remembered for the next start", self.search_themes)
        yield SystemCommand("Quit", "Stop the engine and quit (q)", self.action_quit)


def run_console(settings: Settings, attach: bool = False, mouse: bool = True, at: str | None = None) -> int:
    """Start the console (``itap``) or attach to a database (``itap console --attach``).

    ``mouse=False`` leaves the mouse to the terminal (``--no-mouse``, ``console.mouse``).
    """
    from itap_engine.facade.attached import AttachedFacade
    from itap_engine.facade.local import LocalFacade

    facade = AttachedFacade(settings) if attach else LocalFacade(settings)
    data_dir = settings.resolve(settings.paths.data_dir)
    app = ItapApp(facade, export_dir=data_dir / "exports", state_file=data_dir / "console.json")
    app.start_at = at
    return run_app(app, facade, mouse)


def run_app(app: ItapApp, facade: EngineFacade, mouse: bool) -> int:
    """Run ``app`` over ``facade`` to its end; stop the facade if the app did not; the exit status."""
    try:
        result = app.run(mouse=mouse)
    finally:
        if not app.engine_stopped and app.engine.alive:
            with contextlib.suppress(Exception):
                app.engine.submit(facade.stop).result(timeout=30)
            app.engine.shutdown()
    return 0 if result is None else int(result)
