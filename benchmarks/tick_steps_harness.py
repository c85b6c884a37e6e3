"""The engine tick by step, against another tree on the same data (issue 13).

    E13_TREE=. .venv/bin/python benchmarks/tick_steps_harness.py DEVICES TICKS [PROFILE.prof]

Run from a tree's folder with that tree's venv. The first run bootstraps DEVICES
industrial devices exactly as ``itap bench --workloads E1000/E10k`` configures them
(:func:`itap_bench.engine.derived_config`: faults 1/device/day, 1 h of history, 0.5 h
at 10k, ticks of 10 simulated seconds) into /tmp/e13/cache/eDEVICES and keeps it;
every run (of any tree) ticks a copy of that database: ``EngineCore.resume()``, one
warm tick, then TICKS ticks, each followed by the snapshot the engine publishes.
Prints one JSON line: medians of the tick, of each step of ``TickResult.timings``, of
the tick's process and thread CPU time, of the snapshot, and the load average; with
PROFILE, a cProfile of the measured ticks and snapshots too. Interleave two trees
(each with its own venv) to compare them.

``E13_CACHE`` moves the cache folder (default /tmp/e13/cache). ``E13_DUMP=FILE``
writes what the ticks left, to compare two trees' results (not their speed): every
snapshot after a tick (without its wall-clock times), and the alert, score, device,
run, watermark and validation tables (without wall-clock columns), plus a sha256 of
the readings table; ``diff`` two such files. A tree's venv can run another tree's
copy of this file (the imports come from the venv).
"""

from __future__ import annotations

import asyncio
import cProfile
import dataclasses
import hashlib
import json
import os
import pstats
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from itap_bench.engine import derived_config
from itap_engine.config import load_settings
from itap_engine.engine.results import TICK_STEPS


def _bootstrap(devices: int, cache: Path) -> None:
    base = load_settings(Path(os.environ.get("E13_TREE", ".")) / "config.toml")
    industrial = next(g for g in base.simulation.fleet if g.profile == "industrial")
    config = derived_config(
        base,
        cache,
        fleet=[{"profile": "industrial", "devices": devices, "prefix": industrial.prefix, "sites": ["a", "b"]}],
        simulation={"fault_rate_per_device_day": 1.0},
        detection={"bootstrap_hours": 1.0 if devices <= 1000 else 0.5},
        engine={"tick_seconds": 1.0, "sim_speed": float(base.simulation.freq_s)},
    )
    from itap_engine.engine.service import Engine

    os.chdir(cache)

    async def boot() -> None:
        engine = Engine(load_settings(config), lock=False, schedule=False)
        await engine.start()
        await engine.stop()

    began = time.perf_counter()
    asyncio.run(boot())
    print("bootstrap", round(time.perf_counter() - began, 1), "s", file=sys.stderr)
    (cache / "done").write_text("x")


_WALL_CLOCK = {"created_at", "started_at", "finished_at", "updated_at", "acknowledged_at", "requested_at"}


def _plain(value: Any) -> Any:
    """A snapshot (or part) as plain values, without wall-clock times."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in _WALL_CLOCK and f.name != "stats"
        }
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (frozenset, set)):
        return sorted(str(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return value if isinstance(value, (str, int, bool, type(None))) else repr(value)


def _dump_tables(core: Any, out: Any) -> None:
    import sqlalchemy as sa

    tables = ["alert", "score", "device", "run", "watermark", "validation_event", "validation_problem"]
    with core.store.engine.connect() as conn:
        for name in tables:
            table = core.store.metadata.tables[name]
            cols = [c for c in table.columns if c.name not in _WALL_CLOCK]
            keep = [c.name for c in cols]
            rows = conn.execute(sa.select(*cols).order_by(*table.primary_key.columns)).all()
            for row in rows:
                values = dict(zip(keep, row, strict=True))
                if name == "run" and str(values.get("message", "")).startswith("pid "):
                    values["message"] = "pid"
                if name == "watermark" and values["key"].startswith("engine.status"):
                    continue
                out.write(f"{name} {json.dumps(_plain(values), sort_keys=True)}\n")
        for profile in core.store._readings:
            table = core.store.readings_table(profile)
            digest = hashlib.sha256()
            count = 0
            for row in conn.execute(sa.select(table).order_by(table.c.device_id, table.c.ts)):
                digest.update(repr(tuple(row)).encode())
                count += 1
            out.write(f"readings_{profile} {count} {digest.hexdigest()}\n")


def main() -> None:
    devices, ticks = int(sys.argv[1]), int(sys.argv[2])
    profile_to = sys.argv[3] if len(sys.argv) > 3 else None
    cache = Path(os.environ.get("E13_CACHE", "/tmp/e13/cache")) / f"e{devices}"
    dump_to = os.environ.get("E13_DUMP")
    dump = open(dump_to, "w") if dump_to else None  # noqa: SIM115
    if not (cache / "done").exists():
        shutil.rmtree(cache, ignore_errors=True)
        _bootstrap(devices, cache)
    run = cache.parent / f"run-{os.getpid()}"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(cache, run)
    os.chdir(run)
    from itap_engine.engine.core import EngineCore
    from itap_engine.snapshot import EngineStats

    core = EngineCore(load_settings(run / "config.toml"))
    core.resume()

    def stats() -> EngineStats:
        return EngineStats(
            sim_time=core.sim_time,
            tick_ms=1.0,
            rows_per_s=1.0,
            ticks=core.ticks,
            model_versions=core.model_versions(),
            paused=False,
            mode="live",
            last_error=None,
            phase="running",
        )

    core.tick()
    first = core.snapshot(1, stats())
    if dump:
        dump.write(f"snapshot {json.dumps(_plain(first), sort_keys=True)}\n")
    work: list[float] = []
    snap: list[float] = []
    cpu: list[float] = []
    cpu_snap: list[float] = []
    thread: list[float] = []
    steps: dict[str, list[float]] = {}
    profiler = cProfile.Profile() if profile_to else None
    for i in range(ticks):
        if profiler:
            profiler.enable()
        c0, h0 = time.process_time(), time.thread_time()
        result = core.tick()
        c1 = time.process_time()
        thread.append((time.thread_time() - h0) * 1000)
        began = time.perf_counter()
        snapshot = core.snapshot(i + 2, stats())
        snap.append((time.perf_counter() - began) * 1000)
        cpu.append((c1 - c0) * 1000)
        cpu_snap.append((time.process_time() - c1) * 1000)
        if profiler:
            profiler.disable()
        if dump:
            dump.write(f"snapshot {json.dumps(_plain(snapshot), sort_keys=True)}\n")
        work.append(result.timings["total"] * 1000)
        for step in TICK_STEPS:
            steps.setdefault(step, []).append(result.timings.get(step, 0.0) * 1000)
    if dump:
        _dump_tables(core, dump)
        dump.close()
    core.close()
    shutil.rmtree(run, ignore_errors=True)

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 1)

    print(
        json.dumps(
            {
                "n": devices,
                "tick_median": median(work),
                "snapshot_median": median(snap),
                "tick_cpu_median": median(cpu),
                "tick_thread_cpu_median": median(thread),
                "snapshot_cpu_median": median(cpu_snap),
                "nonscore_median": median([w - s for w, s in zip(work, steps["score"], strict=True)]),
                "steps": {k: median(v) for k, v in steps.items()},
                "load": os.getloadavg()[0],
            }
        )
    )
    if profiler and profile_to:
        profiler.dump_stats(profile_to)
        pstats.Stats(profile_to).sort_stats("cumulative").print_stats(60)


if __name__ == "__main__":
    main()
