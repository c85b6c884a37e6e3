"""Every watermark key, once. A watermark is a small named value in the database.

``sim.clock``
    ISO time of the simulated clock.
``scored:<profile>``
    Epoch ms of the last scored reading of a profile (the engine and ``itap score``).
``engine.status``
    JSON: the engine's stats, written each tick for attached consoles.
``command.retrain`` / ``command.retrain.done``
    A retrain request (``<profile or *> <ISO time>``) and the last one served.
``once.last_wall``
    Wall time of the last ``--once`` run.

A sharded engine (``itap engine --shard i/N``) keeps its own ``sim.clock``,
``scored:<profile>``, ``engine.status`` and ``command.retrain.done``, with the key
suffixed ``@shard:i/N`` (:func:`for_shard`), so engines never move each other's
clock. ``command.retrain`` stays one key: each shard serves it once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

SIM_CLOCK_KEY = "sim.clock"
SCORED_KEY = "scored:{profile}"
ENGINE_STATUS_KEY = "engine.status"
RETRAIN_REQUEST_KEY = "command.retrain"
RETRAIN_DONE_KEY = "command.retrain.done"
ONCE_WALL_KEY = "once.last_wall"


def scored_key(profile: str) -> str:
    """The key of a profile's scored watermark."""
    return SCORED_KEY.format(profile=profile)


SHARD_SUFFIX = "@shard:"


def for_shard(key: str, shard: str | None) -> str:
    """``key`` as shard ``shard`` (``"i/N"``) keeps it; ``key`` itself without a shard."""
    return f"{key}{SHARD_SUFFIX}{shard}" if shard else key


def fleet_clock(clocks: Mapping[str, str], live: Iterable[str] | None = None) -> str | None:
    """The fleet's simulated time: that of the engine, or with shards (keys
    ``sim.clock@shard:i/N``) the one furthest behind among the shards still running
    (``live``, labels ``i/N``; all of them when none runs): up to it the running part
    of the fleet is in. A dead shard's clock would hold the whole fleet back and hide
    that its devices went stale."""
    sharded = {k.partition(SHARD_SUFFIX)[2]: v for k, v in clocks.items() if SHARD_SUFFIX in k}
    running = set(live or ())
    if running & set(sharded):
        sharded = {label: v for label, v in sharded.items() if label in running}
    values = list(sharded.values()) if sharded else [v for k, v in clocks.items() if k == SIM_CLOCK_KEY]
    return min(values, key=datetime.fromisoformat) if values else None
