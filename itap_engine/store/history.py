"""Read models for the HTML report: score histories and recently closed incidents.

Both are small by construction: a history is cut to at most ``points`` values per
device (the highest score of each time bucket, so a spike is never averaged away),
and closed incidents are limited to the newest few.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from itap_engine.snapshot.dto import ContributorView, contributors_of
from itap_engine.store import schema as models
from itap_engine.store.sql import Store

__all__ = ["ClosedIncident", "ScoreHistory", "recently_closed", "score_histories"]


@dataclass(frozen=True)
class ScoreHistory:
    """One device's anomaly score over time (epoch ms), bucketed."""

    device_id: str
    ts: tuple[int, ...]
    scores: tuple[float, ...]


@dataclass(frozen=True)
class ClosedIncident:
    id: int
    device_id: str
    profile: str
    family: str
    severity: str
    opened_ts: int
    closed_ts: int
    peak_score: float
    threshold: float
    contributors: tuple[ContributorView, ...]


def score_histories(
    store: Store, devices: Sequence[tuple[str, str]], since_ms: int, until_ms: int, points: int = 96
) -> dict[str, ScoreHistory]:
    """Each (profile, device)'s scores in ``[since_ms, until_ms]``, at most ``points``
    per device (the maximum of each equal time bucket)."""
    out: dict[str, ScoreHistory] = {}
    if not devices or until_ms <= since_ms:
        return out
    S = models.Score.__table__  # type: ignore[attr-defined]
    by_profile: dict[str, list[str]] = {}
    for profile, device in devices:
        by_profile.setdefault(profile, []).append(device)
    rows: list[Any] = []
    with store.engine.connect() as conn:
        for profile, ids in by_profile.items():  # the key (profile, device_id, ts) serves these reads
            stmt = (
                sa.select(S.c.device_id, S.c.ts, S.c.score)
                .where(S.c.profile == profile, S.c.device_id.in_(ids), S.c.ts >= since_ms, S.c.ts <= until_ms)
                .order_by(S.c.device_id, S.c.ts)
            )
            rows += conn.execute(stmt).fetchall()
    if not rows:
        return out
    ids_of = np.array([r[0] for r in rows], dtype=object)
    ts = np.array([int(r[1]) for r in rows], dtype=np.int64)
    scores = np.array([float(r[2]) for r in rows], dtype=float)
    width = max(1, (until_ms - since_ms) // points + 1)
    for device in dict.fromkeys(ids_of.tolist()):
        mask = ids_of == device
        t, s = ts[mask], scores[mask]
        buckets = (t - since_ms) // width
        starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
        peaks = np.maximum.reduceat(np.nan_to_num(s, nan=-np.inf), starts)
        keep = np.isfinite(peaks)
        out[str(device)] = ScoreHistory(
            str(device), tuple(int(x) for x in t[starts][keep]), tuple(float(x) for x in peaks[keep])
        )
    return out


def recently_closed(store: Store, since_ms: int | None = None, limit: int = 20) -> list[ClosedIncident]:
    """The newest closed incidents (closed at or after ``since_ms`` if given), newest first."""
    A = models.Alert.__table__  # type: ignore[attr-defined]
    stmt = sa.select(A).where(A.c.status == "closed", A.c.closed_ts.is_not(None))
    if since_ms is not None:
        stmt = stmt.where(A.c.closed_ts >= since_ms)
    stmt = stmt.order_by(A.c.closed_ts.desc(), A.c.id.desc()).limit(limit)
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).mappings().fetchall()
    return [
        ClosedIncident(
            id=int(r["id"]),
            device_id=str(r["device_id"]),
            profile=str(r["profile"]),
            family=str(r["family"]),
            severity=str(r["severity"]),
            opened_ts=int(r["opened_ts"]),
            closed_ts=int(r["closed_ts"]),
            peak_score=float(r["peak_score"]),
            threshold=float(r["threshold"]),
            contributors=contributors_of(r["contributors"]),
        )
        for r in rows
    ]
