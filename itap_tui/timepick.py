"""What ``t`` and ``itap console --at`` accept: a moment in data time (UTC).

* relative to the simulated clock: ``-2h``, ``-30m``, ``-90s``, ``-1.5h``, ``-1d``;
* absolute: ``2026-01-01 05:00``, ``2026-01-01T05:00:00``;
* a clock time on the simulated clock's day: ``05:00``.

Pure functions, tested without an app.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RELATIVE = re.compile(r"^-\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)$")
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_moment(text: str, now: datetime) -> datetime | None:
    """The moment ``text`` names, given the simulated clock ``now``; None if not understood.
    Naive times are UTC; the result is naive UTC, as the simulated clock is."""
    text = text.strip().lower()
    now = now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo else now
    match = _RELATIVE.match(text)
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    clock = re.match(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$", text)
    if clock:
        hour, minute, second = int(clock.group(1)), int(clock.group(2)), int(clock.group(3) or 0)
        if hour > 23 or minute > 59 or second > 59:
            return None
        return now.replace(hour=hour, minute=minute, second=second, microsecond=0)
    try:
        moment = datetime.fromisoformat(text.replace(" ", "T").upper())
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
