"""Alert rules over scored readings, and the explanation each alert carries.

Why it is built this way:

* **k of n, then quiet.** One reading over the threshold is noise; ``k`` of the last
  ``n`` readings of a device is a symptom. An alert (an *incident*) stays open while
  the device keeps producing readings over the threshold and closes once a quiet
  period (``alerts.quiet_seconds`` simulated seconds, by default ``quiet_readings`` readings'
  worth) has passed since the last one, so a flapping score does not flood the
  operator. The close time is the moment the quiet period ran out.
* **One open incident per device.** One fault shows in several sensor families (a
  sensor dropout is both an event and a mechanical symptom): they are one problem to
  an operator. The incident's ``family`` is the family of most of its
  over-threshold readings; its contributors are every signal that pushed its
  readings over the threshold, with its share of the whole incident's push (so the
  families involved are those of its contributors).
* **Severity follows the readings.** An incident is critical while one of its last
  ``n`` over-threshold readings reaches ``critical_ratio`` x threshold, and goes back
  to warning when they no longer do; ``peak_score`` keeps the highest score seen.
* **Silence.** A device an operator muted (``device_mute``, until a data time) or in a
  configured maintenance window (``[[alerts.maintenance]]``) opens no incident; one
  already open runs its course.
* **Event-driven.** The state machine only visits readings over the threshold (and
  checks quiet periods arithmetically between them), so a whole day of a fleet goes
  through it in well under a second, and a tick of a hundred readings costs nothing.
  State carries over between calls, so batch and streaming give the same alerts.
* **Explanations.** :func:`explain` folds the detector's per-feature contributions
  into signals and families: the share of a signal is its part of the excess
  push (robust z squared beyond normal) of all features derived from it.
"""

from __future__ import annotations

import fnmatch
import json
import math
import operator
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlmodel import select

from itap_engine.config import Settings
from itap_engine.detection.features import EVENT_FAMILY, feature_signal, sort_readings
from itap_engine.errors import ItapError
from itap_engine.store.schema import Alert, DeviceMute, ModelVersion, utcnow

__all__ = [
    "AlertChanges",
    "AlertError",
    "AlertTracker",
    "Contributor",
    "TrackedAlert",
    "acknowledge_alert",
    "contributors_from_json",
    "contributors_to_json",
    "explain",
    "mute_device",
    "silences",
]

EVENTS_SIGNAL = "(events)"
TOP_CONTRIBUTORS = 3
NO_CONTRIBUTORS: tuple[Contributor, ...] = ()
"""What rows without a contributor list carry (shared and immutable)."""


class AlertError(ItapError):
    """An alert operation could not be carried out (unknown id, ...)."""


def severity(score: float, threshold: float, critical_ratio: float) -> str:
    """The one severity rule: ``critical`` at ``critical_ratio`` x the threshold or more,
    ``warning`` above the threshold, ``normal`` at or below it."""
    if threshold > 0 and score / threshold >= critical_ratio:
        return "critical"
    return "warning" if score > threshold else "normal"


@dataclass(frozen=True)
class Contributor:
    """A signal that pushed a score up, its sensor family and its share (0..1)."""

    signal: str
    family: str
    share: float


def contributors_to_json(items: Sequence[Contributor]) -> str:
    """``json.dumps([{"signal": ..., "family": ..., "share": round(share, 4)}, ...])``,
    the same text, built from a cached head per (signal, family): an engine tick
    writes one for every score with contributors and every incident it extends."""
    parts = []
    for c in items:
        head = _JSON_HEADS.get((c.signal, c.family))
        if head is None:
            head = _JSON_HEADS[(c.signal, c.family)] = (
                f'{{"signal": {json.dumps(c.signal)}, "family": {json.dumps(c.family)}, "share": '
            )
        share = round(c.share, 4)
        # json writes a finite float as float.__repr__; anything else: as json does
        number = float.__repr__(share) if isinstance(share, float) and math.isfinite(share) else json.dumps(share)
        parts.append(f"{head}{number}}}")
    return "[" + ", ".join(parts) + "]"


_JSON_HEADS: dict[tuple[Any, Any], str] = {}


def contributors_from_json(text: str | None) -> list[Contributor]:
    if not text:
        return []
    return [Contributor(d["signal"], d["family"], float(d["share"])) for d in json.loads(text)]


# ---------------------------------------------------------------------- explanations
@dataclass(frozen=True)
class Explanation:
    """Per-reading attribution: the top family and, for chosen rows, top contributors."""

    family: np.ndarray
    contributors: np.ndarray
    """Object array: a list of :class:`Contributor` per detailed row, else the shared
    empty tuple :data:`NO_CONTRIBUTORS`."""


def _membership(feature_names: Sequence[str], families: Mapping[str, str]) -> tuple[list[str], list[str], np.ndarray]:
    signals = [*families.keys(), EVENTS_SIGNAL]
    fams = [*families.values(), EVENT_FAMILY]
    member = np.zeros((len(feature_names), len(signals)))
    index = {s: i for i, s in enumerate(signals)}
    for j, name in enumerate(feature_names):
        member[j, index.get(feature_signal(name) or EVENTS_SIGNAL, len(signals) - 1)] = 1.0
    return signals, fams, member


def explain(
    contributions: np.ndarray,
    feature_names: Sequence[str],
    families: Mapping[str, str],
    detail: np.ndarray | None = None,
) -> Explanation:
    """Fold per-feature contributions (n, features) into signals and families.

    ``detail`` (boolean, n) selects rows that get a top-3 contributor list; others
    get an empty list (building millions of small objects would dominate scoring).
    """
    signals, fams, member = _membership(feature_names, families)
    excess = contributions.astype(np.float32)
    excess -= 1.0
    np.maximum(excess, 0.0, out=excess)
    per_signal = (excess @ member.astype(np.float32)).astype(float)  # (n, signals)
    family_names = sorted(set(fams))
    fam_member = np.array([[1.0 if f == name else 0.0 for name in family_names] for f in fams])
    per_family = per_signal @ fam_member
    top_family = (
        np.array(family_names, dtype=object)[per_family.argmax(axis=1)]
        if len(per_signal)
        else np.array([], dtype=object)
    )
    rows = np.empty(len(per_signal), dtype=object)
    rows.fill(NO_CONTRIBUTORS)
    chosen = np.flatnonzero(detail) if detail is not None else np.arange(len(per_signal))
    if len(chosen):
        sub = per_signal[chosen]
        total = sub.sum(axis=1)
        order = np.argsort(-sub, axis=1)[:, :TOP_CONTRIBUTORS]
        # plain Python floats for the loop (a numpy scalar costs ~1 us an operation);
        # the same doubles, divided the same way
        top = np.take_along_axis(sub, order, axis=1).tolist()
        totals = total.tolist()
        for r, (i, js) in enumerate(zip(chosen.tolist(), order.tolist(), strict=True)):
            whole = totals[r]
            if whole <= 0:
                continue
            rows[i] = [
                Contributor(signals[j], fams[j], value / whole)
                for j, value in zip(js, top[r], strict=True)
                if value > 0
            ]
    return Explanation(top_family, rows)


# ---------------------------------------------------------------------- silence
def _ms(value: object) -> int:
    return int(pd.Timestamp(value).value // 1_000_000)  # type: ignore[arg-type]


def mute_device(store, device_id: str, until_ts: int | None, reason: str = "", from_ts: int | None = None) -> None:
    """Mute a device from ``from_ts`` until ``until_ts`` (data time, epoch ms); None lifts its mutes."""
    table = DeviceMute.__table__  # type: ignore[attr-defined]
    with store.engine.begin() as conn:
        conn.execute(sa.delete(table).where(table.c.device_id == device_id))
        if until_ts is not None:
            conn.execute(
                sa.insert(table).values(
                    device_id=device_id,
                    until_ts=int(until_ts),
                    reason=reason[:200],
                    from_ts=from_ts,
                    created_at=utcnow(),
                )
            )


def silences(store, settings: Settings, devices: Sequence[str], at_ms: int) -> dict[str, tuple[int, str]]:
    """Devices silenced at ``at_ms`` (data time): device -> (until, why), from operator
    mutes and the configured maintenance windows."""
    out: dict[str, tuple[int, str]] = {}
    table = DeviceMute.__table__  # type: ignore[attr-defined]
    with store.engine.connect() as conn:
        for device, until, reason in conn.execute(
            sa.select(table.c.device_id, table.c.until_ts, table.c.reason).where(
                table.c.until_ts > at_ms, sa.or_(table.c.from_ts.is_(None), table.c.from_ts <= at_ms)
            )
        ):
            # a maintenance window set from the console is stored as a mute with its reason
            label = reason if reason.startswith("maintenance") else f"muted{': ' + reason if reason else ''}"
            out[str(device)] = (int(until), label)
    for window in settings.alerts.maintenance:
        start, end = _ms(window.start), _ms(window.end)
        if not start <= at_ms < end:
            continue
        for device in fnmatch.filter(devices, window.device):
            if end > out.get(device, (0, ""))[0]:
                out[device] = (end, f"maintenance{': ' + window.reason if window.reason else ''}")
    return out


# ---------------------------------------------------------------------- state machine
_ALERT_TABLE = Alert.__table__  # type: ignore[attr-defined]
_ALERT_COLUMNS: tuple[str, ...] = tuple(c.name for c in _ALERT_TABLE.columns)


@dataclass(slots=True, kw_only=True, eq=False)
class TrackedAlert:
    """An alert as the tracker keeps it: the ``alert`` table's columns as plain
    attributes, with the model's defaults (a test holds both to the table).

    Not a SQLModel ``Alert``: building one costs ~110 us and setting one of its
    attributes ~5 us (validation and ORM instrumentation), and a 10,000-device tick
    opens hundreds of incidents and extends thousands. The tracker writes its alerts
    itself (:meth:`AlertTracker._persist`), so nothing here needs the ORM. Two alerts
    are equal only if they are the same object, as ORM instances are.
    """

    profile: str
    device_id: str
    family: str
    opened_ts: int
    last_ts: int
    id: int | None = None
    severity: str = "warning"
    status: str = "open"
    closed_ts: int | None = None
    peak_score: float = 0.0
    threshold: float = 0.0
    contributors: str = "[]"
    model_version_id: int | None = None
    acknowledged: bool = False
    acknowledged_at: Any = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TrackedAlert:
        """An alert from a row of the ``alert`` table (every column)."""
        return cls(**{name: row[name] for name in _ALERT_COLUMNS})


@dataclass(frozen=True)
class AlertChanges:
    """What one :meth:`AlertTracker.update` did."""

    opened: list[TrackedAlert] = field(default_factory=list)
    updated: list[TrackedAlert] = field(default_factory=list)
    closed: list[TrackedAlert] = field(default_factory=list)


INCIDENT_CONTRIBUTORS = 6
"""Signals an incident keeps (an incident spans families, so more than a reading's 3)."""


@dataclass
class _Open:
    alert: TrackedAlert
    last_above_ts: int
    """Time of the device's last over-threshold reading (epoch ms)."""
    families: Counter = field(default_factory=Counter)
    """Over-threshold readings per family."""
    push: dict[str, tuple[str, float]] = field(default_factory=dict)
    """signal -> (family, summed share over the incident's readings)."""
    recent_scores: deque = field(default_factory=deque)
    """Scores of the last n over-threshold readings (severity follows them)."""
    # What the update in progress folded in, written to the alert once at its end
    # (:meth:`AlertTracker._write_back`): setting a mapped attribute costs ~10 us, and
    # an incident of every device of a 10k fleet is extended by each tick.
    extended: bool = False
    peak: float = float("-inf")
    threshold: float = 0.0
    push_changed: bool = False


@dataclass
class _DeviceState:
    count: int = 0
    recent: deque = field(default_factory=deque)
    """(reading index, family) of over-threshold readings among the last n."""
    incident: _Open | None = None


class AlertTracker:
    """Turns scored readings into alerts and keeps them in the ``alert`` table.

    Args:
        store: the :class:`~itap_engine.store.sql.Store` alerts are persisted to.
        settings: ``[alerts]`` gives k, n, quiet_readings and critical_ratio.

    Open alerts already in the database are picked up, so a tracker in a new
    process continues where the last one stopped.
    """

    def __init__(self, store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.rules = settings.alerts
        self._devices: dict[tuple[str, str], _DeviceState] = {}
        self._thresholds: dict[str, tuple[float, int | None]] = {}
        self._superseded: list[TrackedAlert] = []
        """Open alerts of one device beyond the first, from a database written before
        incidents were per device: closed on the next update."""
        table = _ALERT_TABLE
        with store.engine.connect() as conn:
            rows = [
                TrackedAlert.from_row(row._mapping)
                for row in conn.execute(
                    sa.select(table).where(table.c.status == "open").order_by(table.c.last_ts.desc())
                )
            ]
        for alert in rows:
            state = self._devices.setdefault((alert.profile, alert.device_id), _DeviceState())
            if state.incident is not None:
                alert.status, alert.closed_ts = "closed", int(alert.last_ts)
                self._superseded.append(alert)
                continue
            entry = _Open(alert, last_above_ts=int(alert.last_ts))
            entry.families[alert.family] += 1
            for c in contributors_from_json(alert.contributors):
                entry.push[c.signal] = (c.family, c.share)
            state.incident = entry

    def _silenced(self, since_ms: int) -> Callable[[str, int], bool]:
        """A test: is this device silenced at this time (mutes read once per update)?"""
        table = DeviceMute.__table__  # type: ignore[attr-defined]
        with self.store.engine.connect() as conn:
            mutes = [
                (str(d), int(u))
                for d, u in conn.execute(
                    sa.select(table.c.device_id, table.c.until_ts).where(table.c.until_ts > since_ms)
                )
            ]
        windows = [(w.device, _ms(w.start), _ms(w.end)) for w in self.rules.maintenance]
        if not mutes and not windows:
            return lambda device, at: False

        def silenced(device: str, at: int) -> bool:
            if any(d == device and at < until for d, until in mutes):
                return True
            return any(start <= at < end and fnmatch.fnmatchcase(device, pattern) for pattern, start, end in windows)

        return silenced

    @property
    def quiet_ms(self) -> int:
        """The quiet period that closes an incident, in milliseconds of data time."""
        seconds = self.rules.quiet_seconds
        if seconds is None:
            seconds = self.rules.quiet_readings * self.settings.simulation.freq_s
        return int(seconds * 1000)

    def open_alerts(self, profile: str | None = None) -> list[TrackedAlert]:
        return [
            st.incident.alert
            for (p, _), st in self._devices.items()
            if profile in (None, p) and st.incident is not None
        ]

    def _threshold(self, profile: str, scored: pd.DataFrame) -> tuple[float, int | None]:
        if "threshold" in scored.columns and len(scored):
            version = scored["model_version_id"].iloc[0] if "model_version_id" in scored.columns else None
            return float(scored["threshold"].iloc[0]), (int(version) if version is not None else None)
        cached = self._thresholds.get(profile)
        if cached is None:
            with self.store.session() as session:
                row = session.exec(
                    select(ModelVersion)
                    .where(ModelVersion.profile == profile, ModelVersion.active == True)  # noqa: E712
                    .order_by(ModelVersion.id.desc())  # type: ignore[union-attr]
                ).first()
            cached = (row.threshold, row.id) if row else (float("nan"), None)
            self._thresholds[profile] = cached
        return cached

    def update(self, profile: str, scored: pd.DataFrame) -> AlertChanges:
        """Advance the state machine over scored readings (any order; sorted here)."""
        changes = AlertChanges()
        if scored.empty:
            return changes
        threshold, version = self._threshold(profile, scored)
        frame = sort_readings(scored)  # the scorer's output is already in order: no copy
        devices = frame["device_id"].to_numpy()
        ts = frame["ts"].to_numpy(dtype=np.int64)
        score = frame["score"].to_numpy(dtype=float)
        above = frame["is_anomalous"].to_numpy(dtype=bool)
        family = frame["family"].to_numpy(dtype=object)
        contributors = frame["contributors"].to_numpy(dtype=object) if "contributors" in frame.columns else None
        # thresholds are per device (calibrated on each device's known-good window)
        limits = (
            frame["threshold"].to_numpy(dtype=float) if "threshold" in frame.columns else np.full(len(frame), threshold)
        )
        bounds = np.flatnonzero(np.r_[True, devices[1:] != devices[:-1], True])
        k, n, quiet = self.rules.k, self.rules.n, self.quiet_ms
        silenced = self._silenced(int(ts.min()))
        touched: dict[int, TrackedAlert] = {}
        opened_ids: set[int] = set()
        closed: list[TrackedAlert] = list(self._superseded)
        self._superseded = []
        new_alerts: list[TrackedAlert] = []
        extended: list[_Open] = []

        def close(state: _DeviceState) -> None:
            entry = state.incident
            assert entry is not None
            state.incident = None
            entry.alert.status = "closed"
            entry.alert.closed_ts = int(entry.last_above_ts + quiet)
            closed.append(entry.alert)

        # per device: its rows over the threshold (most devices have none), as plain ints
        starts, ends = bounds[:-1], bounds[1:]
        any_above = np.add.reduceat(above, starts).astype(bool).tolist() if len(starts) else []
        last_ts = ts[ends - 1].tolist()
        device_of = self._devices
        # the rows as Python values: the loop below reads them one at a time, and a
        # numpy scalar costs several times a Python int or float in every operation
        ts_of, score_of, limit_of = ts.tolist(), score.tolist(), limits.tolist()
        family_of = family.tolist()
        contributors_list = contributors.tolist() if contributors is not None else None
        for b, (lo, hi, name) in enumerate(zip(starts.tolist(), ends.tolist(), devices[starts].tolist(), strict=True)):
            key = (profile, str(name))
            state = device_of.get(key)
            if not any_above[b]:
                if state is None:
                    continue
                if state.incident is not None and last_ts[b] >= state.incident.last_above_ts + quiet:
                    close(state)
                state.count += hi - lo
                continue
            rows_above = (np.flatnonzero(above[lo:hi]) + lo).tolist()
            if state is None:
                state = device_of.setdefault(key, _DeviceState())
            base = state.count - lo  # device reading index of frame row r is base + r
            for r in rows_above:
                idx = base + r
                if state.incident is not None and ts_of[r] > state.incident.last_above_ts + quiet:
                    close(state)
                while state.recent and state.recent[0][0] <= idx - n:
                    state.recent.popleft()
                state.recent.append((idx, family_of[r]))
                entry = state.incident
                if entry is not None:
                    self._extend(entry, r, ts_of, score_of, family_of, contributors_list, limit_of[r], n)
                    if not entry.extended:
                        entry.extended = True
                        extended.append(entry)
                    touched[id(entry.alert)] = entry.alert
                elif len(state.recent) >= k and not silenced(key[1], ts_of[r]):
                    counts = Counter(f for _, f in state.recent)
                    best = max(counts.values())
                    fam = family_of[r] if counts[family_of[r]] == best else counts.most_common(1)[0][0]
                    alert = TrackedAlert(
                        profile=profile,
                        device_id=key[1],
                        family=str(fam),
                        opened_ts=ts_of[r],
                        last_ts=ts_of[r],
                        threshold=limit_of[r],
                        model_version_id=version,
                        peak_score=-np.inf,
                    )
                    entry = _Open(alert, last_above_ts=ts_of[r])
                    self._extend(entry, r, ts_of, score_of, family_of, contributors_list, limit_of[r], n)
                    entry.extended = True
                    extended.append(entry)
                    state.incident = entry
                    new_alerts.append(alert)
                    opened_ids.add(id(alert))
            if state.incident is not None and last_ts[b] >= state.incident.last_above_ts + quiet:
                close(state)
            state.count += hi - lo
        for entry in extended:
            self._write_back(entry)
        self._persist(new_alerts, touched, closed)
        closed_ids = {id(a) for a in closed}
        return AlertChanges(
            opened=new_alerts,
            updated=[a for key, a in touched.items() if key not in opened_ids and key not in closed_ids],
            closed=closed,
        )

    def _extend(
        self,
        entry: _Open,
        r: int,
        ts: Sequence[int],
        score: Sequence[float],
        family: Sequence[Any],
        contributors: Sequence[Any] | None,
        threshold: float,
        n: int,
    ) -> None:
        """Fold over-threshold reading ``r`` into the device's incident (in ``entry``;
        :meth:`_write_back` then sets the alert's columns)."""
        if not entry.extended:
            entry.peak = float(entry.alert.peak_score)
        entry.last_above_ts = int(ts[r])
        entry.families[str(family[r])] += 1
        value = float(score[r])
        entry.peak = max(entry.peak, value)
        entry.recent_scores.append(value)
        while len(entry.recent_scores) > n:
            entry.recent_scores.popleft()
        entry.threshold = threshold
        if contributors is not None and isinstance(contributors[r], (list, tuple)) and contributors[r]:
            for c in contributors[r]:
                fam, total = entry.push.get(c.signal, (c.family, 0.0))
                entry.push[c.signal] = (fam, total + float(c.share))
            entry.push_changed = True

    def _write_back(self, entry: _Open) -> None:
        """Set the alert's columns from what the update folded into its incident: as
        each reading would have left them, computed once."""
        alert = entry.alert
        # an open incident is at least a warning; it follows its last n readings up and down
        critical = severity(max(entry.recent_scores), entry.threshold or 0.0, self.rules.critical_ratio) == "critical"
        values: dict[str, object] = {
            "last_ts": entry.last_above_ts,
            "family": entry.families.most_common(1)[0][0],
            "peak_score": entry.peak,
            "severity": "critical" if critical else "warning",
        }
        if entry.push_changed:
            total = sum(v for _, v in entry.push.values()) or 1.0
            ranked = sorted(entry.push.items(), key=lambda item: -item[1][1])[:INCIDENT_CONTRIBUTORS]
            values["contributors"] = contributors_to_json(
                [Contributor(signal, fam, v / total) for signal, (fam, v) in ranked]
            )
        for name, value in values.items():
            # reading a mapped attribute is cheap, setting one is not: set what changed
            current = getattr(alert, name)
            if current != value or type(current) is not type(value):
                setattr(alert, name, value)
        entry.extended = entry.push_changed = False

    _TRACKED = ("status", "family", "severity", "last_ts", "closed_ts", "peak_score", "contributors")
    """The columns this tracker owns. Everything else (acknowledged, set by an operator
    in any process) is never written back from the in-memory copy."""

    def _persist(self, new: list[TrackedAlert], touched: dict[int, TrackedAlert], closed: list[TrackedAlert]) -> None:
        """Insert new alerts; update only the tracked columns of the others, set-based."""
        new_ids = {id(a) for a in new}
        if new:
            # a new alert may already be updated or closed
            if self.store.is_sqlite:
                _insert_alerts_sqlite(self.store, new)
            else:
                columns = [c for c in _ALERT_COLUMNS if c != "id"]
                rows = [{name: getattr(a, name) for name in columns} for a in new]
                stmt = sa.insert(_ALERT_TABLE).returning(_ALERT_TABLE.c.id, sort_by_parameter_order=True)
                with self.store.writing(), self.store.engine.begin() as conn:
                    ids = conn.execute(stmt, rows).scalars().all()
                for alert, alert_id in zip(new, ids, strict=True):
                    alert.id = int(alert_id)
        existing = {id(a): a for a in [*touched.values(), *closed] if a.id is not None and id(a) not in new_ids}
        if not existing:
            return
        # the statement's parameter order (its SET clause in table order, then the id),
        # so the rows go to the driver as they are built
        order = (*_TRACKED_SET_ORDER, "id")
        tracked = operator.attrgetter(*order)
        values = [tracked(a) for a in existing.values()]
        names = tuple(f"b_{name}" for name in order)
        self.store.executemany_tuples("alert_tracked_columns_t", _tracked_update, names, values)


def _first_at_or_after(ts: np.ndarray, lo: int, hi: int, at_ms: int) -> int:
    """The first timestamp in ``ts[lo:hi]`` (sorted) at or after ``at_ms`` (``ts[lo]`` if none)."""
    k = lo + int(np.searchsorted(ts[lo:hi], at_ms, side="left"))
    return int(ts[k]) if k < hi else int(ts[lo])


_TRACKED_SET_ORDER = tuple(c.name for c in _ALERT_TABLE.columns if c.name in AlertTracker._TRACKED)


def _insert_alerts_sqlite(store, alerts: list[TrackedAlert]) -> None:
    """Insert new alerts on SQLite as the ORM would (every column, ids in list order
    after the largest stored id, which is how SQLite numbers them), with one
    executemany instead of one INSERT per alert, and set their ``id``. The tracker is
    the only writer of new alerts (one engine holds the run lock); the largest id is
    read in the same write transaction."""
    columns = list(_ALERT_COLUMNS)
    values = operator.attrgetter(*[c for c in columns if c != "id"])
    with store.writing(), store.engine.begin() as conn:
        # take the write lock first, so the largest id cannot move under us
        conn.exec_driver_sql("UPDATE alert SET id = id WHERE 0")
        start = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(_ALERT_TABLE.c.id), 0))).scalar_one())
        rows = []
        for k, alert in enumerate(alerts, start=1):
            row = dict(zip([c for c in columns if c != "id"], values(alert), strict=True))
            row["id"] = start + k
            rows.append(row)
        conn.execute(sa.insert(_ALERT_TABLE), rows)
    for k, alert in enumerate(alerts, start=1):
        alert.id = start + k


def _tracked_update() -> sa.Executable:
    """UPDATE the tracker's columns (:attr:`AlertTracker._TRACKED`) of alert b_id."""
    table = Alert.__table__  # type: ignore[attr-defined]
    return (
        sa.update(table)
        .where(table.c.id == sa.bindparam("b_id"))
        .values({name: sa.bindparam(f"b_{name}") for name in AlertTracker._TRACKED})
    )


def acknowledge_alert(store, alert_id: int, acknowledged: bool = True) -> Alert:
    """Mark an alert acknowledged (stored); acknowledging twice keeps the first time.
    ``acknowledged=False`` undoes an acknowledgement."""
    with store.session() as session:
        alert = session.get(Alert, alert_id)
        if alert is None:
            raise AlertError(f"alert {alert_id} does not exist; list alerts with `itap anomalies`")
        if alert.acknowledged != acknowledged:
            alert.acknowledged = acknowledged
            alert.acknowledged_at = utcnow() if acknowledged else None
            session.add(alert)
            session.commit()
        session.refresh(alert)
        return alert


def alerts_frame(store, profile: str | None = None, *, status: str | None = None) -> pd.DataFrame:
    """Alerts as a frame (for evaluation and listings)."""
    stmt = sa.select(Alert.__table__)  # type: ignore[attr-defined]
    if profile is not None:
        stmt = stmt.where(Alert.__table__.c.profile == profile)  # type: ignore[attr-defined]
    if status is not None:
        stmt = stmt.where(Alert.__table__.c.status == status)  # type: ignore[attr-defined]
    with store.engine.connect() as conn:
        result = conn.execute(stmt)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))
