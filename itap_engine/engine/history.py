"""The bootstrap history: normal operation simulated before the engine's first tick."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from itap_engine.config import Settings
from itap_engine.engine.results import naive
from itap_engine.snapshot import Progress
from itap_engine.store.sql import Store

__all__ = ["simulate_history"]


def simulate_history(
    store: Store,
    settings: Settings,
    devices: Mapping[str, Sequence[str]],
    report: Callable[[Progress], None],
    executor: Any = None,
) -> datetime:
    """Simulate ``detection.bootstrap_hours`` of normal operation (random faults off)
    from ``simulation.start`` for ``devices`` (profile -> device ids: the engine's
    own, a shard's only), by device groups (on the cluster, if one is set); returns
    the end of the history (the clock's start).

    Each group is simulated over the whole window in chunks and stored as one ingest
    run; progress counts finished groups over every profile.
    """
    from itap_engine.compute.cluster import LocalExecutor
    from itap_engine.compute.simulate import simulate_fleet

    start = naive(settings.simulation.start)
    end = start + timedelta(hours=settings.detection.bootstrap_hours)
    hours = settings.detection.bootstrap_hours
    report(Progress("history", 0.0, f"simulating {hours:g} h of normal operation"))
    groups = [(profile, list(ids)) for profile, ids in devices.items() if ids]
    weights = [len(ids) for _, ids in groups]
    total = max(1, sum(weights))
    for k, (profile, ids) in enumerate(groups):
        before = sum(weights[:k])

        def simulated(done: int, count: int, before: int = before, size: int = weights[k]) -> None:
            share = (before + size * done / max(1, count)) / total
            report(Progress("history", share, f"simulated {hours:g} h for {share:.0%} of the fleet"))

        simulate_fleet(
            executor or LocalExecutor(),
            settings,
            profile,
            ids,
            start,
            end,
            options={"fault_rate_per_device_day": 0.0},
            source=f"bootstrap:{profile}",
            kind="bootstrap",
            simulated_now=True,
            progress=simulated,
            url=store.url,
        )
        store.checkpoint()  # the engine's store does not checkpoint on its own
    report(Progress("history", 1.0, f"simulated {hours:g} h of normal operation"))
    return end
