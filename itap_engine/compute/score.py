"""``itap score`` of a backlog by device groups.

The driver fixes the window once: readings newer than the profile's scored
watermark and not newer than the newest stored reading. Each task loads the model
version by id (its file's sha256 is checked on the worker), reads its devices'
readings of the window plus the warm-up history before it, scores them with the
:class:`~itap_engine.detection.scoring.StreamingScorer`, stores the scores and runs
the alert rules for its devices (an alert never spans devices). The driver then
moves the watermark to the newest reading scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from itap_engine.compute.cluster import Executor, TaskProgress, partitions, write_lock
from itap_engine.config import Settings
from itap_engine.store.sql import Store

SCORE_CHUNK_ROWS = 250_000
"""New readings a task scores at a time (time slices of its devices), to bound memory."""


@dataclass(frozen=True)
class PartitionScore:
    rows: int
    anomalous: int
    alerts_opened: int
    alerts_closed: int
    last_ts: int | None


def score_partition(
    settings: Settings,
    profile: str,
    version_id: int,
    devices: Sequence[str],
    since: int | None,
    until: int,
    url: str | None = None,
    chunk_rows: int | None = None,
) -> PartitionScore:
    """Score the readings of ``devices`` in ``(since, until]`` and store scores and alerts."""
    from itap_engine.detection.scoring import (
        AlertTracker,
        StreamingScorer,
        insert_scores,
        load_model_version,
        warm_up_span_ms,
    )

    store = Store(settings, url=url)
    try:
        model = load_model_version(store, version_id)
        scorer = StreamingScorer(settings, profile, model)
        columns = scorer.columns
        devices = list(devices)
        if since is not None:
            assert model.features is not None
            span = warm_up_span_ms(model.features)
            history = store.read_readings(
                profile, device_ids=devices, since_ms=since - span, until_ms=since, columns=columns
            )
            scorer.warm_up(history)
            del history
        tracker = AlertTracker(store, settings)
        rows = anomalous = opened = closed = 0
        last: int | None = None
        for lo, hi in _time_slices(store, profile, devices, since, until, chunk_rows or SCORE_CHUNK_ROWS):
            new = store.read_readings(profile, device_ids=devices, since_ms=lo, until_ms=hi, columns=columns)
            if new.empty:
                continue
            scored = scorer.score(new)
            with write_lock(store):
                insert_scores(store, profile, scored)
                changes = tracker.update(profile, scored)
            rows += len(scored)
            anomalous += int(scored["is_anomalous"].sum())
            opened += len(changes.opened)
            closed += len(changes.closed)
            top = int(new["ts"].max())
            last = top if last is None else max(last, top)
            del new, scored
        return PartitionScore(rows, anomalous, opened, closed, last)
    finally:
        store.close()


def _time_slices(
    store: Store, profile: str, devices: list[str], since: int | None, until: int, chunk_rows: int
) -> list[tuple[int | None, int]]:
    """``(lo, hi]`` windows of about ``chunk_rows`` readings of ``devices``.

    Scoring slice after slice with one :class:`StreamingScorer` gives the numbers of
    one pass (its buffer carries each device's window over), and the alert tracker
    carries its state over too.
    """
    import sqlalchemy as sa

    table = store.readings_table(profile)
    stmt = sa.select(sa.func.min(table.c.ts), sa.func.count()).where(
        table.c.device_id.in_(devices), table.c.ts <= until
    )
    if since is not None:
        stmt = stmt.where(table.c.ts > since)
    with store.engine.connect() as conn:
        first, count = conn.execute(stmt).one()
    if not count:
        return []
    slices = max(1, -(-int(count) // chunk_rows))
    if slices == 1:
        return [(since, until)]
    lo = int(first) - 1
    edges = np.linspace(lo, until, slices + 1).astype(np.int64)
    windows: list[tuple[int | None, int]] = [(int(edges[i]), int(edges[i + 1])) for i in range(slices)]
    windows[0] = (since if since is not None else lo, windows[0][1])
    windows[-1] = (windows[-1][0], until)
    return windows


@dataclass(frozen=True)
class BacklogResult:
    profile: str
    rows: int
    anomalous: int
    model_version_id: int | None
    alerts_opened: int = 0
    alerts_closed: int = 0
    watermark: int | None = None
    partitions: int = 0


def score_backlog(
    executor: Executor,
    store: Store,
    settings: Settings,
    profile: str,
    *,
    progress: TaskProgress | None = None,
) -> BacklogResult:
    """Score every reading of ``profile`` newer than its scored watermark, by device groups.

    Raises:
        NoModelError: no model was trained for the profile.
        ModelIntegrityError: the active model's file was altered or is missing.
    """
    from itap_engine.detection.scoring import model_and_watermark

    model, key, since = model_and_watermark(store, settings, profile)
    until = store.latest_ts(profile)
    if until is None or (since is not None and until <= since):
        return BacklogResult(profile, 0, 0, model.version_id, watermark=since)
    devices = profile_devices(store, profile)
    parts = partitions(devices, settings.compute.partition_devices)
    url = store.url
    tasks = [(settings, profile, model.version_id, part.devices, since, until, url) for part in parts]
    results: list[PartitionScore] = executor.map(score_partition, tasks, progress)
    lasts = [r.last_ts for r in results if r.last_ts is not None]
    last = max(lasts) if lasts else since
    if last is not None:
        store.set_watermark(key, str(last))
    return BacklogResult(
        profile=profile,
        rows=sum(r.rows for r in results),
        anomalous=sum(r.anomalous for r in results),
        model_version_id=model.version_id,
        alerts_opened=sum(r.alerts_opened for r in results),
        alerts_closed=sum(r.alerts_closed for r in results),
        watermark=last,
        partitions=len(parts),
    )


def profile_devices(store: Store, profile: str) -> list[str]:
    """Ids of the devices of ``profile`` (every device with readings has a device row)."""
    import sqlalchemy as sa

    from itap_engine.store import schema as models

    device = models.Device.__table__  # type: ignore[attr-defined]
    with store.engine.connect() as conn:
        return sorted(str(d) for d in conn.execute(sa.select(device.c.id).where(device.c.profile == profile)).scalars())
