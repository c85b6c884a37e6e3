"""``itap evaluate --simulate`` by device groups, for a cluster.

The scenario of :func:`~itap_engine.evaluation.labelled.evaluate_simulated` (history
to train on, then a labelled window to score, in a scratch SQLite database), with
each heavy step run by device groups on the executor: simulating both windows,
training's feature pass, and scoring the labelled window with its alerts. The driver
reads back labels, scores and alerts and computes the same metrics.
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from itap_engine.compute.cluster import Executor, TaskProgress
from itap_engine.compute.score import score_backlog
from itap_engine.compute.simulate import simulate_fleet
from itap_engine.compute.train import train_profile
from itap_engine.config import Settings
from itap_engine.store.sql import Store


def evaluate_simulated_partitioned(
    executor: Executor,
    settings: Settings,
    profile: str = "industrial",
    *,
    devices: int = 100,
    hours: float = 24.0,
    train_hours: float = 24.0,
    fault_rate: float | None = None,
    seed: int | None = None,
    workdir: str | Path | None = None,
    progress: TaskProgress | None = None,
) -> dict[str, Any]:
    """Metrics of a simulated scenario; the result of ``evaluate_simulated``, by device groups."""
    from itap_engine.detection.alerts import alerts_frame
    from itap_engine.evaluation.labelled import _report
    from itap_engine.ingest.simulator import device_ids_for
    from itap_engine.store.watermarks import scored_key

    steps = 4
    done = [0]

    def step(_done: int, _total: int) -> None:
        if progress is not None and _done == _total:
            done[0] += 1
            progress(done[0], steps)

    with tempfile.TemporaryDirectory(prefix="itap-eval-") as tmp:
        work = Path(workdir) if workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        local = settings.with_overrides(
            database={"url": f"sqlite:///{work / 'eval.db'}"}, paths={"artifacts_dir": str(work / "artifacts")}
        )
        store = Store(local)
        try:
            ids = device_ids_for("dev", devices)
            options = {"seed": seed, "fault_rate_per_device_day": fault_rate}
            start = pd.Timestamp(local.simulation.start).to_pydatetime().replace(tzinfo=None)
            split = start + timedelta(hours=train_hours)
            end = split + timedelta(hours=hours)
            simulate_fleet(executor, local, profile, ids, start, split, options=options, source="evaluate:history",
                           kind="evaluate", url=store.url, validate=False, progress=step)
            history_end = store.latest_ts(profile)
            model = train_profile(executor, store, local, profile, progress=step)
            store.set_watermark(scored_key(profile), str(history_end))  # score the labelled window only
            simulate_fleet(executor, local, profile, ids, split, end, options=options, source="evaluate:window",
                           kind="evaluate", url=store.url, validate=False, progress=step)
            score_backlog(executor, store, local, profile, progress=step)
            labels = store.read_readings(profile, since_ms=history_end, columns=["device_id", "ts", "fault"])
            scored = pd.read_sql(
                "select device_id, ts, score from score where profile = ? and ts > ? order by device_id, ts",
                store.engine, params=(profile, int(history_end or 0)),
            )
            alerts = alerts_frame(store, profile)
        finally:
            store.close()
    labels = labels.sort_values(["device_id", "ts"], kind="stable").reset_index(drop=True)
    scored = scored.sort_values(["device_id", "ts"], kind="stable").reset_index(drop=True)
    return _report(
        settings, profile, model, labels, scored, alerts,
        {"source": "simulated", "cluster": executor.name,
         "scenario": {"devices": devices, "hours": hours, "train_hours": train_hours,
                      "fault_rate_per_device_day": fault_rate if fault_rate is not None
                      else settings.simulation.fault_rate_per_device_day,
                      "seed": seed if seed is not None else settings.simulation.seed}},
    )
