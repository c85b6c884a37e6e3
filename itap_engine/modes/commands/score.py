"""``itap score``: score readings newer than each profile's scored watermark and update alerts."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING

from itap_engine.modes.commands.options import add_cluster_argument

if TYPE_CHECKING:
    from itap_engine.config import Settings

HELP = "score new readings with the active model, store scores and update alerts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", help="only this profile (default: every profile with a model and data)")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    parser.add_argument(
        "--shard",
        metavar="I/N",
        help="score only shard I of N of the fleet (devices by crc32 of their id), against that shard's "
        "watermark, under its database lock (PostgreSQL); default: [engine] shard, or every device",
    )
    add_cluster_argument(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from itap_engine.compute.cluster import open_executor
    from itap_engine.compute.score import score_backlog
    from itap_engine.detection.scoring import load_active_model
    from itap_engine.engine.shards import Shard, ShardLock
    from itap_engine.modes.render.output import console, print_json
    from itap_engine.modes.render.progress import task_progress
    from itap_engine.store.sql import Store

    label = args.shard or settings.engine.shard
    shard = Shard.parse(label) if label else None  # a bad value: one line, before anything runs
    lock = ShardLock(settings, shard).acquire() if shard is not None else None  # exit 3 while it is held
    store = Store(settings)
    results = []
    try:
        if args.profile:
            settings.profile(args.profile)
            profiles = [args.profile]
        else:
            profiles = [p for p in store.profiles_with_data() if load_active_model(store, settings, p) is not None]
        if profiles:
            with open_executor(settings, args.cluster) as executor:
                for profile in profiles:
                    with task_progress(f"score {profile}") as progress:
                        results.append(
                            score_backlog(executor, store, settings, profile, progress=progress, shard=shard)
                        )
    finally:
        store.close()
        if lock is not None:
            lock.release()
    if args.json:
        print_json([dataclasses.asdict(r) for r in results])
        return 0
    out = console()
    if not results:
        out.print("nothing to score: no profile has both readings and a trained model (run `itap train`)")
    for r in results:
        out.print(
            f"{r.profile}{f' (shard {shard.label})' if shard else ''}: scored {r.rows:,} readings with model version {r.model_version_id}; "
            f"{r.anomalous:,} over threshold; alerts opened {r.alerts_opened}, closed {r.alerts_closed}"
        )
    return 0
