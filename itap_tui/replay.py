"""``itap replay``: the console over stored history, played by a read-only facade.

:class:`ReplayApp` is the console (:class:`~itap_tui.app.ItapApp`) with a
:class:`~itap_engine.facade.replay.ReplayFacade` behind it. The screens are the
console's; the status line says REPLAY with the replay clock
(:mod:`itap_tui.widgets.replay_header`). Keys added: ``space``/``p`` pause or play,
``.`` one step, ``+``/``-`` faster or slower. Keys that would write (fault,
acknowledge, note, mute, retrain) and time travel say that a replay is read-only.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from itap_tui.app import ItapApp, run_app

if TYPE_CHECKING:
    from itap_engine.config import Settings
    from itap_engine.facade.replay import ReplayFacade
    from itap_engine.snapshot import AnomalyRow


READ_ONLY = "A replay is read-only: {what} needs the live console (itap) or itap console --attach."


class ReplayApp(ItapApp):
    """The console playing stored history; ``facade`` is a :class:`ReplayFacade`."""

    SUB_TITLE = "replay"

    BINDINGS = [
        *(  # the console's keys (the help lists them); fault and pause leave the footer to the replay's
            Binding(b.key, b.action, b.description, show=False, tooltip=b.tooltip)
            if isinstance(b, Binding) and b.action in ("inject_fault", "toggle_pause")
            else b
            for b in ItapApp.BINDINGS
        ),
        Binding("space", "replay_pause", "Play/pause", tooltip="Pause or play the replay"),
        Binding("full_stop", "replay_step", "Step", tooltip="Pause and move one step forward"),
        Binding("plus,equals_sign", "replay_faster", "Faster", tooltip="Play faster"),
        Binding("minus", "replay_slower", "Slower", tooltip="Play slower"),
    ]

    facade: ReplayFacade

    # ------------------------------------------------------------------ the replay keys
    def action_toggle_pause(self) -> None:  # p: the replay, not the live view
        self.action_replay_pause()

    def action_replay_pause(self) -> None:
        paused = not self.facade.paused
        self.replay_call(self.facade.set_paused, paused)

    def action_replay_step(self) -> None:
        self.replay_call(self.facade.step)

    def action_replay_faster(self) -> None:
        self.replay_call(self.facade.faster)

    def action_replay_slower(self) -> None:
        self.replay_call(self.facade.slower)

    @work(group="replay", exit_on_error=False, description="replay control")
    async def replay_call(self, function: Any, *args: Any) -> None:
        if not self.engine_started:
            return
        await self.engine.call_sync(function, *args)

    def pause_help(self) -> str:
        return "Pause or play the replay (space too)"

    # ------------------------------------------------------------------ refused: writes
    def _read_only(self, what: str) -> None:
        self.notify(READ_ONLY.format(what=what), severity="warning", markup=False, timeout=5)

    def action_inject_fault(self) -> None:
        self._read_only("injecting a fault")

    def action_retrain(self) -> None:
        self._read_only("retraining")

    def action_time_travel(self) -> None:
        self._read_only("time travel (t)")

    def acknowledge_device(self, device_id: str) -> None:
        self._read_only("acknowledging")

    def acknowledge(self, alert_id: int, device_id: str) -> None:
        self._read_only("acknowledging")

    def unacknowledge(self, row: AnomalyRow | None) -> None:
        self._read_only("undoing an acknowledgement")

    def acknowledge_all(self, rows: Iterable[AnomalyRow], what: str) -> None:
        self._read_only("acknowledging")

    def ask_note(self, row: AnomalyRow | None) -> None:
        self._read_only("a note")

    def ask_mute(self, device_id: str | None) -> None:
        self._read_only("muting")

    def ask_scenario(self) -> None:
        self._read_only("a scenario")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        refused = {"Inject fault", "Acknowledge alert", "Retrain", "Load scenario"}
        for command in super().get_system_commands(screen):
            if command.title in refused:
                continue
            if command.title.startswith(("Pause live", "Resume live")):
                yield SystemCommand("Play/pause the replay", "Pause or play (space, p)", self.action_replay_pause)
                yield SystemCommand("Step", "Pause and move one step (.)", self.action_replay_step)
                yield SystemCommand("Faster", "Play faster (+)", self.action_replay_faster)
                yield SystemCommand("Slower", "Play slower (-)", self.action_replay_slower)
                continue
            yield command


def run_replay(settings: Settings, start: datetime, end: datetime, speed: float, mouse: bool = True) -> int:
    """Open the console on a replay of ``[start, end]`` (data time) at ``speed``."""
    from itap_engine.facade.replay import ReplayFacade

    facade = ReplayFacade(settings, start, end, speed=speed)
    app = ReplayApp(facade, export_dir=settings.resolve(settings.paths.data_dir) / "exports")
    return run_app(app, facade, mouse)
