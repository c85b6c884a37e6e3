"""``itap bench``: fixed workloads, measured stage by stage, with references.

Speed is a feature, so it is measured here and never asserted in tests. Each stage
records wall seconds, rows per second and the process's peak resident memory while it
ran. Ingestion is compared against a reference measured in the same run: plain
``sqlite3`` ``executemany`` of the same rows into the same schema, so the ratio says
what our layers cost whatever the machine's speed.

Workloads:

* W1: 25 industrial devices x 6 h at 10 s (54,000 rows)
* W2: 100 industrial devices x 24 h at 10 s (864,000 rows)
* W3 (opt-in, ``--workloads W3``): 1,000 devices x 24 h (8.64 M rows), run as the
  commands themselves under each ``--clusters`` setting (:mod:`itap_bench.scale`)

Other parts of the product add stages through provider functions
(``itap_bench.detection``, ``itap_bench.engine`` and, when the console
is installed, ``itap_bench.console``).
"""

from __future__ import annotations

import gc
import os
import platform
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import psutil

from itap_bench.rss import PeakRss
from itap_bench.workloads import Workload
from itap_engine.config import Settings
from itap_engine.ingest.simulator import Simulator, device_ids_for
from itap_engine.store.sql import Store

WORKLOADS = {
    "W1": Workload("W1", devices=25, hours=6),
    "W2": Workload("W2", devices=100, hours=24),
}


def stage_result(
    stage: str, workload: str, seconds: float, rows: int, peak_mb: float | None, **extra: Any
) -> dict[str, Any]:
    return {
        "stage": stage,
        "workload": workload,
        "seconds": round(seconds, 4),
        "rows": rows,
        "rows_per_s": round(rows / seconds) if seconds > 0 and rows else None,
        "peak_rss_mb": None if peak_mb is None else round(peak_mb, 1),
        **extra,
    }


@contextmanager
def measured(
    results: list[dict[str, Any]], stage: str, workload: str, rows: int, **extra: Any
) -> Iterator[dict[str, Any]]:
    """Time a block and append its stage result; the block may add extras to the yielded dict."""
    gc.collect()
    more: dict[str, Any] = dict(extra)
    with PeakRss() as rss:
        started = time.perf_counter()
        yield more
        seconds = time.perf_counter() - started
    results.append(stage_result(stage, workload, seconds, more.pop("rows", rows), rss.peak_mb, **more))


def sqlite_reference(store: Store, profile: str, frame: pd.DataFrame, path: Path) -> float:
    """Seconds for plain sqlite3 executemany of ``frame`` into a copy of the readings schema."""
    table = store.readings_table(profile)
    ddl = str(__import__("sqlalchemy").schema.CreateTable(table).compile(store.engine))
    columns = [c.name for c in table.columns]
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(ddl)
    started = time.perf_counter()
    values = []
    for name in columns:
        if name == "ts":
            values.append((frame["ts"].astype("datetime64[ms]").astype("int64")).tolist())
        elif name in frame.columns:
            series = frame[name]
            values.append(series.astype(object).where(series.notna(), None).tolist())
        else:
            values.append([None] * len(frame))
    rows = list(zip(*values))
    sql = f"INSERT INTO {table.name} VALUES ({', '.join('?' * len(columns))}) ON CONFLICT DO NOTHING"
    batch = store.settings.database.batch_rows
    for start in range(0, len(rows), batch):
        with conn:
            conn.executemany(sql, rows[start : start + batch])
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def data_path_stages(
    settings: Settings, workload: Workload, workdir: Path
) -> tuple[list[dict[str, Any]], Store, pd.DataFrame]:
    """generate, validate, ingest, re-ingest and the sqlite3 reference for one workload."""
    from itap_engine.ingest.pipeline import ingest_frame
    from itap_engine.ingest.validate import validate_frame

    results: list[dict[str, Any]] = []
    sim = Simulator(settings, "industrial", device_ids_for("pump", workload.devices), freq_s=workload.freq_s)
    t0 = sim.start
    with measured(results, "generate", workload.name, workload.rows):
        frame = sim.generate(t0, t0 + timedelta(hours=workload.hours))
    profile = settings.profile("industrial")
    now = frame["ts"].max().to_pydatetime()
    with measured(results, "validate", workload.name, len(frame)):
        accepted = validate_frame(frame, profile, settings.validation, now=now).accepted
    store = Store(settings, url=f"sqlite:///{workdir / f'{workload.name}-insert.db'}")
    with measured(results, "ingest", workload.name, len(accepted)) as extra:
        extra["inserted"] = store.insert_readings("industrial", accepted).inserted
    ingest_seconds = results[-1]["seconds"]
    store.close()
    with measured(results, "ingest (sqlite3 reference)", workload.name, len(accepted)):
        reference = sqlite_reference(store, "industrial", accepted, workdir / f"{workload.name}-ref.db")
    results[-1]["seconds"] = round(reference, 4)
    results[-1]["rows_per_s"] = round(len(accepted) / reference)
    results[-2]["ratio_vs_sqlite3"] = round(reference / ingest_seconds, 2)
    store = Store(settings, url=f"sqlite:///{workdir / f'{workload.name}.db'}")
    with measured(results, "pipeline (validate+ingest+runs)", workload.name, len(frame)) as extra:
        report = ingest_frame(store, settings, "industrial", frame, source=f"bench:{workload.name}", now=now)
        extra["inserted"] = report.inserted
    with measured(results, "re-ingest", workload.name, len(frame)) as extra:
        again = ingest_frame(store, settings, "industrial", frame, source=f"bench:{workload.name}", now=now)
        extra["inserted"] = again.inserted
    total = sum(r["seconds"] for r in results if r["stage"] in ("generate", "validate", "ingest"))
    results.append(stage_result("generate+validate+ingest", workload.name, total, len(frame), None))
    return results, store, frame


def machine_facts() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "processor": platform.processor() or platform.machine(),
    }


StageProvider = Callable[[Settings], list[dict[str, Any]]]


def run_bench(
    settings: Settings,
    workloads: list[str],
    *,
    detection: bool = True,
    engine: bool = True,
    extra: list[StageProvider] = (),  # type: ignore[assignment]
    progress: Callable[[str], None] = lambda _msg: None,
    engine_sizes: tuple[str, ...] = ("E100", "E1000"),
) -> dict[str, Any]:
    """Run every stage on the named workloads; returns the JSON-ready results."""
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="itap-bench-") as tmp:
        for name in workloads:
            workload = WORKLOADS[name]
            progress(f"{name}: data path ({workload.rows:,} rows)")
            stages, store, frame = data_path_stages(settings, workload, Path(tmp))
            results.extend(stages)
            if detection:
                from itap_bench.detection import stages as detection_stages

                progress(f"{name}: features, train, score")
                results.extend(detection_stages(store, settings, name, frame))
            store.close()
            del frame
        if engine:
            from itap_bench.engine import stages as engine_stages

            progress(f"engine: ticks ({', '.join(engine_sizes)}), loop lag, --once")
            results.extend(engine_stages(settings, engine_sizes))
        for provider in extra:
            results.extend(provider(settings))
    return {"machine": machine_facts(), "results": results}
