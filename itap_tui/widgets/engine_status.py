"""The one-line engine status: mode, simulated time, tick time, rows/s, models.

Narrower than the full line (80 columns), it drops the year and rows/s first, so
the model versions stay on screen."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from itap_engine.safe_text import visible
from itap_engine.snapshot import EngineStats
from itap_tui.format import Palette, fmt_dt


class EngineStatus(Static):
    """Shows :class:`EngineStats`; ``paused`` and ``problem`` toggle CSS classes.

    One line high and as wide as the screen (CSS), so a new line is drawn without a
    layout pass: with one, every snapshot repainted every widget on the screen (at
    10,000 devices 17-31 ms of the event loop a tick, a key pressed then waiting)."""

    paused: reactive[bool] = reactive(False)
    """Live updates are paused (by the operator or the engine)."""
    problem: reactive[bool] = reactive(False)
    """The engine reported an error."""

    _shown: tuple[EngineStats, Palette, bool, str] | None = None
    """What the live line shows, drawn again when the width changes."""

    def watch_paused(self, paused: bool) -> None:
        self.set_class(paused, "-paused")

    def watch_problem(self, problem: bool) -> None:
        self.set_class(problem, "-problem")

    def show(self, stats: EngineStats | None, palette: Palette, paused: bool = False, note: str = "") -> None:
        if stats is None:
            self._shown = None
            self._line(Text("◌ waiting for the engine…", style=palette.muted))
            return
        self._shown = (stats, palette, paused, note)
        self.paused = paused
        self.problem = bool(stats.last_error)
        text = Text(end="", no_wrap=True, overflow="ellipsis")
        if stats.mode == "replay":  # itap replay: the replay clock, never live
            from itap_tui.widgets.replay_header import replay_line

            self._line(replay_line(stats, palette, paused))
            return
        if stats.mode == "past":
            text.append("◀ PAST", style=f"bold reverse {palette.warning}")
            text.append("  at ", style="dim")
            text.append(fmt_dt(stats.sim_time), style="bold")
            text.append(" (sim)  not live: t or esc returns", style=f"bold {palette.warning}")
            self._line(text)
            return
        line = self._live_line(stats, palette, paused, note, compact=False)
        width = self.content_region.width
        if width and line.cell_len > width:  # 80 columns: no year, no rows/s, the models kept
            line = self._live_line(stats, palette, paused, note, compact=True)
        self._line(line)

    def _line(self, line: Text) -> None:
        self.update(line, layout=False)

    def on_resize(self) -> None:
        if self._shown is not None:
            self.show(*self._shown)

    @staticmethod
    def _live_line(stats: EngineStats, palette: Palette, paused: bool, note: str, compact: bool) -> Text:
        text = Text(end="", no_wrap=True, overflow="ellipsis")
        if paused:
            text.append("❚❚ PAUSED", style=f"bold {palette.warning}")
        elif stats.mode == "attached":
            text.append("● ATTACHED", style=f"bold {palette.accent}")
        else:
            text.append("● LIVE", style=f"bold {palette.ok}")
        if stats.phase != "running":
            text.append(f" {stats.phase}", style="bold")
        text.append("  sim ", style="dim")
        text.append(fmt_dt(stats.sim_time)[5 if compact and stats.sim_time is not None else 0 :])
        text.append("  tick ", style="dim")
        text.append("—" if stats.tick_ms is None else f"{stats.tick_ms:.0f} ms")
        if not compact:
            text.append("  ", style="dim")
            text.append("—" if stats.rows_per_s is None else f"{stats.rows_per_s:,.0f}")
            text.append(" rows/s", style="dim")
        text.append("  model ", style="dim")
        # vN counts the profile's own versions (the engine's numbering, not database ids)
        models = " · ".join(f"{name} v{version}" for name, version in sorted(stats.model_versions.items()))
        text.append(models or "none")
        if note:
            text.append(f"  {note}", style=f"bold {palette.accent}")
        if stats.last_error:
            text.append("  ✖ ", style=f"bold {palette.critical}")
            text.append(visible(stats.last_error), style=palette.critical)
        return text
