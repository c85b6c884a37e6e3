"""The status line of ``itap replay``: REPLAY, the replay clock, speed and progress."""

from __future__ import annotations

from rich.text import Text

from itap_engine.snapshot import EngineStats
from itap_tui.format import Palette, fmt_dt


def replay_line(stats: EngineStats, palette: Palette, paused: bool) -> Text:
    """``▶ REPLAY  2026-01-01 05:12:30 (sim)  ×60  42%  of 01-01 04:00 → 01-01 06:00  keys``."""
    replay = stats.replay
    text = Text(end="", no_wrap=True, overflow="ellipsis")
    if replay is not None and replay.ended:
        text.append("■ REPLAY END", style=f"bold reverse {palette.accent}")
    elif paused:
        text.append("❚❚ REPLAY PAUSED", style=f"bold reverse {palette.warning}")
    else:
        text.append("▶ REPLAY", style=f"bold reverse {palette.accent}")
    text.append("  ")
    text.append(fmt_dt(stats.sim_time), style="bold")
    text.append(" (sim)", style="dim")
    if replay is None:
        return text
    text.append(f"  ×{replay.speed:g}", style="bold")
    total = (replay.end - replay.start).total_seconds()
    if stats.sim_time is not None and total > 0:
        done = (stats.sim_time.replace(tzinfo=None) - replay.start).total_seconds() / total
        text.append(f"  {max(0.0, min(1.0, done)):.0%}")
    text.append(f"  of {replay.start:%m-%d %H:%M} → {replay.end:%m-%d %H:%M}", style="dim")
    text.append("  space pause · . step · +/- speed", style="dim")
    return text
