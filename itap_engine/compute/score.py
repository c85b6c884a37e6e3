"""``itap score`` of a backlog by device groups.

The driver fixes the window once: readings newer than the profile's scored
watermark and not newer than the newest stored reading. Each task loads the model
version by id (its file's sha256 is checked on the worker) and runs
:func:`~itap_engine.detection.scoring.score_range` for its devices, the very function
``itap score`` runs for the whole fleet (an alert never spans devices). The driver
then moves the watermark to the newest reading scored.

With a shard (``itap score --shard i/N`` or ``[engine] shard``) only the devices that
shard owns are scored, against the shard's own scored watermark (the one its engine
keeps, ``scored:<profile>@shard:i/N``), so N runs split a backlog instead of each
repeating it. A shard that has no watermark yet starts from the unsharded one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from itap_engine.compute.cluster import Executor, TaskProgress, partitions, write_lock
from itap_engine.config import Settings
from itap_engine.store.sql import Store

if TYPE_CHECKING:
    from itap_engine.detection.scoring import RangeScore


class Shard(Protocol):
    """What a shard is to backlog scoring (:class:`itap_engine.engine.shards.Shard`,
    a layer above: the engine passes its own)."""

    @property
    def label(self) -> str: ...

    def owns(self, device_id: str) -> bool: ...


def score_partition(
    settings: Settings,
    profile: str,
    version_id: int,
    devices: Sequence[str],
    since: int | None,
    until: int,
    url: str | None = None,
    chunk_rows: int | None = None,
) -> RangeScore:
    """Score the readings of ``devices`` in ``(since, until]`` and store scores and alerts
    (:func:`~itap_engine.detection.scoring.score_range` on this worker's own store)."""
    from itap_engine.detection.scoring import load_model_version, score_range

    store = Store(settings, url=url)
    try:
        model = load_model_version(store, version_id)
        return score_range(
            store,
            settings,
            profile,
            model,
            since=since,
            until=until,
            device_ids=devices,
            chunk_rows=chunk_rows,
            write_guard=lambda: write_lock(store),
        )
    finally:
        store.close()


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
    shard: str | None = None


def score_backlog(
    executor: Executor,
    store: Store,
    settings: Settings,
    profile: str,
    *,
    progress: TaskProgress | None = None,
    shard: Shard | None = None,
) -> BacklogResult:
    """Score every reading of ``profile`` newer than its scored watermark, by device
    groups; with ``shard``, only that shard's devices, against its own watermark.

    Raises:
        NoModelError: no model was trained for the profile.
        ModelIntegrityError: the active model's file was altered or is missing.
    """
    from itap_engine.detection.scoring import model_and_watermark
    from itap_engine.store.watermarks import for_shard

    model, key, since = model_and_watermark(store, settings, profile)
    devices = profile_devices(store, profile)
    label = shard.label if shard is not None else None
    if shard is not None:
        devices = [d for d in devices if shard.owns(d)]
        key = for_shard(key, shard.label)
        mark = store.get_watermark(key)
        since = int(mark) if mark else since
        until = store.latest_device_ts(devices)
    else:
        until = store.latest_ts(profile)
    if until is None or (since is not None and until <= since):
        return BacklogResult(profile, 0, 0, model.version_id, watermark=since, shard=label)
    parts = partitions(devices, settings.compute.partition_devices)
    url = store.url
    tasks = [(settings, profile, model.version_id, part.devices, since, until, url) for part in parts]
    results: list[RangeScore] = executor.map(score_partition, tasks, progress)
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
        shard=label,
    )


def profile_devices(store: Store, profile: str) -> list[str]:
    """Ids of the devices of ``profile`` (every device with readings has a device row)."""
    import sqlalchemy as sa

    from itap_engine.store import schema as models

    device = models.Device.__table__  # type: ignore[attr-defined]
    with store.engine.connect() as conn:
        return sorted(str(d) for d in conn.execute(sa.select(device.c.id).where(device.c.profile == profile)).scalars())
