"""The read-model queries: what the snapshot, the console and the CLI read.

With :mod:`itap_engine.store.sql`, the only place that talks SQL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlmodel import select

from itap_engine.config import Settings
from itap_engine.errors import ItapError
from itap_engine.snapshot.assemble import MAX_TOP_ANOMALIES, FleetDevice, reading_anomaly
from itap_engine.snapshot.dto import (
    AnomalyRow,
    ContributorView,
    DeviceDetail,
    EventRow,
    FaultCommandView,
    QuarantineView,
    ValidationAlertRow,
    ValidationProblemRow,
    contributors_of,
)
from itap_engine.store import schema as models
from itap_engine.store.sql import Store, datetime_to_ms
from itap_engine.store.watermarks import RETRAIN_REQUEST_KEY

RECENT_VALIDATION = 20
RECENT_CLOSED_ALERTS = 10


# ---------------------------------------------------------------------- shared queries
def write_fault_commands(
    store: Store, device_ids: Sequence[str], fault: str, severity: float, duration_s: float
) -> list[FaultCommandView]:
    """One pending ``fault_command`` row per device, as any process may write them."""
    with store.session() as session:
        rows = [
            models.FaultCommand(device_id=d, fault=fault, severity=float(severity), duration_s=float(duration_s))
            for d in device_ids
        ]
        session.add_all(rows)
        session.commit()
        for row in rows:
            session.refresh(row)
        return [command_view(row) for row in rows]


def open_and_recent_alerts(
    store: Store, closed_limit: int = RECENT_CLOSED_ALERTS
) -> tuple[list[AnomalyRow], list[AnomalyRow]]:
    """Open alerts (highest peak first) and the most recently closed ones."""
    A = models.Alert
    with store.session() as session:
        open_ = [alert_row(a) for a in session.exec(select(A).where(A.status == "open").order_by(A.peak_score.desc()))]  # type: ignore[attr-defined]
        closed = [
            alert_row(a)
            for a in session.exec(select(A).where(A.status == "closed").order_by(A.id.desc()).limit(closed_limit))  # type: ignore[union-attr]
        ]
        open_, closed = _with_notes(session, open_), _with_notes(session, closed)
    return open_, closed


def recent_validation_alerts(store: Store, limit: int = RECENT_VALIDATION) -> list[ValidationAlertRow]:
    V = models.ValidationEvent
    with store.session() as session:
        events = session.exec(select(V).order_by(V.id.desc()).limit(limit))  # type: ignore[union-attr]
        return [
            ValidationAlertRow(
                created_at=e.created_at,
                level=e.level,
                check=e.check,
                device_id=e.device_id,
                signal=e.signal,
                message=e.message,
            )
            for e in events
        ]


RECENT_RESOLVED_PROBLEMS = 20
"""Resolved validation problems a snapshot still lists (after the open ones)."""


def record_problems(
    store: Store, alerts: Sequence[ValidationAlertRow], at_ms: int, *, resolve_missing: bool = True
) -> tuple[int, int]:
    """Fold one cycle's validation alerts into problems, one per (device, signal, check).

    A problem this cycle raised again gets ``last_ts`` = ``at_ms`` (data time), its
    count and message updated; a new one is opened; an open one this cycle did not
    raise is resolved at ``at_ms`` (unless ``resolve_missing`` is False: the alerts of
    one imported file, ``itap ingest``, which says nothing about the engine's). Info-level
    alerts are not problems. Returns (opened, resolved).
    """
    P = models.ValidationProblem
    seen: dict[tuple[str, str, str], ValidationAlertRow] = {}
    for alert in alerts:
        if alert.level == "info":
            continue
        seen[(alert.device_id or "", alert.signal or "", alert.check)] = alert
    opened = resolved = 0
    with store.session() as session:
        current = {(p.device_id, p.signal, p.check): p for p in session.exec(select(P).where(P.status == "open"))}
        for key, alert in seen.items():
            problem = current.pop(key, None)
            if problem is None:
                session.add(
                    P(
                        device_id=key[0],
                        signal=key[1],
                        check=key[2],
                        level=alert.level,
                        first_ts=at_ms,
                        last_ts=at_ms,
                        message=alert.message[:2000],
                    )
                )
                opened += 1
            else:
                problem.last_ts, problem.count = at_ms, problem.count + 1
                problem.message, problem.level = alert.message[:2000], alert.level
                session.add(problem)
        for problem in current.values() if resolve_missing else ():  # not raised this cycle: it stopped
            problem.status, problem.resolved_ts = "resolved", at_ms
            session.add(problem)
            resolved += 1
        session.commit()
    return opened, resolved


def validation_problems(store: Store, resolved_limit: int = RECENT_RESOLVED_PROBLEMS) -> list[ValidationProblemRow]:
    """Open problems and the most recently resolved ones, by first seen."""
    P = models.ValidationProblem
    with store.session() as session:
        rows = list(session.exec(select(P).where(P.status == "open")))
        rows += list(
            session.exec(
                select(P).where(P.status == "resolved").order_by(P.resolved_ts.desc()).limit(resolved_limit)  # type: ignore[union-attr]
            )
        )
    rows.sort(key=lambda p: (p.first_ts, p.id or 0))
    return [
        ValidationProblemRow(
            id=int(p.id or 0),
            device_id=p.device_id or None,
            signal=p.signal or None,
            check=p.check,
            level=p.level,
            first_ts=int(p.first_ts),
            last_ts=int(p.last_ts),
            count=int(p.count),
            message=p.message,
            resolved_ts=None if p.resolved_ts is None else int(p.resolved_ts),
        )
        for p in rows
    ]


def record_events(store: Store, records: Sequence[tuple[int | None, str, str, str]]) -> None:
    """Store engine log records (data time, level, logger, message) for the events view."""
    if not records:
        return
    with store.session() as session:
        session.add_all(
            models.EngineEvent(ts=ts, level=level, logger=logger[:128], message=message[:2000])
            for ts, level, logger, message in records
        )
        session.commit()


def recent_events(store: Store, limit: int = 300) -> list[EventRow]:
    """Engine warnings, fault commands, retrains, validation problems and incidents,
    newest first, each at its data time."""
    out: list[EventRow] = []
    E, FC, MV, P, A = (
        models.EngineEvent,
        models.FaultCommand,
        models.ModelVersion,
        models.ValidationProblem,
        models.Alert,
    )
    with store.session() as session:
        for e in session.exec(select(E).order_by(E.id.desc()).limit(limit)):  # type: ignore[union-attr]
            out.append(EventRow(e.ts, "log", e.level, None, e.message))
        for c in session.exec(select(FC).order_by(FC.id.desc()).limit(limit)):  # type: ignore[union-attr]
            level = "error" if c.status == "rejected" else "info"
            text = f"fault {c.fault} severity {c.severity:g} for {c.duration_s:g} s: {c.status}"
            out.append(
                EventRow(c.start_ts, "fault", level, c.device_id, text + (f" ({c.message})" if c.message else ""))
            )
        versions = list(session.exec(select(MV).order_by(MV.id.desc()).limit(limit)))  # type: ignore[union-attr]
        numbers = _version_numbers(session, versions)
        for m in versions:
            out.append(
                EventRow(
                    m.train_end,
                    "retrain",
                    "info",
                    None,
                    f"{m.profile} model v{numbers[m.id]} ({m.detector}), threshold {m.threshold:.3g}",
                )
            )
        for p in session.exec(select(P).order_by(P.id.desc()).limit(limit)):  # type: ignore[union-attr]
            where = " ".join(x for x in (p.signal, p.check) if x)
            out.append(EventRow(p.first_ts, "validation", p.level, p.device_id or None, f"{where}: {p.message}"))
            if p.resolved_ts is not None:
                out.append(EventRow(p.resolved_ts, "validation", "info", p.device_id or None, f"{where}: resolved"))
        for a in session.exec(select(A).order_by(A.id.desc()).limit(limit)):  # type: ignore[union-attr]
            out.append(
                EventRow(a.opened_ts, "incident", a.severity, a.device_id, f"incident #{a.id} opened ({a.family})")
            )
            if a.closed_ts is not None:
                out.append(EventRow(a.closed_ts, "incident", "info", a.device_id, f"incident #{a.id} closed"))
    out.sort(key=lambda e: -(e.ts if e.ts is not None else -1))
    return out[:limit]


def injected_faults(store: Store) -> dict[str, str]:
    """device -> fault of its pending or active operator command."""
    FC = models.FaultCommand
    with store.session() as session:
        commands = session.exec(select(FC).where(FC.status.in_(["pending", "active"])).order_by(FC.id))  # type: ignore[attr-defined,arg-type]
        return {c.device_id: c.fault for c in commands}


def latest_readings(store: Store, profile: str) -> pd.DataFrame:
    """The newest stored reading of each device of a profile (index device_id; ts in epoch ms).

    One index seek per device: the ``device`` table's ``last_ts`` joins the readings'
    primary key.
    """
    table = store.readings_table(profile)
    D = models.Device.__table__  # type: ignore[attr-defined]
    stmt = (
        sa.select(table)
        .select_from(table)
        .join(D, sa.and_(D.c.id == table.c.device_id, D.c.last_ts == table.c.ts))
        .where(D.c.profile == profile)
    )
    with store.engine.connect() as conn:
        result = conn.execute(stmt)
        frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    return frame.set_index("device_id") if len(frame) else frame


# ---------------------------------------------------------------------- the past
def readings_at(store: Store, profile: str, at_ms: int) -> pd.DataFrame:
    """Each device's newest stored reading at or before ``at_ms`` (index device_id)."""
    table = store.readings_table(profile)
    newest = (
        sa.select(table.c.device_id, sa.func.max(table.c.ts).label("ts"))
        .where(table.c.ts <= at_ms)
        .group_by(table.c.device_id)
        .subquery()
    )
    stmt = sa.select(table).join(newest, sa.and_(newest.c.device_id == table.c.device_id, newest.c.ts == table.c.ts))
    with store.engine.connect() as conn:
        result = conn.execute(stmt)
        frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    return frame.set_index("device_id") if len(frame) else frame


def scores_at(store: Store, profile: str, at_ms: int) -> dict[str, float]:
    """Each device's newest stored score at or before ``at_ms``."""
    S = models.Score.__table__  # type: ignore[attr-defined]
    newest = (
        sa.select(S.c.device_id, sa.func.max(S.c.ts).label("ts"))
        .where(S.c.profile == profile, S.c.ts <= at_ms)
        .group_by(S.c.device_id)
        .subquery()
    )
    stmt = (
        sa.select(S.c.device_id, S.c.score)
        .join(newest, sa.and_(newest.c.device_id == S.c.device_id, newest.c.ts == S.c.ts))
        .where(S.c.profile == profile)
    )
    with store.engine.connect() as conn:
        return {str(d): float(v) for d, v in conn.execute(stmt)}


def alerts_at(
    store: Store, at_ms: int, closed_limit: int = RECENT_CLOSED_ALERTS
) -> tuple[list[AnomalyRow], list[AnomalyRow]]:
    """Incidents open at ``at_ms`` (opened by then, not closed by then) and the latest
    closed by then. An incident open then shows its last anomalous reading and peak
    score by then (:func:`as_of`); severity and acknowledgement are as stored now."""
    A = models.Alert
    with store.session() as session:
        open_ = [
            as_of(session, replace(alert_row(a), status="open"), at_ms)
            for a in session.exec(
                select(A)
                .where(A.opened_ts <= at_ms, sa.or_(A.closed_ts.is_(None), A.closed_ts > at_ms))  # type: ignore[arg-type, operator, union-attr]
                .order_by(A.peak_score.desc())  # type: ignore[attr-defined]
            )
        ]
        closed = [
            alert_row(a)
            for a in session.exec(
                select(A).where(A.closed_ts <= at_ms).order_by(A.closed_ts.desc()).limit(closed_limit)  # type: ignore[union-attr,operator]
            )
        ]
        return _with_notes(session, open_), _with_notes(session, closed)


def as_of(session: Any, row: AnomalyRow, at_ms: int) -> AnomalyRow:
    """An incident's row as it stood at ``at_ms``: its device's last scored reading and
    the peak score from the incident's start to then (the stored row holds them as of
    now, possibly later)."""
    if row.ts <= at_ms or row.opened_ts is None:
        return row
    scores = models.Score.__table__.c  # type: ignore[attr-defined]
    last, peak = session.exec(
        sa.select(sa.func.max(scores.ts), sa.func.max(scores.score)).where(
            scores.profile == row.profile,
            scores.device_id == row.device_id,
            scores.ts >= row.opened_ts,
            scores.ts <= at_ms,
        )
    ).one()
    return replace(
        row,
        ts=int(last) if last is not None else row.opened_ts,
        score=float(peak) if peak is not None else row.score,
    )


HISTORY_LIMIT = 1000
"""Incidents the history screen lists at most (the newest opened first)."""


def incident_history(
    store: Store, since: datetime | None = None, until: datetime | None = None, limit: int = HISTORY_LIMIT
) -> list[AnomalyRow]:
    """Incidents, open or closed, that overlap ``[since, until]`` (data time, naive = UTC;
    either end None = open), newest opened first. One still open at ``until`` shows as open."""
    since_ms = None if since is None else datetime_to_ms(since)
    until_ms = None if until is None else datetime_to_ms(until)
    A = models.Alert
    query = select(A)
    if until_ms is not None:
        query = query.where(A.opened_ts <= until_ms)  # type: ignore[arg-type]
    if since_ms is not None:
        query = query.where(sa.or_(A.closed_ts.is_(None), A.closed_ts >= since_ms))  # type: ignore[union-attr, operator, arg-type]
    with store.session() as session:
        rows = []
        for a in session.exec(query.order_by(A.opened_ts.desc(), A.id.desc()).limit(limit)):  # type: ignore[attr-defined, union-attr]
            row = alert_row(a)
            if until_ms is not None and a.closed_ts is not None and a.closed_ts > until_ms:
                row = replace(row, status="open")  # it was still open then
            if until_ms is not None and row.ts > until_ms:
                row = as_of(session, row, until_ms)
            rows.append(row)
        return _with_notes(session, rows)


def problems_at(store: Store, at_ms: int) -> list[ValidationProblemRow]:
    """Validation problems seen by ``at_ms``: open then unless resolved by then."""
    rows = []
    for p in validation_problems(store, resolved_limit=200):
        if p.first_ts > at_ms:
            continue
        if p.resolved_ts is not None and p.resolved_ts > at_ms:
            p = replace(p, resolved_ts=None, last_ts=min(p.last_ts, at_ms))
        rows.append(p)
    return rows


def recent_reading_anomalies(
    store: Store, profile: str, threshold: float, since_ms: int, limit: int = MAX_TOP_ANOMALIES
) -> list[AnomalyRow]:
    """The highest stored scores above ``threshold`` newer than ``since_ms``: the top
    readings an attached console lists, as the engine lists those of its last tick.
    Their family is that of their top contributor."""
    D = models.Device.__table__  # type: ignore[attr-defined]
    S = models.Score.__table__  # type: ignore[attr-defined]
    stmt = (
        sa.select(S.c.device_id, S.c.ts, S.c.score, S.c.contributors)
        .where(S.c.profile == profile, S.c.device_id.in_(sa.select(D.c.id)), S.c.ts > since_ms, S.c.score > threshold)
        .order_by(S.c.score.desc())
        .limit(limit)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).fetchall()
    out = []
    for device, ts, score, contributors in rows:
        views = contributors_of(contributors)
        out.append(reading_anomaly(device, profile, ts, score, views[0].family if views else None, views))
    return out


def latest_scores(store: Store, profile: str) -> pd.DataFrame:
    """The newest score of each device of a profile (index device_id; columns ts, score)."""
    D = models.Device.__table__  # type: ignore[attr-defined]
    S = models.Score.__table__  # type: ignore[attr-defined]
    inner = S.alias("newest")
    newest = (
        sa.select(sa.func.max(inner.c.ts))
        .where(inner.c.profile == profile, inner.c.device_id == D.c.id)
        .correlate(D)
        .scalar_subquery()
    )
    stmt = (
        sa.select(D.c.id.label("device_id"), S.c.ts, S.c.score)
        .select_from(D)
        .join(S, sa.and_(S.c.profile == profile, S.c.device_id == D.c.id, S.c.ts == newest))
        .where(D.c.profile == profile)
    )
    with store.engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(stmt).fetchall(), columns=["device_id", "ts", "score"])
    return frame.set_index("device_id")


def command_view(command: models.FaultCommand) -> FaultCommandView:
    return FaultCommandView(
        id=int(command.id or 0),
        device_id=command.device_id,
        fault=command.fault,
        severity=float(command.severity),
        duration_s=float(command.duration_s),
        status=command.status,
        start_ts=command.start_ts,
        message=command.message or "",
    )


NOTE_LENGTH = 200
"""Characters of an incident note kept (a short note, not a log)."""


def set_note(store: Store, alert_id: int, text: str) -> None:
    """Set an incident's note; an empty text removes it."""
    with store.session() as session:
        if session.get(models.Alert, alert_id) is None:
            raise ItapError(f"alert {alert_id} does not exist")
        note = session.get(models.IncidentNote, alert_id)
        text = " ".join(text.split())[:NOTE_LENGTH]
        if not text:
            if note is not None:
                session.delete(note)
        elif note is None:
            session.add(models.IncidentNote(alert_id=alert_id, text=text))
        else:
            note.text, note.updated_at = text, models.utcnow()
            session.add(note)
        session.commit()


def _with_notes(session: Any, rows: list[AnomalyRow]) -> list[AnomalyRow]:
    ids = [r.alert_id for r in rows if r.alert_id is not None]
    if not ids:
        return rows
    N = models.IncidentNote
    notes = {n.alert_id: n.text for n in session.exec(select(N).where(N.alert_id.in_(ids)))}  # type: ignore[attr-defined]
    if not notes:
        return rows
    return [replace(r, note=notes[r.alert_id]) if r.alert_id in notes else r for r in rows]


def alert_row(alert: models.Alert) -> AnomalyRow:
    return AnomalyRow(
        device_id=alert.device_id,
        profile=alert.profile,
        ts=int(alert.last_ts),
        score=float(alert.peak_score),
        severity=alert.severity,
        family=alert.family,
        contributors=contributors_of(alert.contributors),
        alert_id=alert.id,
        status=alert.status,
        acknowledged=bool(alert.acknowledged),
        opened_ts=int(alert.opened_ts),
    )


DETAIL_ROWS = 20
"""Alerts, fault commands and quarantined rows listed in a device detail."""


class UnknownDevice(ItapError):
    exit_code = 2


def active_models(store: Store) -> dict[str, models.ModelVersion]:
    """profile -> its active model version (the newest active one)."""
    MV = models.ModelVersion
    with store.session() as session:
        rows = session.exec(select(MV).where(MV.active == True).order_by(MV.id))  # type: ignore[arg-type]  # noqa: E712
        return {row.profile: row for row in rows}


def _version_number(session: Any, profile: str, version_id: int | None) -> int:
    """Which of ``profile``'s versions ``version_id`` is (1, 2, ...): what the console
    shows, rather than the id the profiles share."""
    MV = models.ModelVersion
    return int(
        session.exec(
            select(sa.func.count()).select_from(MV).where(MV.profile == profile, MV.id <= version_id)  # type: ignore[arg-type, operator]
        ).one()
    )


def _version_numbers(session: Any, versions: list[models.ModelVersion]) -> dict[int | None, int]:
    """Version id -> its number among its profile's versions."""
    return {m.id: _version_number(session, m.profile, m.id) for m in versions}


def model_numbers(store: Store, version_ids: dict[str, int]) -> dict[str, int]:
    """profile -> which of that profile's versions ``version_ids[profile]`` is (1, 2, ...)."""
    with store.session() as session:
        return {profile: _version_number(session, profile, vid) for profile, vid in version_ids.items()}


def device_detail(store: Store, settings: Settings, device_id: str, window_s: float = 3600) -> DeviceDetail:
    """The drill-down of one device over the last ``window_s`` seconds of its readings.

    Raises:
        UnknownDevice: no such device in the database.
    """
    with store.session() as session:
        device = session.get(models.Device, device_id)
        if device is None:
            raise UnknownDevice(f"unknown device {device_id!r}")
        profile = device.profile
        A, FC, Q = models.Alert, models.FaultCommand, models.Quarantine
        alerts = _with_notes(
            session,
            [
                alert_row(a)
                for a in session.exec(
                    select(A).where(A.device_id == device_id).order_by(A.id.desc()).limit(DETAIL_ROWS)  # type: ignore[union-attr]
                )  # type: ignore[union-attr]
            ],
        )
        faults = tuple(
            command_view(c)
            for c in session.exec(select(FC).where(FC.device_id == device_id).order_by(FC.id.desc()).limit(DETAIL_ROWS))  # type: ignore[union-attr]
        )
        quarantined = tuple(
            QuarantineView(created_at=q.created_at, line=q.line, ts=q.ts, reason=q.reason, raw=q.raw)
            for q in session.exec(select(Q).where(Q.device_id == device_id).order_by(Q.id.desc()).limit(DETAIL_ROWS))  # type: ignore[union-attr]
        )
        end = device.last_ts
    spec = settings.profile(profile)
    if end is None:
        end = store.latest_ts(profile)
    signals = list(spec.signals)
    if end is None:
        readings = pd.DataFrame(columns=["device_id", "ts", "state", *signals, "fault"])
    else:
        since = end - int(window_s * 1000)
        readings = store.read_readings(profile, device_ids=[device_id], since_ms=since, until_ms=end)
    ts = readings["ts"].astype("int64").tolist() if len(readings) else []
    scores_by_ts: dict[int, float] = {}
    latest_contributors: tuple[ContributorView, ...] = ()
    if ts:
        S = models.Score.__table__  # type: ignore[attr-defined]
        stmt = (
            sa.select(S.c.ts, S.c.score, S.c.contributors)
            .where(S.c.profile == profile, S.c.device_id == device_id, S.c.ts >= ts[0], S.c.ts <= ts[-1])
            .order_by(S.c.ts)
        )
        with store.engine.connect() as conn:
            for row_ts, score, contributors in conn.execute(stmt):
                scores_by_ts[int(row_ts)] = float(score)
                if contributors:
                    latest_contributors = contributors_of(contributors) or latest_contributors
    series = {
        signal: tuple(None if pd.isna(v) else float(v) for v in readings[signal].tolist()) if signal in readings else ()
        for signal in signals
    }
    labels = (
        tuple(None if v is None or pd.isna(v) else str(v) for v in readings["fault"].tolist())
        if "fault" in readings
        else ()
    )
    current = next((a for a in alerts if a.status == "open"), alerts[0] if alerts else None)
    model = active_models(store).get(profile)
    known_good, source = known_good_window(model, device_id)
    return DeviceDetail(
        device_id=device_id,
        profile=profile,
        ts=tuple(ts),
        series=series,
        scores=tuple(scores_by_ts.get(t) for t in ts),
        threshold=device_threshold(model, device_id),
        fault_labels=labels,
        alerts=tuple(alerts),
        faults=faults,
        quarantined=quarantined,
        contributors=current.contributors if current is not None and current.contributors else latest_contributors,
        known_good=known_good,
        known_good_source=source,
    )


def device_threshold(model: models.ModelVersion | None, device_id: str) -> float | None:
    """A device's own calibrated threshold in a model version, else the version's."""
    if model is None:
        return None
    try:
        own = json.loads(model.metrics or "{}").get("device_thresholds", {}).get(device_id)
    except (ValueError, AttributeError):
        own = None
    return float(own) if own is not None else float(model.threshold)


def known_good_window(
    model: models.ModelVersion | None, device_id: str
) -> tuple[tuple[int | None, int | None] | None, str | None]:
    """The window a model version learned a device's normal from, and whose it is."""
    if model is None:
        return None, None
    try:
        windows = json.loads(model.metrics or "{}").get("device_windows", {})
    except ValueError:
        windows = {}
    own = windows.get(device_id)
    if own:
        return (own[0], own[1]), "device"
    return (model.train_start, model.train_end), "profile"


def request_retrain(store: Store, profile: str | None) -> None:
    """Ask the engine (in any process) to retrain, through the ``command.retrain`` watermark."""
    store.set_watermark(RETRAIN_REQUEST_KEY, f"{profile or '*'} {datetime.now(UTC).isoformat()}")


def fleet_devices(store: Store) -> dict[str, list[FleetDevice]]:
    """profile -> its registered devices, in registration order."""
    out: dict[str, list[FleetDevice]] = {}
    with store.session() as session:
        for device in session.exec(select(models.Device).order_by(models.Device.id)):
            out.setdefault(device.profile, []).append(FleetDevice(device.id, device.site, device.last_ts))
    return out


def open_alert_records(
    store: Store, *, limit: int | None = None, device: str | None = None, profile: str | None = None
) -> list[dict[str, Any]]:
    """Open alerts as plain records, the strongest (peak score / threshold) first."""
    alert_t = models.Alert.__table__  # type: ignore[attr-defined]
    stmt = sa.select(alert_t).where(alert_t.c.status == "open")
    if device:
        stmt = stmt.where(alert_t.c.device_id == device)
    if profile:
        stmt = stmt.where(alert_t.c.profile == profile)
    stmt = stmt.order_by((alert_t.c.peak_score / sa.func.nullif(alert_t.c.threshold, 0)).desc(), alert_t.c.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    with store.engine.connect() as conn:
        return [dict(row) for row in conn.execute(stmt).mappings()]


def top_score_records(
    store: Store, *, limit: int, device: str | None = None, profile: str | None = None, per_device: bool = True
) -> list[dict[str, Any]]:
    """The highest stored scores with their model's threshold (one per device unless
    ``per_device`` is False), highest first."""
    score_t, mv = models.Score.__table__, models.ModelVersion.__table__  # type: ignore[attr-defined]
    stmt = sa.select(score_t, mv.c.threshold).join(mv, mv.c.id == score_t.c.model_version_id)
    if device:
        stmt = stmt.where(score_t.c.device_id == device)
    if profile:
        stmt = stmt.where(score_t.c.profile == profile)
    if per_device:
        best = (
            sa.select(score_t.c.device_id, sa.func.max(score_t.c.score).label("best"))
            .group_by(score_t.c.device_id)
            .subquery()
        )
        stmt = stmt.join(best, (best.c.device_id == score_t.c.device_id) & (best.c.best == score_t.c.score))
    stmt = stmt.order_by(score_t.c.score.desc()).limit(limit)
    with store.engine.connect() as conn:
        return [dict(row) for row in conn.execute(stmt).mappings()]


def stored_profile(store: Store, device_id: str) -> str | None:
    """The profile a device is registered under, or None for an unknown device."""
    with store.session() as session:
        device = session.get(models.Device, device_id)
    return device.profile if device is not None else None


def device_ids(store: Store, limit: int | None = None) -> list[str]:
    """Registered device ids in order (the first ``limit``)."""
    D = models.Device.__table__  # type: ignore[attr-defined]
    stmt = sa.select(D.c.id).order_by(D.c.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    with store.engine.connect() as conn:
        return [row[0] for row in conn.execute(stmt)]
