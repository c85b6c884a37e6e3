"""What the engine keeps in memory for its snapshots: each device's newest reading and
score, and the tick's most anomalous readings; and the snapshot built from them.

Kept per profile as frames indexed by device, updated from each tick's readings and
scores (one vectorised step per tick, whatever the number of devices), so a snapshot
reads no readings or scores back from the database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa

from itap_engine.config import Settings
from itap_engine.detection.scoring import TrainedModel
from itap_engine.engine.results import to_ms
from itap_engine.snapshot import AnomalyRow, EngineStats, Snapshot
from itap_engine.snapshot.assemble import (
    MAX_TOP_ANOMALIES,
    FleetDevice,
    ProfileState,
    build_snapshot,
    reading_anomaly,
)
from itap_engine.snapshot.dto import contributors_of
from itap_engine.store import schema as models
from itap_engine.store.queries import (
    RECENT_CLOSED_ALERTS,
    injected_faults,
    recent_validation_alerts,
    validation_problems,
)
from itap_engine.store.sql import Store

__all__ = ["AlertRows", "FleetView", "newest_per_device"]

_ALERT_COLUMNS = (
    "id",
    "device_id",
    "profile",
    "last_ts",
    "peak_score",
    "severity",
    "family",
    "contributors",
    "status",
    "acknowledged",
    "opened_ts",
)


class AlertRows:
    """Open and recently closed alerts as the snapshot lists them: what
    :func:`~itap_engine.store.queries.open_and_recent_alerts` gives, read as plain rows
    (no ORM object per alert), and each row's :class:`AnomalyRow` kept from the
    snapshot before when the alert's columns did not change (a 10k fleet has
    thousands of open incidents, most unchanged in a tick)."""

    def __init__(self) -> None:
        self._rows: dict[tuple[Any, ...], AnomalyRow] = {}

    def read(self, store: Store, closed_limit: int = RECENT_CLOSED_ALERTS) -> tuple[list[AnomalyRow], list[AnomalyRow]]:
        table = models.Alert.__table__  # type: ignore[attr-defined]
        columns = [table.c[name] for name in _ALERT_COLUMNS]
        with store.engine.connect() as conn:
            opened = conn.execute(
                sa.select(*columns).where(table.c.status == "open").order_by(table.c.peak_score.desc())
            ).all()
            closed = conn.execute(
                sa.select(*columns).where(table.c.status == "closed").order_by(table.c.id.desc()).limit(closed_limit)
            ).all()
            notes = self._notes(conn, [r[0] for r in closed])
        previous, self._rows = self._rows, {}
        open_rows = [self._row((*r, notes.get(r[0], "")), previous) for r in opened]
        closed_rows = [self._row((*r, notes.get(r[0], "")), previous) for r in closed]
        return open_rows, closed_rows

    @staticmethod
    def _notes(conn: sa.Connection, closed_ids: list[Any]) -> dict[Any, str]:
        """The operators' notes of the open alerts and of ``closed_ids``: one query by a
        join on the open alerts (a 10k fleet has thousands open; an ``IN`` list of
        their ids costs more than the rows)."""
        note = models.IncidentNote.__table__  # type: ignore[attr-defined]
        table = models.Alert.__table__  # type: ignore[attr-defined]
        of_open = sa.select(note.c.alert_id, note.c.text).join(table, table.c.id == note.c.alert_id)
        notes = {i: t for i, t in conn.execute(of_open.where(table.c.status == "open"))}
        if closed_ids:
            of_closed = sa.select(note.c.alert_id, note.c.text).where(note.c.alert_id.in_(closed_ids))
            notes.update((i, t) for i, t in conn.execute(of_closed))
        return notes

    def _row(self, values: tuple[Any, ...], previous: dict[tuple[Any, ...], AnomalyRow]) -> AnomalyRow:
        row = previous.get(values)
        if row is None:
            alert_id, device_id, profile, last_ts, peak, severity, family, contributors, status, ack, opened, note = (
                values
            )
            row = AnomalyRow(
                device_id=device_id,
                profile=profile,
                ts=int(last_ts),
                score=float(peak),
                severity=severity,
                family=family,
                contributors=contributors_of(contributors),
                alert_id=alert_id,
                status=status,
                acknowledged=bool(ack),
                opened_ts=int(opened),
                note=note,
            )
        self._rows[values] = row
        return row


def _as_dict(series: pd.Series) -> dict[Any, Any]:
    """``series.to_dict()`` (index -> Python value), from two lists: pandas boxes each
    value on its own, ~2 us a device."""
    return dict(zip(series.index.tolist(), series.tolist(), strict=True))


def newest_per_device(frame: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """The last row of each device in ``frame`` (index ``device_id``), over ``previous``
    for the devices ``frame`` does not have."""
    last = frame.drop_duplicates("device_id", keep="last").set_index("device_id")
    if previous is None or not len(previous):
        return last
    if len(last) == len(previous) and last.index.equals(previous.index):
        return last  # every device reported (the usual tick): nothing to keep from before
    return pd.concat([previous[~previous.index.isin(last.index)], last])


class FleetView:
    """The newest reading and score of each device, per profile, and the last tick's
    reading anomalies (the engine's in-memory read model)."""

    def __init__(self) -> None:
        self.latest_rows: dict[str, pd.DataFrame] = {}
        self.latest_scores: dict[str, pd.DataFrame] = {}
        self.reading_anomalies: list[AnomalyRow] = []
        self.alerts = AlertRows()

    def start_tick(self) -> None:
        self.reading_anomalies = []

    def load(self, profile: str, latest: pd.DataFrame, scores: pd.DataFrame) -> None:
        """Start from what the database holds (at resume)."""
        if len(latest):
            self.latest_rows[profile] = latest
        if len(scores):
            self.latest_scores[profile] = scores

    def readings(self, profile: str, readings: pd.DataFrame) -> None:
        self.latest_rows[profile] = newest_per_device(readings, self.latest_rows.get(profile))

    def scores(self, profile: str, scored: pd.DataFrame) -> None:
        frame = scored
        if not pd.api.types.is_integer_dtype(frame["ts"].dtype):
            frame = scored.assign(ts=[to_ms(v) for v in pd.to_datetime(scored["ts"])])
        self.latest_scores[profile] = newest_per_device(frame, self.latest_scores.get(profile))
        if "is_anomalous" in frame:
            hot = frame[frame["is_anomalous"].astype(bool)].nlargest(MAX_TOP_ANOMALIES, "score")
            family = hot["family"].tolist() if "family" in hot else ["other"] * len(hot)
            contributors = hot["contributors"].tolist() if "contributors" in hot else [None] * len(hot)
            self.reading_anomalies.extend(
                reading_anomaly(device, profile, ts, score, fam, contrib)
                for device, ts, score, fam, contrib in zip(
                    hot["device_id"].tolist(), hot["ts"].tolist(), hot["score"].tolist(), family, contributors
                )
            )

    def snapshot(
        self,
        store: Store,
        settings: Settings,
        *,
        seq: int,
        stats: EngineStats,
        simulated: Mapping[str, Sequence[str]],
        sites: Mapping[str, str | None],
        models: Mapping[str, TrainedModel],
        clock_ms: int | None,
    ) -> Snapshot:
        """An immutable picture of the fleet: ``simulated`` (profile -> the devices this
        engine simulates) plus every other device with a reading in memory."""
        from itap_engine.detection.alerts import silences

        open_alerts, recent_closed = self.alerts.read(store)
        own = {d for devices in simulated.values() for d in devices}
        profiles: dict[str, ProfileState] = {}
        for profile in settings.profiles:
            latest = self.latest_rows.get(profile)
            scores = self.latest_scores.get(profile)
            devices = list(simulated.get(profile, ()))
            if latest is not None:
                devices += [d for d in latest.index.tolist() if d not in own]
            profiles[profile] = ProfileState(
                devices=[FleetDevice(d, sites.get(d)) for d in devices],
                latest=latest,
                scores=_as_dict(scores["score"]) if scores is not None else {},
                device_thresholds=_as_dict(scores["threshold"]) if scores is not None and "threshold" in scores else {},
                threshold=model.threshold if (model := models.get(profile)) is not None else None,
            )
        return build_snapshot(
            settings,
            seq=seq,
            profiles=profiles,
            open_alerts=open_alerts,
            recent_closed=recent_closed,
            reading_anomalies=self.reading_anomalies,
            injected=injected_faults(store),
            validation_alerts=recent_validation_alerts(store),
            validation_problems=validation_problems(store),
            clock_ms=clock_ms,
            silenced=silences(
                store, settings, [d.device_id for p in profiles.values() for d in p.devices], clock_ms or 0
            ),
            stats=stats,
        )
