"""What the engine tells its subscribers, and the facade the console talks to.

After every tick the engine publishes one immutable :class:`Snapshot`. The console
renders snapshots and nothing else: it never reads SQL or pandas. Operator commands
(inject a fault, acknowledge an alert, pause, retrain) go back through the
:class:`EngineFacade` protocol, which has two implementations in
:mod:`itap_engine.facade`: one that runs the engine in the console's process, and one
that attaches to a database another process (``itap engine`` or cron) writes, sending
fault commands through the ``fault_command`` table.

Everything here is frozen and made of tuples, so a snapshot can be handed across
threads and kept by a screen without copying.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from itap_engine.config import Settings


MIN_SHOWN_SHARE = 0.05
"""Contributors pushing less than this share are noise to an operator: summaries for
people leave them out (stored and JSON forms keep them)."""


def worth_showing(contributors: Sequence[Any], limit: int = 3) -> list[Any]:
    """The first ``limit`` contributors with at least :data:`MIN_SHOWN_SHARE` of the
    push (the first one if none has); items are Contributor-like or dicts."""

    def share(item: Any) -> float:
        return float(item["share"] if isinstance(item, Mapping) else item.share)

    top = list(contributors[:limit])
    return [c for c in top if share(c) >= MIN_SHOWN_SHARE] or top[:1]


@dataclass(frozen=True)
class ContributorView:
    """A signal that pushed a score up, with its share of the push (0..1)."""

    signal: str
    family: str
    share: float


@dataclass(frozen=True)
class DeviceRow:
    """One line of the fleet table."""

    device_id: str
    profile: str
    site: str | None
    state: str | None
    values: Mapping[str, float | None]
    """Latest value of every signal of the profile (None for a dropout)."""
    score: float | None
    """Latest anomaly score; higher is more anomalous."""
    threshold: float | None
    status: str
    """ok, warning, critical, stale (no recent reading) or untrained (no model yet)."""
    last_ts: int | None
    """Epoch ms of the latest reading."""
    injected_fault: str | None = None
    """An operator fault pending or active on the device."""


@dataclass(frozen=True)
class AnomalyRow:
    """An open (or recent) alert, or a top anomalous reading, ranked by score."""

    device_id: str
    profile: str
    ts: int
    score: float
    severity: str
    """warning or critical; "reading" for a reading that opened no alert."""
    family: str
    contributors: tuple[ContributorView, ...]
    alert_id: int | None = None
    status: str = "open"
    acknowledged: bool = False
    opened_ts: int | None = None
    note: str = ""
    """An operator's short note on the incident."""


@dataclass(frozen=True)
class IncidentCounts:
    """Open incidents, by the one definition every screen and command uses: an alert
    whose status is ``open``, acknowledged or not; ``unacknowledged`` is the part of
    those no operator has acknowledged."""

    open: int = 0
    unacknowledged: int = 0

    @classmethod
    def of(cls, alerts: Sequence[AnomalyRow]) -> IncidentCounts:
        shown = [a for a in alerts if a.alert_id is not None and a.status == "open"]
        return cls(len(shown), sum(1 for a in shown if not a.acknowledged))

    def label(self) -> str:
        """ "2 open, 1 unacknowledged" (the words are the definition)."""
        return f"{self.open} open, {self.unacknowledged} unacknowledged"


@dataclass(frozen=True)
class ValidationAlertRow:
    created_at: datetime
    level: str
    check: str
    device_id: str | None
    signal: str | None
    message: str


@dataclass(frozen=True)
class ValidationProblemRow:
    """One validation problem per (device, signal, check), in data time (epoch ms)."""

    id: int
    device_id: str | None
    signal: str | None
    check: str
    level: str
    first_ts: int
    last_ts: int
    count: int
    """Cycles that raised it."""
    message: str
    resolved_ts: int | None = None
    """When a cycle no longer raised it (None: still open)."""


@dataclass(frozen=True)
class EventRow:
    """One line of the events view, in data time (epoch ms; None if unknown)."""

    ts: int | None
    kind: str
    """log, fault, retrain, validation, incident."""
    level: str
    """info, warning, error or critical."""
    device_id: str | None
    text: str


@dataclass(frozen=True)
class EngineStats:
    sim_time: datetime | None
    """The simulated clock (or the newest reading's time when attached)."""
    tick_ms: float | None
    """How long the last tick's work took."""
    rows_per_s: float | None
    ticks: int
    model_versions: Mapping[str, int]
    """profile -> active model version id."""
    paused: bool
    mode: str
    """"live" (engine in this process) or "attached" (reading a database)."""
    last_error: str | None = None
    phase: str = "running"
    """bootstrapping, running, stopping."""
    replay: ReplayClock | None = None
    """Mode "replay" (``itap replay``): the interval played and how."""


@dataclass(frozen=True)
class ReplayClock:
    """Where ``itap replay`` is in the stored interval it plays (data time, UTC)."""

    start: datetime
    end: datetime
    speed: float
    """Data seconds per wall second."""
    ended: bool = False


@dataclass(frozen=True)
class ProfileInfo:
    name: str
    signals: tuple[str, ...]
    key_signals: tuple[str, ...]
    units: Mapping[str, str]
    families: Mapping[str, str]
    faults: tuple[str, ...]

    @classmethod
    def all_of(cls, settings: Settings) -> dict[str, ProfileInfo]:
        """One per profile of the settings, as the console shows them."""
        return {
            name: cls(
                name=name,
                signals=tuple(spec.signal_names),
                key_signals=tuple(spec.key_signals or spec.signal_names[:3]),
                units={k: v.unit for k, v in spec.signals.items()},
                families=spec.families(),
                faults=tuple(spec.faults),
            )
            for name, spec in settings.profiles.items()
        }


@dataclass(frozen=True)
class Snapshot:
    seq: int
    created_at: datetime
    devices: tuple[DeviceRow, ...]
    anomalies: tuple[AnomalyRow, ...]
    validation_alerts: tuple[ValidationAlertRow, ...]
    stats: EngineStats
    profiles: Mapping[str, ProfileInfo] = field(default_factory=dict)
    validation_problems: tuple[ValidationProblemRow, ...] = ()
    """Open problems and the most recently resolved, oldest first seen first."""
    silenced: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    """Devices that open no incident now: device -> (until, epoch ms data time; why:
    "muted..." or "maintenance...")."""
    incidents: IncidentCounts | None = None
    """Counted over every open incident (``anomalies`` is cut at a length); None:
    count ``anomalies`` (see :meth:`open_incidents`)."""
    base_seq: int | None = None
    """The snapshot ``changed`` is relative to; None: a full snapshot (first load or
    resync), every row to be taken as new (see :mod:`itap_engine.snapshot.diff`)."""
    changed: frozenset[str] | None = None
    """Ids of the devices whose row was added or changed since snapshot ``base_seq``;
    every other row is the very object that snapshot had. None: unknown (full)."""

    def open_incidents(self) -> IncidentCounts:
        return self.incidents if self.incidents is not None else IncidentCounts.of(self.anomalies)


@dataclass(frozen=True)
class FaultCommandView:
    id: int
    device_id: str
    fault: str
    severity: float
    duration_s: float
    status: str
    """pending, active, done or rejected."""
    start_ts: int | None
    message: str = ""


@dataclass(frozen=True)
class QuarantineView:
    created_at: datetime
    line: int | None
    ts: int | None
    reason: str
    raw: str


@dataclass(frozen=True)
class DeviceDetail:
    """Everything the drill-down screen shows for one device."""

    device_id: str
    profile: str
    ts: tuple[int, ...]
    series: Mapping[str, tuple[float | None, ...]]
    """signal -> values aligned with ``ts``."""
    scores: tuple[float | None, ...]
    """Anomaly score aligned with ``ts`` (None where not scored)."""
    threshold: float | None
    fault_labels: tuple[str | None, ...]
    """Ground-truth fault label aligned with ``ts`` (simulated data)."""
    alerts: tuple[AnomalyRow, ...]
    faults: tuple[FaultCommandView, ...]
    quarantined: tuple[QuarantineView, ...]
    contributors: tuple[ContributorView, ...]
    """Of the device's current (or latest) alert."""
    known_good: tuple[int | None, int | None] | None = None
    """The known-good window (epoch ms from, until) the active model learned this
    device's normal from; None when no model is trained."""
    known_good_source: str | None = None
    """``"device"`` (the device's own window, ``itap train --device``) or ``"profile"``."""


@dataclass(frozen=True)
class Progress:
    """Bootstrap progress for the first start on an empty database."""

    stage: str
    fraction: float
    message: str = ""


@runtime_checkable
class EngineFacade(Protocol):
    """The console's only way into the engine."""

    async def start(self, progress: Callable[[Progress], None] | None = None) -> None:
        """Start (bootstrapping an empty database first); returns once the first snapshot exists."""

    async def stop(self) -> None:
        """Finish the running tick, close the database."""

    def subscribe(self, callback: Callable[[Snapshot], None]) -> Callable[[], None]:
        """Call ``callback`` with every new snapshot; returns an unsubscribe function."""

    def latest(self) -> Snapshot | None: ...

    async def inject_fault(
        self, device_ids: list[str], fault: str, severity: float, duration_s: float
    ) -> list[FaultCommandView]:
        """Schedule an operator fault; it takes effect from the next tick."""

    async def acknowledge(self, alert_id: int, acknowledged: bool = True) -> None:
        """Acknowledge an incident (``acknowledged=False`` undoes it)."""

    async def snapshot_at(self, at: datetime) -> Snapshot:
        """The fleet as stored at a past moment (data time): mode "past"."""

    async def events(self, limit: int = 300) -> list[EventRow]:
        """Engine warnings, fault commands, retrains, validation problems and incidents,
        newest first, in data time."""

    async def incident_history(self, since: datetime | None = None, until: datetime | None = None) -> list[AnomalyRow]:
        """Incidents, open or closed, that overlap ``[since, until]`` (data time; None =
        open end), newest opened first."""

    async def note(self, alert_id: int, text: str) -> None:
        """Set (or with "" clear) the short note on an incident."""

    async def mute(self, device_id: str, seconds: float | None, reason: str = "") -> int | None:
        """Mute a device for ``seconds`` of data time (None lifts the mute); returns
        when the mute ends (epoch ms, data time) or None."""

    async def retrain(self, profile: str | None = None) -> Mapping[str, int | None] | None:
        """Retrain now; by profile, the new model's number among the profile's versions
        (v1, v2, ... as the header shows; None: that profile's training failed). They
        score from the next tick. None when only a request was written (attached: the
        engine runs it)."""

    def set_paused(self, paused: bool) -> None:
        """Pause or resume the engine's ticks (attached: pause refreshing)."""

    async def device_detail(self, device_id: str, window_s: float = 3600, at: datetime | None = None) -> DeviceDetail:
        """The drill-down of one device over the ``window_s`` before now, or before ``at``
        (data time: time travel) as it was then."""


Subscriber = Callable[[Snapshot], None]


class SnapshotPublisher:
    """Keeps the latest snapshot and hands every new one to subscribers.

    Shared by the engine and the attached facade. A subscriber that raises is logged
    and skipped: a console bug must never stop the engine.
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._latest: Snapshot | None = None

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` with every new snapshot; returns an unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def latest(self) -> Snapshot | None:
        return self._latest

    def _deliver(self, snapshot: Snapshot) -> None:
        from itap_engine.snapshot.diff import mark_changes

        if snapshot.seq >= 0:  # a live snapshot: say what changed since the last one
            previous = self._latest if self._latest is not None and self._latest.seq < snapshot.seq else None
            snapshot = mark_changes(previous, snapshot)
        self._latest = snapshot
        for callback in list(self._subscribers):
            try:
                callback(snapshot)
            except Exception:
                logging.getLogger(__name__).exception("snapshot subscriber failed")


def contributors_of(value: Any) -> tuple[ContributorView, ...]:
    """Contributors in any form the scorer or the database gives (objects, dicts, JSON)."""
    if value is None:
        return ()
    if isinstance(value, float) and math.isnan(value):
        return ()
    if isinstance(value, str):
        return _contributors_of_text(value)
    return _contributors_of_items(value)


@functools.lru_cache(maxsize=65_536)
def _contributors_of_text(value: str) -> tuple[ContributorView, ...]:
    """Contributors from their JSON text, parsed once per distinct text (a snapshot
    reads every open incident's text, mostly the same as the snapshot before's; the
    result is immutable, so it is shared)."""
    try:
        items = json.loads(value) if value else []
    except ValueError:
        return ()
    return _contributors_of_items(items)


def _contributors_of_items(value: Any) -> tuple[ContributorView, ...]:
    out = []
    for item in value or ():
        if isinstance(item, dict):
            signal, family, share = item.get("signal"), item.get("family"), item.get("share")
        else:
            signal = getattr(item, "signal", None)
            family = getattr(item, "family", None)
            share = getattr(item, "share", None)
        if signal is None:
            continue
        # (0.0 and -0.0 are one key but print differently: zero shares are not kept)
        key = (signal, family, share) if share else None
        try:
            view = _VIEWS.get(key) if key is not None else None
        except TypeError:  # a value that cannot be a key
            view, key = None, None
        if view is None:
            view = ContributorView(str(signal), str(family or "other"), float(share or 0.0))
            if key is not None:
                if len(_VIEWS) >= _MAX_VIEWS:
                    _VIEWS.clear()
                _VIEWS[key] = view
        out.append(view)
    return tuple(out)


_VIEWS: dict[tuple[Any, Any, Any], ContributorView] = {}
"""One immutable view per (signal, family, share) seen: a snapshot of a 10k fleet
parses thousands of incidents' contributors a tick, mostly the same few signals."""
_MAX_VIEWS = 200_000


def contributors_json(value: Any) -> str:
    return json.dumps(
        [{"signal": c.signal, "family": c.family, "share": round(c.share, 4)} for c in contributors_of(value)]
    )
