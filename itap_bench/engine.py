"""Engine benchmark stages for ``itap bench``: tick time, event-loop lag, ``--once``.

Stages (each a dict like :func:`itap_bench.runner.stage_result`):

* ``engine_tick`` for 100 and 1000 devices (workloads ``E100``, ``E1000``; ``E10k``,
  10,000 devices, when ``--workloads`` names it): the work of one tick (commands,
  simulate one interval, validate + ingest, streaming features + scores, alerts),
  median and p95 over warm ticks; the snapshot built after each tick is measured
  apart (``snapshot_median_ms``), and so is the SQLite checkpoint the engine runs
  after every tenth tick (``checkpoint_ms_per_tick``, amortised). Target: a
  1000-device tick under 100 ms (issue 13), a 10,000-device one under 1 s.

  The split: ``steps_ms``, the median of each step of ``TickResult.timings``
  (:data:`itap_engine.engine.results.TICK_STEPS`), and ``sampled``, each step's share
  of the tick's wall time from a stack sampler (:mod:`itap_bench.sampler`) that sees
  inside the steps (features against detector, the incident tracker's mutes, the
  conflict check). :func:`render_steps` prints both.
* ``engine_loop_lag`` (``E1000``): how late the event loop wakes a 10 ms sleeper
  while the engine ticks (the stall a console on the same loop would feel), p95 and
  max. Target: p95 under 50 ms.
* ``once_W2``: ``itap --once --json`` in a subprocess, end to end, on W2 (100
  industrial devices, 24 h at 10 s): the first run on an empty database bootstraps
  the 24 h history and a model, then runs its cycle; ``once_W2_incremental`` is the
  next run (one interval). Target: under 15 s.

Configs for the workloads are derived from the caller's settings and written as TOML
(:func:`derived_config`), the same way the tests build their small configs.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from itap_engine.config import Settings, load_settings
from itap_engine.engine.results import TICK_STEPS

__all__ = ["ENGINE_SIZES", "derived_config", "dump_toml", "render_steps", "stages"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


# ---------------------------------------------------------------------- configs
def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dump_toml(data: dict[str, Any]) -> str:
    """A small TOML writer for settings dumps: one ``[section]`` per top-level table,
    everything below it as (inline) values, which TOML allows at any depth."""
    scalars = [f"{_key(k)} = {_value(v)}" for k, v in data.items() if not isinstance(v, dict) and v is not None]
    out = list(scalars)
    for key, value in data.items():
        if isinstance(value, dict):
            out.append(f"\n[{_key(key)}]")
            out.extend(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None)
    return "\n".join(out) + "\n"


def derived_config(
    base: Settings,
    folder: Path,
    *,
    fleet: list[dict[str, Any]] | None = None,
    **sections: dict[str, Any],
) -> Path:
    """Write ``folder/config.toml``: ``base`` with its data in ``folder`` and sections changed.

    ``fleet`` replaces ``[[simulation.fleet]]``; every other keyword updates the
    fields of one section (``engine={"sim_speed": 60}``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    data = base.model_dump(by_alias=True, mode="json", exclude_none=True)
    data.pop("source", None)
    data["database"]["url"] = "sqlite:///itap.db"
    data["paths"] = {"data_dir": "data", "artifacts_dir": "artifacts", "inbox_dir": "inbox", "log_file": "itap.log"}
    if fleet is not None:
        data["simulation"]["fleet"] = fleet
    for section, values in sections.items():
        key = "import" if section == "import_" else section
        data[key] = {**data.get(key, {}), **values}
    path = folder / "config.toml"
    path.write_text(dump_toml(data), encoding="utf-8")
    load_settings(path)  # fail here, not in a subprocess, if the dump is wrong
    return path


# ---------------------------------------------------------------------- stages
def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


@dataclass
class TickFigures:
    """What :func:`_tick_stage` measured."""

    work_ms: list[float] = field(default_factory=list)
    snapshot_ms: list[float] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)
    rows: int = 0
    checkpoint_ms: float = 0.0
    steps_ms: dict[str, list[float]] = field(default_factory=dict)
    sampled: dict[str, float] = field(default_factory=dict)
    startup_s: float = 0.0

    def step_medians(self) -> dict[str, float]:
        return {k: round(statistics.median(v), 2) for k, v in self.steps_ms.items() if k not in ("total", "checkpoint")}


async def _tick_stage(config: Path, devices: int, ticks: int) -> TickFigures:
    """Start an engine on ``config`` (bootstrapping it), tick ``ticks`` times under a
    lag monitor and the step sampler."""
    from itap_bench.loop_lag import LoopLagMonitor
    from itap_bench.sampler import StepSampler
    from itap_engine.engine.service import Engine

    settings = load_settings(config)
    engine = Engine(settings, lock=False, schedule=False)
    began = time.perf_counter()
    await engine.start()
    figures = TickFigures(startup_s=time.perf_counter() - began)
    work_ms, snapshot_ms = figures.work_ms, figures.snapshot_ms
    rows = 0
    checkpoint_ms = 0.0
    core = engine.core
    assert core is not None
    sampler = StepSampler()
    tick = core.tick

    def sampled_tick(*args: Any, **kwargs: Any) -> Any:
        sampler.watch()  # in the worker thread that runs the tick
        try:
            return tick(*args, **kwargs)
        finally:
            sampler.unwatch()

    try:
        await engine.tick_now()  # warm: first scores, caches
        core.tick = sampled_tick  # type: ignore[method-assign]
        with sampler:
            async with LoopLagMonitor(0.01) as lag:
                for _ in range(ticks):
                    started = time.perf_counter()
                    result = await engine.tick_now()
                    total = (time.perf_counter() - started) * 1000
                    if result is None:
                        raise RuntimeError(engine.last_error or "tick failed")
                    work_ms.append(result.seconds * 1000)
                    checkpoint = result.timings.get("checkpoint", 0.0) * 1000
                    checkpoint_ms += checkpoint
                    snapshot_ms.append(max(0.0, total - result.seconds * 1000 - checkpoint))
                    for step in TICK_STEPS:
                        figures.steps_ms.setdefault(step, []).append(result.timings.get(step, 0.0) * 1000)
                    rows += result.inserted
                    await asyncio.sleep(0.02)
    finally:
        await engine.stop()
    figures.lag_ms, figures.rows, figures.checkpoint_ms = lag.samples_ms, rows, checkpoint_ms
    figures.sampled = sampler.shares()
    return figures


ENGINE_SIZES = {"E100": (100, 30), "E1000": (1000, 20), "E10k": (10_000, 10)}
"""Engine workloads: devices and warm ticks measured."""


def stages(
    settings: Settings, sizes: tuple[str, ...] = ("E100", "E1000"), *, once: bool = True
) -> list[dict[str, Any]]:
    """Engine stages for ``itap bench`` (see the module docstring): the ticks of
    ``sizes`` and, with ``once``, the ``--once`` stages."""
    from itap_bench.runner import PeakRss, stage_result

    results: list[dict[str, Any]] = []
    industrial = next((g for g in settings.simulation.fleet if g.profile == "industrial"), None)
    profile = industrial.profile if industrial else next(iter(settings.profiles))
    prefix = industrial.prefix if industrial else profile
    freq = settings.simulation.freq_s
    with tempfile.TemporaryDirectory(prefix="itap-bench-engine-") as tmp:
        for size in sizes:
            devices, ticks = ENGINE_SIZES[size]
            config = derived_config(
                settings,
                Path(tmp) / f"e{devices}",
                fleet=[{"profile": profile, "devices": devices, "prefix": prefix, "sites": ["a", "b"]}],
                simulation={"fault_rate_per_device_day": 1.0},
                # 10,000 devices: half an hour of history (1.8 M readings) is enough to train on
                detection={"bootstrap_hours": 1.0 if devices <= 1000 else 0.5},
                engine={"tick_seconds": 1.0, "sim_speed": float(freq)},
            )
            with PeakRss() as rss:
                figures = asyncio.run(_tick_stage(config, devices, ticks))
            work, lag, rows = figures.work_ms, figures.lag_ms, figures.rows
            results.append(
                stage_result(
                    "engine_tick",
                    size,
                    sum(work) / 1000,
                    rows,
                    rss.peak_mb,
                    devices=devices,
                    ticks=len(work),
                    median_ms=round(statistics.median(work), 2),
                    p95_ms=round(_percentile(work, 95), 2),
                    max_ms=round(max(work), 2),
                    ms_per_device=round(statistics.median(work) / devices, 4),
                    snapshot_median_ms=round(statistics.median(figures.snapshot_ms), 2),
                    checkpoint_ms_per_tick=round(figures.checkpoint_ms / max(1, len(work)), 2),
                    startup_s=round(figures.startup_s, 1),
                    steps_ms=figures.step_medians(),
                    sampled=figures.sampled,
                )
            )
            if devices == 1000:
                results.append(
                    stage_result(
                        "engine_loop_lag",
                        size,
                        sum(work) / 1000,
                        rows,
                        rss.peak_mb,
                        samples=len(lag),
                        p50_ms=round(_percentile(lag, 50), 2),
                        p95_ms=round(_percentile(lag, 95), 2),
                        max_ms=round(max(lag, default=0.0), 2),
                    )
                )
        if not once:
            return results
        config = derived_config(
            settings,
            Path(tmp) / "w2",
            fleet=[{"profile": profile, "devices": 100, "prefix": prefix, "sites": ["a", "b"]}],
            simulation={"freq_s": 10},
            detection={"bootstrap_hours": 24.0},
        )
        env = {**os.environ, "ITAP_CONFIG": str(config)}
        env.pop("ITAP_DB_URL", None)
        for stage in ("once_W2", "once_W2_incremental"):
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "itap_tui.cli", "--once", "--json"],
                env=env,
                capture_output=True,
                text=True,
                cwd=tmp,
                check=False,
            )
            seconds = time.perf_counter() - started
            try:
                summary = json.loads(proc.stdout)
            except ValueError:
                summary = {"status": "UNKNOWN", "error": (proc.stderr or proc.stdout).strip()[-300:]}
            rows = 100 * 24 * 360 if stage == "once_W2" else summary.get("rows", {}).get("in", 0)
            results.append(
                stage_result(
                    stage,
                    "W2",
                    seconds,
                    rows,
                    None,
                    exit_code=proc.returncode,
                    status=summary.get("status"),
                    cycle_s=summary.get("timings_s", {}).get("total"),
                    bootstrap_s=summary.get("timings_s", {}).get("bootstrap"),
                    error=summary.get("error"),
                )
            )
    return results


def render_steps(payload: dict[str, Any]) -> Any:
    """The engine ticks' split as a table: each step's median (ms) per workload, and
    the sampled share of the tick's wall time by step; None without tick stages."""
    from rich.table import Table

    ticks = [r for r in payload.get("results", []) if r.get("stage") == "engine_tick" and r.get("steps_ms")]
    if not ticks:
        return None
    table = Table("tick step", *(f"{r['workload']} ms" for r in ticks), title="engine tick by step (median)")
    for step in TICK_STEPS:
        table.add_row(step, *(f"{r['steps_ms'].get(step, 0.0):.1f}" for r in ticks))
    table.add_row("total (median tick)", *(f"{r['median_ms']:.1f}" for r in ticks))
    names = sorted({name for r in ticks for name in r.get("sampled", {})})
    sampled = Table("sampled step", *(f"{r['workload']} %" for r in ticks), title="tick wall time by sampled step")
    for name in sorted(names, key=lambda n: -max(r.get("sampled", {}).get(n, 0.0) for r in ticks)):
        sampled.add_row(name, *(f"{100 * r.get('sampled', {}).get(name, 0.0):.1f}" for r in ticks))
    from rich.console import Group

    return Group(table, sampled)
