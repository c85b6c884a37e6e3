"""Alert rules over scored readings, and the explanation each alert carries.

Why it is built this way:

* **k of n, then quiet.** One reading over the threshold is noise; ``k`` of the last
  ``n`` readings of a device is a symptom. An alert stays open while the device keeps
  producing readings over the threshold and closes after a quiet period under it, so
  a flapping score does not flood the operator. The quiet period is time
  (``quiet_seconds``) when configured, so a device sampled every second and one
  sampled every ten get the same calm; otherwise ``quiet_readings`` readings.
* **One open alert per device and family.** The family of an alert is the sensor
  family that dominates the over-threshold readings of the k-of-n window (thermal,
  mechanical, electrical, ...). A second family on the same device (a bearing
  failing while a sensor drops out) gets its own alert; the same family never does.
* **Event-driven.** The state machine only visits readings over the threshold (and
  checks quiet periods arithmetically between them), so a whole day of a fleet goes
  through it in well under a second, and a tick of a hundred readings costs nothing.
  State carries over between calls, so batch and streaming give the same alerts.
* **Explanations.** :func:`explain` folds the detector's per-feature contributions
  into signals and families: the share of a signal is its part of the excess
  push (robust z squared beyond normal) of all features derived from it.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlmodel import select

from itap_engine.config import Settings
from itap_engine.errors import ItapError
from itap_engine.features import EVENT_FAMILY, feature_signal, sort_readings
from itap_engine.models import Alert, ModelVersion, utcnow

__all__ = [
    "AlertChanges",
    "AlertError",
    "AlertTracker",
    "Contributor",
    "acknowledge_alert",
    "contributors_from_json",
    "contributors_to_json",
    "explain",
]

EVENTS_SIGNAL = "(events)"
TOP_CONTRIBUTORS = 3
NO_CONTRIBUTORS: tuple[Contributor, ...] = ()
"""What rows without a contributor list carry (shared and immutable)."""


class AlertError(ItapError):
    """An alert operation could not be carried out (unknown id, ...)."""


@dataclass(frozen=True)
class Contributor:
    """A signal that pushed a score up, its sensor family and its share (0..1)."""

    signal: str
    family: str
    share: float


def contributors_to_json(items: Sequence[Contributor]) -> str:
    return json.dumps([{"signal": c.signal, "family": c.family, "share": round(c.share, 4)} for c in items])


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
    top_family = np.array(family_names, dtype=object)[per_family.argmax(axis=1)] if len(per_signal) else np.array([], dtype=object)
    rows = np.empty(len(per_signal), dtype=object)
    rows.fill(NO_CONTRIBUTORS)
    chosen = np.flatnonzero(detail) if detail is not None else np.arange(len(per_signal))
    if len(chosen):
        sub = per_signal[chosen]
        total = sub.sum(axis=1)
        order = np.argsort(-sub, axis=1)[:, :TOP_CONTRIBUTORS]
        for r, i in enumerate(chosen):
            if total[r] <= 0:
                continue
            rows[i] = [
                Contributor(signals[j], fams[j], float(sub[r, j] / total[r])) for j in order[r] if sub[r, j] > 0
            ]
    return Explanation(top_family, rows)


# ---------------------------------------------------------------------- state machine
@dataclass(frozen=True)
class AlertChanges:
    """What one :meth:`AlertTracker.update` did."""

    opened: list[Alert] = field(default_factory=list)
    updated: list[Alert] = field(default_factory=list)
    closed: list[Alert] = field(default_factory=list)


@dataclass
class _Open:
    alert: Alert
    last_above: int
    """Device reading index of the device's last over-threshold reading."""
    last_above_ts: int = -(2**62)
    """Its timestamp (epoch ms), for a quiet period in time."""


@dataclass
class _DeviceState:
    count: int = 0
    recent: deque = field(default_factory=deque)
    """(reading index, family) of over-threshold readings among the last n."""
    open: dict[str, _Open] = field(default_factory=dict)


class AlertTracker:
    """Turns scored readings into alerts and keeps them in the ``alert`` table.

    Args:
        store: the :class:`~itap_engine.store.Store` alerts are persisted to.
        settings: ``[alerts]`` gives k, n, quiet_readings and critical_ratio.

    Open alerts already in the database are picked up, so a tracker in a new
    process continues where the last one stopped.
    """

    def __init__(self, store, settings: Settings) -> None:  # noqa: ANN001 - Store imported lazily
        self.store = store
        self.settings = settings
        self.rules = settings.alerts
        self._devices: dict[tuple[str, str], _DeviceState] = {}
        self._thresholds: dict[str, tuple[float, int | None]] = {}
        with store.session() as session:
            for alert in session.exec(select(Alert).where(Alert.status == "open")):
                state = self._devices.setdefault((alert.profile, alert.device_id), _DeviceState())
                state.open[alert.family] = _Open(alert, last_above=-1, last_above_ts=int(alert.last_ts or 0))

    def open_alerts(self, profile: str | None = None) -> list[Alert]:
        return [
            o.alert for (p, _), st in self._devices.items() if profile in (None, p) for o in st.open.values()
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
        k, n, quiet = self.rules.k, self.rules.n, self.rules.quiet_readings
        quiet_ms = None if self.rules.quiet_seconds is None else int(self.rules.quiet_seconds * 1000)
        touched: dict[int, Alert] = {}
        opened_ids: set[int] = set()
        closed: list[Alert] = []
        new_alerts: list[Alert] = []

        def close(state: _DeviceState, fam: str, at_ts: int) -> None:
            entry = state.open.pop(fam)
            entry.alert.status = "closed"
            entry.alert.closed_ts = int(at_ts)
            closed.append(entry.alert)

        for b in range(len(bounds) - 1):
            lo, hi = bounds[b], bounds[b + 1]
            key = (profile, str(devices[lo]))
            state = self._devices.get(key)
            rows_above = np.flatnonzero(above[lo:hi]) + lo
            if state is None:
                if len(rows_above) == 0:
                    continue
                state = self._devices.setdefault(key, _DeviceState())
            base = state.count - lo  # device reading index of frame row r is base + r
            for r in rows_above:
                idx = base + r
                for fam in list(state.open):
                    entry = state.open[fam]
                    if quiet_ms is not None:
                        if ts[r] - entry.last_above_ts > quiet_ms:
                            close(state, fam, _first_at_or_after(ts, lo, r + 1, entry.last_above_ts + quiet_ms))
                    elif idx > entry.last_above + quiet:
                        close_row = entry.last_above + quiet - base
                        close(state, fam, ts[close_row] if close_row >= lo else ts[lo])
                while state.recent and state.recent[0][0] <= idx - n:
                    state.recent.popleft()
                state.recent.append((idx, family[r]))
                for entry in state.open.values():
                    entry.last_above = idx
                    entry.last_above_ts = int(ts[r])
                    entry.alert.last_ts = int(ts[r])
                    if entry.alert.family == family[r] and score[r] > entry.alert.peak_score:
                        self._raise_peak(entry.alert, score[r], contributors, r, limits[r])
                    touched[id(entry.alert)] = entry.alert
                if len(state.recent) >= k:
                    counts = Counter(f for _, f in state.recent)
                    best = max(counts.values())
                    fam = family[r] if counts[family[r]] == best else counts.most_common(1)[0][0]
                    if fam not in state.open:
                        alert = Alert(
                            profile=profile,
                            device_id=key[1],
                            family=str(fam),
                            opened_ts=int(ts[r]),
                            last_ts=int(ts[r]),
                            threshold=float(limits[r]),
                            model_version_id=version,
                            peak_score=-np.inf,
                        )
                        self._raise_peak(alert, score[r], contributors, r, limits[r])
                        state.open[str(fam)] = _Open(alert, last_above=idx, last_above_ts=int(ts[r]))
                        new_alerts.append(alert)
                        opened_ids.add(id(alert))
            last_idx = base + hi - 1
            for fam in list(state.open):
                entry = state.open[fam]
                if quiet_ms is not None:
                    if ts[hi - 1] - entry.last_above_ts >= quiet_ms:
                        close(state, fam, _first_at_or_after(ts, lo, hi, entry.last_above_ts + quiet_ms))
                    continue
                if last_idx >= entry.last_above + quiet:
                    close_row = max(entry.last_above + quiet - base, lo)
                    close(state, fam, ts[close_row])
            state.count += hi - lo
        self._persist(new_alerts, touched, closed)
        closed_ids = {id(a) for a in closed}
        return AlertChanges(
            opened=new_alerts,
            updated=[a for key, a in touched.items() if key not in opened_ids and key not in closed_ids],
            closed=closed,
        )

    def _raise_peak(self, alert: Alert, value: float, contributors: np.ndarray | None, r: int, threshold: float) -> None:
        alert.peak_score = float(value)
        ratio = value / threshold if threshold and threshold > 0 else 1.0
        alert.severity = "critical" if ratio >= self.rules.critical_ratio else "warning"
        if contributors is not None and isinstance(contributors[r], (list, tuple)) and contributors[r]:
            alert.contributors = contributors_to_json(contributors[r])

    _TRACKED = ("status", "severity", "last_ts", "closed_ts", "peak_score", "contributors")
    """The columns this tracker owns. Everything else (acknowledged, set by an operator
    in any process) is never written back from the in-memory copy."""

    def _persist(self, new: list[Alert], touched: dict[int, Alert], closed: list[Alert]) -> None:
        """Insert new alerts; update only the tracked columns of the others, set-based."""
        new_ids = {id(a) for a in new}
        if new:
            with self.store.session() as session:
                session.add_all(new)  # a new alert may already be updated or closed
                session.commit()
        existing = {id(a): a for a in [*touched.values(), *closed] if a.id is not None and id(a) not in new_ids}
        if not existing:
            return
        params = [
            {"b_id": a.id, **{f"b_{name}": getattr(a, name) for name in self._TRACKED}} for a in existing.values()
        ]
        self.store.executemany("alert_tracked_columns", _tracked_update, params)


def _first_at_or_after(ts: np.ndarray, lo: int, hi: int, at_ms: int) -> int:
    """The first timestamp in ``ts[lo:hi]`` (sorted) at or after ``at_ms`` (``ts[lo]`` if none)."""
    k = lo + int(np.searchsorted(ts[lo:hi], at_ms, side="left"))
    return int(ts[k]) if k < hi else int(ts[lo])


def _tracked_update() -> sa.Executable:
    """UPDATE the tracker's columns (:attr:`AlertTracker._TRACKED`) of alert b_id."""
    table = Alert.__table__  # type: ignore[attr-defined]
    return (
        sa.update(table)
        .where(table.c.id == sa.bindparam("b_id"))
        .values({name: sa.bindparam(f"b_{name}") for name in AlertTracker._TRACKED})
    )


def acknowledge_alert(store, alert_id: int) -> Alert:  # noqa: ANN001
    """Mark an alert acknowledged (stored); acknowledging twice keeps the first time."""
    with store.session() as session:
        alert = session.get(Alert, alert_id)
        if alert is None:
            raise AlertError(f"alert {alert_id} does not exist; list alerts with `itap anomalies`")
        if not alert.acknowledged:
            alert.acknowledged = True
            alert.acknowledged_at = utcnow()
            session.add(alert)
            session.commit()
        session.refresh(alert)
        return alert


def alerts_frame(store, profile: str | None = None, *, status: str | None = None) -> pd.DataFrame:  # noqa: ANN001
    """Alerts as a frame (for evaluation and listings)."""
    stmt = sa.select(Alert.__table__)  # type: ignore[attr-defined]
    if profile is not None:
        stmt = stmt.where(Alert.__table__.c.profile == profile)  # type: ignore[attr-defined]
    if status is not None:
        stmt = stmt.where(Alert.__table__.c.status == status)  # type: ignore[attr-defined]
    with store.engine.connect() as conn:
        result = conn.execute(stmt)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))
