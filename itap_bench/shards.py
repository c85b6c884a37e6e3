"""E10k: the engine tick with 10,000 devices on PostgreSQL, one engine and two shards.

``python -m itap_bench.shards --pg URL [--devices 10000] [--ticks 15]``

1. A fresh schema ``itap_bench_e10k`` in the database at URL (the database's other
   schemas are not touched) and a config with ``--devices`` industrial devices, one
   reading per device per tick, ``--bootstrap-hours`` of history.
2. **One engine**: bootstrap (history for the whole fleet by COPY, a model), then
   ``--ticks`` ticks in this process; the median and p95 of the tick's work.
3. **Two shards**: ``--shard 0/2`` and ``--shard 1/2`` as two processes on the same
   database (history and model found there), each ticking ``--ticks`` times at the
   same time as the other; each one's median, and the wall time of the two together.

Each engine also reports the median CPU time its process used per tick
(``cpu_median_ms``; the rest of the tick is PostgreSQL's work and waiting for a core)
and the load average before and after its ticks.

The results are printed as JSON (and written to ``--out``). Benchmarks, not tests: no
figure is asserted anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

SCHEMA = "itap_bench_e10k"


def _url(url: str) -> str:
    parsed = sa.engine.make_url(url)
    return parsed.update_query_dict({"options": f"-csearch_path={SCHEMA}"}).render_as_string(hide_password=False)


def _config(folder: Path, url: str, devices: int, bootstrap_hours: float) -> Path:
    from itap_bench.engine import derived_config
    from itap_engine.config import load_settings

    settings = load_settings()
    path = derived_config(
        settings,
        folder,
        fleet=[{"profile": "industrial", "devices": devices, "prefix": "m", "sites": ["a", "b"]}],
        simulation={"fault_rate_per_device_day": 1.0},
        detection={"bootstrap_hours": bootstrap_hours},
        engine={"tick_seconds": 1.0, "sim_speed": float(settings.simulation.freq_s)},
    )
    text = path.read_text().replace('url = "sqlite:///itap.db"', f"url = {json.dumps(_url(url))}")
    path.write_text(text)
    return path


async def _ticks(config: Path, ticks: int, shard: str | None) -> dict[str, Any]:
    """Start an engine (bootstrapping if needed) and tick it ``ticks`` times."""
    from itap_engine.config import load_settings
    from itap_engine.engine.service import Engine

    settings = load_settings(config)
    if shard:
        settings = settings.with_overrides(engine={"shard": shard})
    engine = Engine(settings, lock=bool(shard), schedule=False)
    started = time.perf_counter()
    await engine.start()
    startup = time.perf_counter() - started
    assert engine.core is not None
    devices = sum(len(s.device_ids) for s in engine.core.simulators.values())
    work: list[float] = []
    cpu: list[float] = []
    rows = 0
    loads = [os.getloadavg()[0]]
    try:
        await engine.tick_now()  # warm
        began = time.perf_counter()
        for _ in range(ticks):
            used = time.process_time()
            result = await engine.tick_now()
            cpu.append((time.process_time() - used) * 1000)
            if result is None:
                raise RuntimeError(engine.last_error or "tick failed")
            work.append(result.seconds * 1000)
            rows += result.inserted
        wall = time.perf_counter() - began
        timings = result.timings  # the last tick's split
    finally:
        await engine.stop()
    return {
        "shard": shard,
        "devices": devices,
        "startup_s": round(startup, 2),
        "ticks": len(work),
        "rows": rows,
        "median_ms": round(statistics.median(work), 1),
        "p95_ms": round(float(np.percentile(work, 95)), 1),
        "wall_s": round(wall, 2),
        # the engine process's own CPU per tick (all its threads): the rest of a tick's
        # wall time is PostgreSQL's work and waiting for a core
        "cpu_median_ms": round(statistics.median(cpu), 1),
        "load": [round(v, 1) for v in (*loads, os.getloadavg()[0])],
        "last_tick_ms": {k: round(v * 1000, 1) for k, v in timings.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m itap_bench.shards", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pg", required=True, metavar="URL", help="PostgreSQL database (schema itap_bench_e10k is remade)"
    )
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--ticks", type=int, default=15)
    parser.add_argument("--bootstrap-hours", type=float, default=0.5)
    parser.add_argument("--out", metavar="FILE.json")
    parser.add_argument("--worker", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--shard", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(asyncio.run(_ticks(Path(args.worker), args.ticks, args.shard))))
        return 0

    engine = sa.create_engine(args.pg)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
    engine.dispose()
    out: dict[str, Any] = {"devices": args.devices, "ticks": args.ticks, "bootstrap_hours": args.bootstrap_hours}
    with tempfile.TemporaryDirectory(prefix="itap-bench-e10k-") as tmp:
        config = _config(Path(tmp) / "site", args.pg, args.devices, args.bootstrap_hours)
        began = time.perf_counter()
        out["one_engine"] = asyncio.run(_ticks(config, args.ticks, None))
        out["one_engine"]["with_bootstrap_s"] = round(time.perf_counter() - began, 1)
        print(json.dumps(out["one_engine"]), file=sys.stderr, flush=True)
        began = time.perf_counter()
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "itap_bench.shards",
                    "--pg",
                    args.pg,
                    "--worker",
                    str(config),
                    "--shard",
                    shard,
                    "--ticks",
                    str(args.ticks),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for shard in ("0/2", "1/2")
        ]
        shards = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        out["two_shards"] = {"wall_s": round(time.perf_counter() - began, 1), "shards": shards}
        out["two_shards"]["median_ms_max"] = max(s["median_ms"] for s in shards)
        out["speedup_median"] = round(out["one_engine"]["median_ms"] / out["two_shards"]["median_ms_max"], 2)
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    engine = sa.create_engine(args.pg)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
