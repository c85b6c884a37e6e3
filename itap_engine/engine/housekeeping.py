"""Retention: old readings and scores go, per source and per device; real data is never
deleted by the simulated clock."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import select

from itap_engine.config import Settings
from itap_engine.engine.results import naive, to_ms, utcnow
from itap_engine.engine.shards import Shard
from itap_engine.store import schema as models
from itap_engine.store.sql import Store
from itap_engine.store.watermarks import SIM_CLOCK_KEY

__all__ = ["TICK_RUN_KIND", "expire"]

log = logging.getLogger("itap_engine.engine.core")

TICK_RUN_KIND = "tick"


def expire(
    store: Store, settings: Settings, clock: datetime, device_profile: Mapping[str, str], shard: Shard | None
) -> dict[str, int]:
    """Delete old readings and scores; returns rows deleted per table.

    The devices this engine simulates (``device_profile``; a shard's own) keep
    ``engine.retention_hours`` of simulated time behind the clock (with shards, the
    clock furthest behind: partitions hold every shard's rows). Every other device
    (imported data) keeps ``engine.retention_hours_imported`` behind its own newest
    reading; 0, the default, keeps it forever. The store decides how
    (:meth:`Store.expire_before`): whole time partitions on PostgreSQL where a
    partition holds only expiring devices, device by device along the primary key
    otherwise. Tick runs older than the retention (wall time) go too.
    """
    rules = settings.engine
    if shard is not None:
        clocks = store.watermarks_like(SIM_CLOCK_KEY).values()
        clock = min([clock, *(naive(datetime.fromisoformat(v)) for v in clocks)])
    cutoff = to_ms(clock) - int(rules.retention_hours * 3600 * 1000)
    with store.session() as session:
        devices = [(d.id, d.profile, d.last_ts) for d in session.exec(select(models.Device))]
    simulated = {
        profile: [d for d, p, _ in devices if p == profile and d in device_profile and (shard is None or shard.owns(d))]
        for profile in settings.profiles
    }
    deleted = store.expire_before(cutoff, simulated)
    if rules.retention_hours_imported > 0 and shard is None:
        keep_ms = int(rules.retention_hours_imported * 3600 * 1000)
        for device, profile, last in devices:
            if device in device_profile or last is None:
                continue
            for key, count in store.expire_before(int(last) - keep_ms, {profile: [device]}).items():
                deleted[key] = deleted.get(key, 0) + count
    wall_cutoff = utcnow() - timedelta(hours=rules.retention_hours)
    with store.engine.begin() as conn:
        run = models.Run.__table__  # type: ignore[attr-defined]
        conn.execute(sa.delete(run).where(run.c.kind == TICK_RUN_KIND, run.c.started_at < wall_cutoff))
    log.info("housekeeping: %s", deleted)
    return deleted
