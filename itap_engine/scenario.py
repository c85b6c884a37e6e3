"""Scenario files: a fault drill as a TOML file of timed faults.

A scenario is data, read with :mod:`tomllib` and nothing else (nothing in it runs)::

    name = "bearing wear, then a power spike"       # optional
    description = "..."                             # optional
    run_for = "90m"      # optional: simulated time the run covers (default: the last
                         # fault's end, plus the incidents' quiet period, plus 2 minutes)

    [[fault]]
    device = "pump-003"  # a simulated device of the fleet
    fault = "bearing_wear"   # a fault of that device's profile
    start = "0m"         # offset from the scenario's start (simulated time)
    duration = "45m"
    severity = 1.0       # optional, default 1.0 (the fault's magnitude x severity)

Durations are seconds as a number, or text with a unit: ``90``, ``90s``, ``5m``,
``1.5h``. The file is checked strictly before anything runs: an unknown key, device
or fault, a missing field, a bad duration or severity stops with one line naming the
file and the entry (``scenarios/x.toml: fault 2 (pump-099): unknown device ...``).

:func:`load_scenario` gives a :class:`Scenario`; ``itap scenario run FILE``
(:mod:`itap_engine.modes.commands.scenario`) runs it through the engine, and the
console loads one from its command palette.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itap_engine.config import Settings
from itap_engine.errors import ItapError
from itap_engine.safe_text import visible

__all__ = [
    "PlannedFault",
    "Scenario",
    "ScenarioError",
    "check_scenario",
    "load_scenario",
    "parse_scenario",
    "parse_seconds",
    "read_scenario_file",
]

MAX_SCENARIO_S = 7 * 86400.0
"""The longest scenario, fault offset or duration: a week of simulated time."""
MAX_SEVERITY = 100.0
MAX_FAULTS = 1000
MAX_FILE_BYTES = 1 << 20

_TOP_KEYS = {"name", "description", "run_for", "fault"}
_FAULT_KEYS = {"device", "fault", "start", "duration", "severity"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*$", re.IGNORECASE)
_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


class ScenarioError(ItapError):
    """A scenario file that cannot be run; one line naming the file and the entry."""


@dataclass(frozen=True)
class PlannedFault:
    """One fault of a scenario: on ``device`` from ``start_s`` after the scenario's start."""

    index: int
    """1-based position in the file (``fault N`` in messages)."""
    device: str
    profile: str
    fault: str
    start_s: float
    duration_s: float
    severity: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def describe(self) -> str:
        return (
            f"{visible(self.fault)} on {visible(self.device)} at +{format_seconds(self.start_s)} "
            f"for {format_seconds(self.duration_s)} (severity {self.severity:g})"
        )


@dataclass(frozen=True)
class Scenario:
    """A checked scenario file."""

    path: Path
    name: str
    description: str
    faults: tuple[PlannedFault, ...]
    run_for_s: float
    """Simulated seconds a run covers (at least the last fault's end)."""


def format_seconds(seconds: float) -> str:
    """600 -> "10m", 5400 -> "1h30m", 45 -> "45s"."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"


def parse_seconds(value: Any) -> float | None:
    """A duration in seconds from a TOML number or text (``90``, ``"5m"``, ``"1.5h"``);
    None if it is neither, negative, or not finite."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            return None
        seconds = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    else:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def load_scenario(path: str | Path, settings: Settings) -> Scenario:
    """Read and check a scenario file.

    Raises:
        ScenarioError: the file is missing, not TOML, or an entry is wrong (one line).
    """
    path = Path(path)
    return parse_scenario(read_scenario_file(path), settings, path)


def read_scenario_file(path: Path) -> dict[str, Any]:
    """The TOML table of a scenario file (tomllib only: nothing in it runs).

    Raises:
        ScenarioError: missing, too large, not UTF-8 or not TOML (one line).
    """
    where = visible(str(path))
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ScenarioError(f"{where}: cannot read the scenario: {error.strerror or error}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ScenarioError(f"{where}: a scenario file is at most {MAX_FILE_BYTES} bytes")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ScenarioError(f"{where}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{where}: not valid TOML: {error}") from None


def parse_scenario(data: dict[str, Any], settings: Settings, path: Path) -> Scenario:
    """Check a parsed scenario against the simulated fleet and the profiles of ``settings``."""
    fleet = {device: group.profile for group in settings.simulation.fleet for device in group.device_ids()}
    catalogues = {name: tuple(spec.faults) for name, spec in settings.profiles.items()}
    quiet = settings.alerts.quiet_seconds or settings.alerts.quiet_readings * settings.simulation.freq_s
    return check_scenario(data, path, fleet, catalogues, quiet)


def check_scenario(
    data: dict[str, Any],
    path: Path,
    fleet: Mapping[str, str],
    catalogues: Mapping[str, Sequence[str]],
    quiet_s: float = 0.0,
) -> Scenario:
    """Check a parsed scenario against a fleet (device -> profile) and each profile's
    faults; ``quiet_s`` (the incidents' quiet period) pads the default ``run_for``."""
    where = visible(str(path))

    def fail(message: str) -> ScenarioError:
        return ScenarioError(f"{where}: {message}")

    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise fail(f"unknown key {visible(unknown[0])!r} (known: {', '.join(sorted(_TOP_KEYS))})")
    for key in ("name", "description"):
        if key in data and not isinstance(data[key], str):
            raise fail(f"{key} must be text")
    entries = data.get("fault")
    if not isinstance(entries, list) or not entries:
        raise fail("no faults: add at least one [[fault]] table")
    if len(entries) > MAX_FAULTS:
        raise fail(f"at most {MAX_FAULTS} faults")
    faults = []
    for index, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise fail(f"fault {index}: must be a [[fault]] table")
        label = f"fault {index}"
        if isinstance(entry.get("device"), str):
            label += f" ({visible(entry['device'])})"
        unknown = sorted(set(entry) - _FAULT_KEYS)
        if unknown:
            raise fail(f"{label}: unknown key {visible(unknown[0])!r} (known: {', '.join(sorted(_FAULT_KEYS))})")
        missing = [k for k in ("device", "fault", "start", "duration") if k not in entry]
        if missing:
            raise fail(f"{label}: missing {', '.join(missing)}")
        device, fault = entry["device"], entry["fault"]
        if not isinstance(device, str) or device not in fleet:
            known = sorted(fleet)
            sample = ", ".join(known[:3]) + (", ..." if len(known) > 3 else "")
            raise fail(f"{label}: unknown device {visible(str(device))!r}: faults go to simulated devices ({sample})")
        profile = fleet[device]
        catalogue = list(catalogues.get(profile, ()))
        if not isinstance(fault, str) or fault not in catalogue:
            raise fail(
                f"{label}: profile {profile} has no fault {visible(str(fault))!r} (known: {', '.join(catalogue)})"
            )
        start = parse_seconds(entry["start"])
        if start is None or start > MAX_SCENARIO_S:
            raise fail(f"{label}: start {visible(repr(entry['start']))} is not an offset like 0, 90s, 5m or 1h")
        duration = parse_seconds(entry["duration"])
        if duration is None or duration <= 0 or duration > MAX_SCENARIO_S:
            raise fail(
                f"{label}: duration {visible(repr(entry['duration']))} is not a positive duration up to 7 days "
                "(90s, 5m, 1.5h)"
            )
        severity = entry.get("severity", 1.0)
        if (
            isinstance(severity, bool)
            or not isinstance(severity, int | float)
            or not math.isfinite(severity)
            or not 0 < severity <= MAX_SEVERITY
        ):
            raise fail(
                f"{label}: severity {visible(repr(severity))} must be a number above 0, at most {MAX_SEVERITY:g}"
            )
        faults.append(PlannedFault(index, device, profile, fault, start, duration, float(severity)))
    last_end = max(f.end_s for f in faults)
    run_for = last_end + quiet_s + 120.0
    if "run_for" in data:
        given = parse_seconds(data["run_for"])
        if given is None or given > MAX_SCENARIO_S:
            raise fail(f"run_for {visible(repr(data['run_for']))} is not a duration up to 7 days")
        if given < last_end:
            raise fail(f"run_for {format_seconds(given)} ends before the last fault does (+{format_seconds(last_end)})")
        run_for = given
    return Scenario(
        path=path,
        name=str(data.get("name") or path.stem),
        description=str(data.get("description") or ""),
        faults=tuple(sorted(faults, key=lambda f: (f.start_s, f.index))),
        run_for_s=run_for,
    )
