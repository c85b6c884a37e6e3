"""Pure formatting helpers: snapshot values in, Rich ``Text`` out.

Everything that reaches the screen from data (device ids, signal names, CSV rows,
error text) goes through :class:`rich.text.Text` built here, never through markup
strings, so a device called ``[bold red]x[/]`` is shown literally, and through
:func:`itap_engine.safe_text.visible`, so ``\\x1b[31m`` in a device id is shown, not obeyed. No Textual import:
these functions are tested without an app.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.text import Text

from itap_engine.safe_text import visible
from itap_engine.snapshot import worth_showing


@dataclass(frozen=True)
class Palette:
    """Colours for states, taken from the active Textual theme (dark or light)."""

    ok: str = "green"
    warning: str = "yellow"
    critical: str = "red"
    accent: str = "cyan"
    muted: str = "dim"


STATUS_STYLE: dict[str, tuple[str, str, str]] = {
    # status: (symbol, word, palette attribute)
    "critical": ("✖", "CRIT", "critical"),
    "warning": ("▲", "WARN", "warning"),
    "stale": ("◌", "STALE", "muted"),
    "untrained": ("○", "NO MODEL", "muted"),
    "ok": ("✔", "OK", "ok"),
}
"""Every status has a symbol and a word, so colour never carries meaning alone."""

STATUS_RANK = {"critical": 4, "warning": 3, "stale": 2, "untrained": 1, "ok": 0}
SEVERITY_RANK = {"critical": 2, "warning": 1, "reading": 0}
SEVERITY_STYLE = {
    "critical": ("✖", "CRIT", "critical"),
    "warning": ("▲", "WARN", "warning"),
    "reading": ("·", "READING", "muted"),
}

_EIGHTHS = " ▏▎▍▌▋▊▉█"


def status_text(status: str, palette: Palette) -> Text:
    symbol, word, colour = STATUS_STYLE.get(status, ("?", status.upper(), "muted"))
    style = getattr(palette, colour)
    if status in ("critical", "warning"):
        style = f"bold {style}"
    return Text(f"{symbol} {word}", style=style, end="")


def severity_text(severity: str, palette: Palette, acknowledged: bool = False, closed: bool = False) -> Text:
    """``✖ CRIT``; ``✓`` when acknowledged; a closed alert is muted, ``○ CRIT closed``."""
    symbol, word, colour = SEVERITY_STYLE.get(severity, ("?", severity.upper(), "muted"))
    style = getattr(palette, colour)
    if closed:
        return Text(f"○ {word} closed" + (" ✓" if acknowledged else ""), style=palette.muted, end="")
    if acknowledged:
        return Text(f"{symbol} {word} ✓", style=style, end="")
    return Text(f"{symbol} {word}", style=f"bold {style}", end="")


def bar(fraction: float, width: int) -> str:
    """A horizontal bar of ``width`` cells filled to ``fraction`` (eighth-cell steps)."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (_EIGHTHS[part] if part else "")
    return text.ljust(width)


def score_text(score: float | None, threshold: float | None, status: str, palette: Palette, width: int = 6) -> Text:
    """``0.62 ███▌  `` : the threshold sits at the middle of the bar."""
    if score is None:
        return Text("  —  " + " " * (width + 1), style=palette.muted, end="")
    scale = 2 * threshold if threshold and threshold > 0 else 1.0
    colour = {"critical": palette.critical, "warning": palette.warning}.get(status, palette.ok)
    text = Text(f"{score:5.2f} ", end="")
    text.append(bar(score / scale, width), style=colour)
    return text


def fmt_value(value: float | None) -> str:
    """Compact numbers for table cells; None (a dropout) is an em dash."""
    if value is None or value != value:  # None or NaN
        return "—"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def unit_suffix(name: str, unit: str) -> str:
    """What follows a value of signal ``name`` in a table cell: its unit (``°C``,
    `` ft``), or nothing when the name already ends with it (``altitude_ft``,
    ``current_a``), which keeps the fleet table within 120 columns."""
    if not unit or name.rpartition("_")[2].lower() == unit.lower():
        return ""
    return unit if unit in ("°", "°C", "%") else f" {unit}" if unit.isalpha() and len(unit) > 1 else unit


def signals_text(
    values: Mapping[str, float | None], names: tuple[str, ...] | list[str], units: Mapping[str, str]
) -> Text:
    """``temp_c 68.2°C  vibration_g 0.350`` for the key signals of a device."""
    text = Text(end="")
    for index, name in enumerate(names):
        if index:
            text.append("  ")
        text.append(f"{name} ", style="dim")
        value = values.get(name)
        text.append(fmt_value(value), style="bold" if value is None else "")
        suffix = unit_suffix(name, units.get(name, ""))
        if suffix and value is not None:
            text.append(suffix)
    return text


def fmt_ts(ts_ms: int | None, with_date: bool = True) -> str:
    """Epoch milliseconds (simulated time, UTC) as ``01-01 06:10:20``."""
    if ts_ms is None:
        return "—"
    moment = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return moment.strftime("%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def fmt_dt(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def contributors_text(contributors, limit: int = 3) -> Text:  # type: ignore[no-untyped-def]
    """``temp_c 62% · current_a 21%`` (shares under 5% are noise to an operator)."""
    text = Text(end="")
    shown = worth_showing(contributors, limit)
    for index, item in enumerate(shown):
        if index:
            text.append(" · ", style="dim")
        text.append(visible(item.signal))
        text.append(f" {item.share:.0%}", style="dim")
    return text


def plain(value: object) -> Text:
    """Any value from data as literal text (no markup interpretation, control
    characters shown as escapes)."""
    return Text(visible(value), end="")


def fit_parts(parts: list[tuple[Text, int, Text | None]], width: int) -> Text:
    """A status line of ``parts`` (text, drop rank, shorter text or None) joined by
    ``  │ ``; wider than ``width`` (80 columns): the shorter texts joined by `` │ ``,
    then the parts of the highest rank left out first until it fits. Rank 0 is never
    left out (a filter must stay in sight)."""

    def joined(kept: list[Text], sep: str) -> Text:
        line = Text(no_wrap=True, overflow="ellipsis", end="")
        for i, part in enumerate(kept):
            if i and not part.spans:  # one style: the separator and the part as one run of it
                line.append(sep + part.plain, style=part.style)
                continue
            if i:
                line.append(sep, style=part.style)
            line.append_text(part)
        return line

    line = joined([text for text, _, _ in parts], "  │ ")
    if not width or line.cell_len <= width:
        return line
    kept = [(short or text, rank) for text, rank, short in parts]
    line = joined([text for text, _ in kept], " │ ")
    for rank in sorted({rank for _, rank in kept if rank > 0}, reverse=True):
        if line.cell_len <= width:
            break
        kept = [(text, r) for text, r in kept if r != rank]
        line = joined([text for text, _ in kept], " │ ")
    return line
