"""Simulated history into the database by device groups: ``itap generate`` and the bootstrap.

Each task simulates one group of devices over the whole time range, in time chunks
of about ``chunk_rows`` readings, validates each chunk and stores it as one ingest
run per task. The simulator draws every random number from ``(seed, device,
segment)``, so a group's rows are those the whole fleet would give.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from itap_engine.compute.cluster import Executor, TaskProgress, partitions, write_lock
from itap_engine.config import Settings
from itap_engine.ingest.pipeline import IngestRun
from itap_engine.store.sql import Store

CHUNK_ROWS = 200_000
"""Readings a task simulates and stores at a time (bounds a worker's memory)."""


@dataclass(frozen=True)
class SimulateResult:
    """Counts of one partition, or of all of them added up (``runs`` > 1)."""

    profile: str
    source: str
    rows_in: int
    inserted: int
    duplicates: int
    quarantined: int
    status: str
    seconds: float
    run_ids: tuple[int, ...] = ()
    conflicts: int = 0
    """The ingest runs (one per partition), in partition order."""

    @property
    def runs(self) -> int:
        return len(self.run_ids)

    @property
    def run_id(self) -> str:
        """The runs as text: ``12``, or ``12..31`` for several."""
        ids = self.run_ids
        return "-" if not ids else str(ids[0]) if len(ids) == 1 else f"{min(ids)}..{max(ids)}"

    def to_dict(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"run_id": self.run_ids[0] if self.run_ids else None, "run_ids": list(self.run_ids)}
        for name in (
            "profile",
            "source",
            "rows_in",
            "inserted",
            "duplicates",
            "conflicts",
            "quarantined",
            "status",
            "seconds",
        ):
            payload[name] = getattr(self, name)
        return payload


class _SerialisedRun(IngestRun):
    """An ingest run whose writes (not its validation) hold the cluster's write lock."""

    def __enter__(self) -> _SerialisedRun:
        with write_lock(self.store):
            super().__enter__()
        return self

    def add(self, frame: pd.DataFrame) -> None:
        assert self.validator is not None
        result = self.validator.validate(frame)
        with write_lock(self.store):
            self.store_validated(frame, result)

    def __exit__(self, *exc: Any) -> None:
        with write_lock(self.store):
            super().__exit__(*exc)


def simulate_partition(
    settings: Settings,
    profile: str,
    devices: Sequence[str],
    start: datetime,
    end: datetime,
    options: dict[str, Any],
    source: str,
    kind: str,
    simulated_now: bool,
    chunk_rows: int = CHUNK_ROWS,
    url: str | None = None,
    validate: bool = True,
) -> SimulateResult:
    """Simulate ``devices`` over ``[start, end)`` and store them (runs on a worker).

    ``options`` go to :class:`~itap_engine.ingest.simulator.Simulator` (seed, freq_s,
    fault_rate_per_device_day). ``simulated_now`` validates each chunk against the
    simulated clock (the bootstrap) instead of the wall clock. ``validate=False``
    stores the rows as simulated, with no run (the scratch database of an evaluation).
    """
    from itap_engine.ingest.simulator import Simulator
    from itap_engine.store.sql import to_epoch_ms

    sim = Simulator(settings, profile, list(devices), **options)
    chunk_s = max(sim.freq_s, chunk_rows // max(1, len(devices)) * sim.freq_s)
    started = time.perf_counter()
    store = Store(settings, url=url)
    if not validate:
        try:
            rows = inserted = 0
            t0 = start
            while t0 < end:
                t1 = min(end, t0 + timedelta(seconds=chunk_s))
                frame = sim.generate(t0, t1)
                frame["ts"] = to_epoch_ms(frame["ts"])
                with write_lock(store):
                    result = store.insert_readings(profile, frame)
                rows, inserted, t0 = rows + result.rows, inserted + result.inserted, t1
        finally:
            store.close()
        return SimulateResult(profile, source, rows, inserted, rows - inserted, 0, "ok", time.perf_counter() - started)
    try:
        with _SerialisedRun(
            store, settings, profile, kind=kind, source=source, now=end if simulated_now else None
        ) as run:
            t0 = start
            while t0 < end:
                t1 = min(end, t0 + timedelta(seconds=chunk_s))
                if simulated_now:
                    run.validator.now = t1  # type: ignore[union-attr]
                frame = sim.generate(t0, t1)
                if len(frame):
                    run.add(frame)
                del frame
                t0 = t1
        report = run.report
    finally:
        store.close()
    return SimulateResult(
        profile,
        source,
        report.rows_in,
        report.inserted,
        report.duplicates,
        report.quarantined,
        report.status,
        time.perf_counter() - started,
        (int(report.run_id),),
        report.conflicts,
    )


def simulate_fleet(
    executor: Executor,
    settings: Settings,
    profile: str,
    device_ids: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    options: dict[str, Any] | None = None,
    source: str,
    kind: str = "generate",
    simulated_now: bool = False,
    progress: TaskProgress | None = None,
    url: str | None = None,
    validate: bool = True,
) -> SimulateResult:
    """Simulate and store ``device_ids`` over ``[start, end)``, one task per device group."""
    started = time.perf_counter()
    parts = partitions(device_ids, settings.compute.partition_devices)
    tasks = [
        (
            settings,
            profile,
            part.devices,
            start,
            end,
            options or {},
            source,
            kind,
            simulated_now,
            CHUNK_ROWS,
            url,
            validate,
        )
        for part in parts
    ]
    results: list[SimulateResult] = executor.map(simulate_partition, tasks, progress)
    return combine(results, profile, source, time.perf_counter() - started)


def combine(results: Sequence[SimulateResult], profile: str, source: str, seconds: float) -> SimulateResult:
    statuses = {r.status for r in results}
    status = "error" if "error" in statuses else "warning" if "warning" in statuses else "ok"
    return SimulateResult(
        profile,
        source,
        rows_in=sum(r.rows_in for r in results),
        inserted=sum(r.inserted for r in results),
        duplicates=sum(r.duplicates for r in results),
        quarantined=sum(r.quarantined for r in results),
        status=status,
        seconds=seconds,
        run_ids=tuple(i for r in results for i in r.run_ids),
        conflicts=sum(r.conflicts for r in results),
    )


def write_csv(
    sim_factory: Callable[[Sequence[str]], Any],
    device_ids: Sequence[str],
    start: datetime,
    end: datetime,
    path: str,
    group: int,
) -> int:
    """Simulate into a CSV file one device group at a time (rows ordered by device, then time)."""
    rows = 0
    for i, part in enumerate(partitions(device_ids, group)):
        frame = sim_factory(part.devices).generate(start, end)
        frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S", mode="w" if i == 0 else "a", header=i == 0)
        rows += len(frame)
    return rows
