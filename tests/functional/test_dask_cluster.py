"""The batch work on a real Dask LocalCluster (2 worker processes x 1 thread) over a
file-backed SQLite database: the same readings, model, scores and alerts as in one
process, progress from the cluster, and errors that come back as in one process.

Tolerance: a LocalCluster runs the very same device groups as ``cluster = "none"``,
so readings, thresholds, scores and alerts are compared for exact equality.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

from itap_engine.compute.cluster import DaskExecutor, LocalExecutor, open_executor  # noqa: E402
from itap_engine.compute.score import score_backlog  # noqa: E402
from itap_engine.compute.simulate import simulate_fleet  # noqa: E402
from itap_engine.compute.train import train_profile  # noqa: E402
from itap_engine.config import Settings, load_settings  # noqa: E402
from itap_engine.detection.alerts import alerts_frame  # noqa: E402
from itap_engine.errors import ItapError  # noqa: E402
from itap_engine.ingest.simulator import device_ids_for  # noqa: E402
from itap_engine.store.sql import Store, to_epoch_ms  # noqa: E402

CONFIG = Path(__file__).resolve().parents[2] / "config.toml"
MALLOC_PRESET = os.environ.get("MALLOC_TRIM_THRESHOLD_")
"""Before any cluster: a nanny copies its worker environment into this process's."""
DEVICES = device_ids_for("pump", 8)
HOURS = 6


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskExecutor]:
    """One LocalCluster for the module: 2 processes, 1 thread each."""
    settings = load_settings(CONFIG)
    with open_executor(settings, "local:2") as executor:
        assert isinstance(executor, DaskExecutor) and executor.workers == 2
        yield executor


def _settings(folder: Path, **sections: dict) -> Settings:
    folder.mkdir(parents=True, exist_ok=True)
    defaults: dict[str, dict] = {
        "database": {"url": f"sqlite:///{folder / 'itap.db'}"},
        "paths": {"artifacts_dir": str(folder / "artifacts")},
        "compute": {"partition_devices": 3},
        "simulation": {"fault_rate_per_device_day": 6.0},
        "detection": {"detector": "robust_z"},
    }
    for name, values in sections.items():
        defaults[name] = {**defaults.get(name, {}), **values}
    return load_settings(CONFIG).with_overrides(**defaults)


def _generate(executor, settings: Settings, store: Store, progress=None) -> tuple:
    """The fleet's HOURS of readings, by device groups; ``(result, end of training window)``."""
    start = settings.simulation.start
    generated = simulate_fleet(
        executor,
        settings,
        "industrial",
        DEVICES,
        start,
        start + timedelta(hours=HOURS),
        source="test",
        progress=progress,
        url=store.url,
    )
    return generated, int(to_epoch_ms([start + timedelta(hours=4)])[0])


def _pipeline(executor, folder: Path, detector: str = "robust_z") -> dict:
    """generate -> train -> score backlog, as the commands run them."""
    settings = _settings(folder, detection={"detector": detector, "n_estimators": 20})
    store = Store(settings)
    try:
        seen: list[tuple[int, int]] = []
        generated, until = _generate(executor, settings, store, lambda d, t: seen.append((d, t)))
        model = train_profile(executor, store, settings, "industrial", train_until_ms=until)
        scored = score_backlog(executor, store, settings, "industrial")
        X = np.random.default_rng(5).normal(size=(100, len(model.feature_names)))
        return {
            "generated": generated,
            "progress": seen,
            "readings": store.read_readings("industrial"),
            "threshold": model.threshold,
            "device_thresholds": model.device_thresholds,
            "probe": model.detector.score_samples(X),
            "scored": scored,
            "scores": pd.read_sql(
                "select device_id, ts, score, contributors from score order by device_id, ts", store.engine
            ),
            "alerts": alerts_frame(store, "industrial")[
                ["device_id", "family", "opened_ts", "closed_ts", "last_ts", "status", "severity", "peak_score"]
            ]
            .sort_values(["device_id", "opened_ts", "family"])
            .reset_index(drop=True),
        }
    finally:
        store.close()


@pytest.mark.parametrize("detector", ["robust_z", "iforest"])
def test_local_cluster_gives_the_results_of_one_process(cluster: DaskExecutor, tmp_path: Path, detector: str) -> None:
    here = _pipeline(LocalExecutor(), tmp_path / "none", detector)
    there = _pipeline(cluster, tmp_path / "local2", detector)
    assert there["generated"].rows_in == here["generated"].rows_in == len(DEVICES) * HOURS * 360
    assert there["generated"].runs == here["generated"].runs == 3
    pd.testing.assert_frame_equal(there["readings"], here["readings"])
    assert there["threshold"] == here["threshold"]
    assert there["device_thresholds"] == here["device_thresholds"] and here["device_thresholds"]
    np.testing.assert_array_equal(there["probe"], here["probe"])
    assert there["scored"] == here["scored"]
    assert len(there["scores"]) == len(DEVICES) * HOURS * 360
    pd.testing.assert_frame_equal(there["scores"], here["scores"])
    pd.testing.assert_frame_equal(there["alerts"], here["alerts"])
    assert len(here["alerts"]) > 0
    assert there["progress"] == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize(
    ("detector", "subset"), [("shift", False), ("iforest", False), ("shift", True)], ids=["shift", "iforest", "subset"]
)
def test_training_on_a_local_cluster_is_train_model(
    cluster: DaskExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, detector: str, subset: bool
) -> None:
    """The per-device half of training (each device's own sampling step and daily
    profile, features of the validation window, detector scores, each device's own POT
    threshold) runs on the workers by device groups, each reading its devices from the
    database; the model is the one ``train_model`` fits in one process, threshold for
    threshold, and its model file holds the same arrays. With ``subset`` the window is
    over MAX_TRAIN_READINGS: the driver fits the fleet-wide statistics on 3 of the 8
    devices, and the other 5 still get their own profile, step and threshold."""
    from distributed import get_task_stream

    import itap_engine.detection.scoring as scoring
    from itap_engine.detection.model_files import read_model_file
    from itap_engine.detection.scoring import load_model_version, train_model

    if subset:  # the driver's choice; the workers never look at it
        monkeypatch.setattr(scoring, "MAX_TRAIN_READINGS", 3 * 4 * 360)
    settings = _settings(tmp_path, detection={"detector": detector, "n_estimators": 20})
    store = Store(settings)
    try:
        _, until = _generate(LocalExecutor(), settings, store)
        alone = train_model(store, settings, "industrial", train_until_ms=until)
        groups: list[tuple[int, int]] = []
        with get_task_stream(cluster.client) as stream:
            spread = train_profile(
                cluster,
                store,
                settings,
                "industrial",
                train_until_ms=until,
                progress=lambda d, t: groups.append((d, t)),
            )
        tasks = [str(t["key"]) for t in stream.data]
        assert sum("validate_group" in k for k in tasks) == 3  # 8 devices in groups of 3
        if detector == "iforest":  # the forest's trees went through joblib's Dask backend
            assert any("validate_group" not in k for k in tasks)
        # one count over the three passes (3 groups each), reaching its total once
        assert [d for d, _ in groups] == list(range(1, 10)) and {t for _, t in groups} == {9}
        assert spread.version_id != alone.version_id
        assert spread.threshold == alone.threshold
        assert spread.device_thresholds == alone.device_thresholds
        assert len(spread.device_thresholds) >= len(DEVICES) // 2  # devices with enough known-good scores
        assert spread.features is not None and alone.features is not None
        assert sorted(spread.features.device_profiles_) == sorted(alone.features.device_profiles_) == DEVICES
        assert spread.features.device_steps_ == alone.features.device_steps_
        for device in DEVICES:
            np.testing.assert_array_equal(
                spread.features.device_profiles_[device], alone.features.device_profiles_[device]
            )
        X = np.random.default_rng(7).normal(size=(200, len(alone.feature_names)))
        np.testing.assert_array_equal(spread.detector.score_samples(X), alone.detector.score_samples(X))
        files = [load_model_version(store, m.version_id) for m in (alone, spread)]
        assert files[0].device_thresholds == files[1].device_thresholds
        with store.session() as session:
            from itap_engine.store.schema import ModelVersion

            paths = [session.get(ModelVersion, m.version_id).path for m in (alone, spread)]  # type: ignore[union-attr]
        a, b = (np.load(io.BytesIO(read_model_file(Path(p))[1]), allow_pickle=False) for p in paths)
        assert a.files == b.files
        differ = [k for k in a.files if not np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f")]
        # only a skops blob (IsolationForest's trees: a zip with its own write times)
        # may differ in bytes; the probe above compares what the trees score
        assert all(a[k].dtype == np.uint8 for k in differ), differ
        assert detector == "iforest" or not differ
    finally:
        store.close()


def _worker_settings() -> tuple:
    import dask

    return (
        dask.config.get("distributed.worker.profile.enabled"),
        dask.config.get("distributed.admin.system-monitor.interval"),
        dask.config.get("distributed.worker.memory.monitor-interval"),
    )


def test_the_local_cluster_runs_without_the_profiler(cluster: DaskExecutor) -> None:
    """Its workers do not sample every task's stack and the system monitor runs every
    5 s: background CPU nobody reads here."""
    seen = cluster.client.run(_worker_settings)
    assert len(seen) == 2 and set(seen.values()) == {(False, "5s", "1s")}


def _worker_process() -> dict:
    import os
    import sys

    import psutil

    return {
        "malloc_trim": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "parent": " ".join(psutil.Process(os.getppid()).cmdline()),
        "sklearn": "sklearn" in sys.modules,
    }


def test_the_workers_fork_from_a_preloaded_server_with_glibcs_malloc(cluster: DaskExecutor) -> None:
    """The workers are forks of a forkserver that imported the engine and scikit-learn
    once, not fresh interpreters that each import them (2.5-3 CPU s per worker per
    command), and run with glibc's own malloc tuning: Dask's MALLOC_TRIM_THRESHOLD_
    made every large numpy temporary a fresh mmap (~1.35x a task's CPU seconds)."""
    seen = list(cluster.client.run(_worker_process).values())
    assert len(seen) == 2
    for worker in seen:
        assert "forkserver" in worker["parent"], worker
        assert worker["sklearn"] and worker["blas_threads"] == "1"
        assert worker["malloc_trim"] in (None, MALLOC_PRESET), worker


BURN = """
import json, resource, sys, time

import psutil

from itap_engine.compute.cluster import open_executor
from itap_engine.config import load_settings


def burn(seconds):
    started = time.thread_time()
    while time.thread_time() - started < seconds:
        pass
    return seconds


if __name__ == "__main__":
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open_executor(load_settings(sys.argv[1]), "local:2") as executor:
        assert executor.map(burn, [(1.0,), (1.0,)]) == [1.0, 1.0]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    left = [" ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)]
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    print(json.dumps({"children_cpu": cpu, "left": left}))
"""


def test_the_workers_cpu_counts_in_the_command_and_nothing_is_left_running(tmp_path: Path) -> None:
    """Once a command's executor closes, the forkserver is stopped and waited for: its
    workers' CPU counts in the command's children (``/usr/bin/time``, the bench), and
    no server is left holding its preloaded modules. Left to multiprocessing, it
    outlived the command unwaited, and ``/usr/bin/time`` reported 1.7 CPU s for 6 s of
    tasks. In a fresh interpreter: this module's own cluster holds the server."""
    import json
    import subprocess
    import sys

    script = tmp_path / "burn.py"
    script.write_text(BURN)
    run = subprocess.run(
        [sys.executable, str(script), str(CONFIG)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["children_cpu"] >= 2.0, result
    assert not [c for c in result["left"] if "forkserver" in c], result


def _fails(device: str) -> None:
    raise ItapError(f"device {device}: cannot be processed")


def test_a_failing_task_raises_its_error_on_the_driver(cluster: DaskExecutor) -> None:
    with pytest.raises(ItapError, match="device pump-002: cannot be processed"):
        cluster.map(_fails, [("pump-002",)])


def test_an_unreachable_scheduler_is_one_line(tmp_path: Path) -> None:
    from itap_engine.compute.cluster import ComputeError

    with (
        pytest.raises(ComputeError, match=r"cannot reach Dask scheduler tcp://127\.0\.0\.1:9") as info,
        open_executor(_settings(tmp_path), "tcp://127.0.0.1:9"),
    ):
        pass
    assert "\n" not in str(info.value)


def test_bootstrap_on_a_local_cluster_reports_progress(tmp_path: Path) -> None:
    from itap_engine.engine.core import EngineCore

    settings = _settings(
        tmp_path,
        compute={"cluster": "local:2", "partition_devices": 2},
        simulation={"fleet": [{"profile": "industrial", "devices": 5, "prefix": "pump", "sites": ["a"]}]},
    ).with_overrides(detection={"bootstrap_hours": 3})
    stages: list = []
    core = EngineCore(settings)
    try:
        core.bootstrap(stages.append)
        assert core.store.count_readings("industrial") == 5 * 3 * 360
        assert core._load_model("industrial") is not None
    finally:
        core.close()
    history = [p.fraction for p in stages if p.stage == "history"]
    assert history[0] == 0.0 and history[-1] == 1.0 and history == sorted(history) and len(history) >= 4
    training = [p for p in stages if p.stage == "training"]
    assert training[-1].fraction == 1.0
    # training's device groups ran on the cluster and moved the bar (5 devices in groups of 2)
    assert "training the industrial model: 9/9 group tasks" in [p.message for p in training]


SKAB_VALVE1 = Path(__file__).resolve().parents[3] / "shared" / "data" / "skab" / "valve1"


def test_simulated_evaluation_on_a_local_cluster_gives_the_metrics_of_one_process(
    cluster: DaskExecutor, tmp_path: Path
) -> None:
    """``itap evaluate --simulate --cluster local:2``: training's per-device half and the
    evaluated hours run by device groups (each simulating its own devices and reading
    their history from the scratch database); every metric equals one process's."""
    from itap_engine.compute.cluster import group_map
    from itap_engine.compute.train import EVALUATE_PASSES
    from itap_engine.evaluation.labelled import evaluate_simulated

    settings = _settings(tmp_path, detection={"detector": "shift"})
    scenario = {"devices": 7, "hours": 3.0, "train_hours": 4.0, "fault_rate": 8.0, "seed": 11}
    here = evaluate_simulated(settings, "industrial", **scenario)
    seen: list[tuple[int, int]] = []
    groups = group_map(cluster, lambda d, t: seen.append((d, t)), passes=EVALUATE_PASSES)
    there = evaluate_simulated(settings, "industrial", **scenario, map_groups=groups)
    assert here["events"] and here["points"]["rows"] == 7 * 3 * 360
    assert there == here
    # 7 devices in groups of 3, three training passes and the evaluated hours: one count
    assert [d for d, _ in seen] == list(range(1, 13)) and {t for _, t in seen} == {12}


def test_skab_evaluation_on_a_local_cluster_gives_the_metrics_of_one_process(
    cluster: DaskExecutor, tmp_path: Path
) -> None:
    """``itap evaluate --skab DIR --cluster local:2``: one task per file, each in its own
    scratch store on a worker; the pooled SKAB and alert metrics equal one process's."""
    from itap_engine.compute.cluster import group_map
    from itap_engine.evaluation.skab import find_skab_files
    from itap_engine.evaluation.skab_engine import evaluate_skab_engine

    if not SKAB_VALVE1.is_dir():
        pytest.skip(f"SKAB dev set not found at {SKAB_VALVE1}")
    folder = tmp_path / "skab"
    folder.mkdir()
    for path in find_skab_files(SKAB_VALVE1)[:3]:
        (folder / path.name).symlink_to(path)
    settings = load_settings(CONFIG).with_overrides(paths={"artifacts_dir": str(tmp_path / "artifacts")})
    here = evaluate_skab_engine(settings, folder)
    seen: list[tuple[int, int]] = []
    there = evaluate_skab_engine(settings, folder, map_files=group_map(cluster, lambda d, t: seen.append((d, t))))
    assert here["files"] == 3 and here["points"]["rows"] > 0
    assert there == here
    assert seen[-1] == (3, 3)


CONSOLE_BOOTSTRAP = """
import asyncio, json, sys, time

from itap_engine.config import load_settings
from itap_engine.facade.local import LocalFacade
from itap_tui.app import ItapApp
from itap_tui.screens import BootstrapScreen

seen = []
shown = BootstrapScreen.progress

def progress(self, p):
    seen.append(p.message)
    shown(self, p)

BootstrapScreen.progress = progress


async def main():
    app = ItapApp(LocalFacade(load_settings(sys.argv[1])))
    async with app.run_test(size=(100, 30)) as pilot:
        stderr_fd = sys.stderr.fileno()  # Textual's print capture
        deadline = time.monotonic() + 240
        while app.start_error is None and not app.engine_started and time.monotonic() < deadline:
            await pilot.pause(0.1)
        result = {"error": app.start_error, "started": app.engine_started, "seen": seen, "stderr_fd": stderr_fd}
        await pilot.press("q")
    print(json.dumps(result, default=str))

asyncio.run(main())
"""


@pytest.mark.slow
def test_the_console_bootstraps_on_a_local_cluster(tmp_path: Path) -> None:
    """The console's own start path (pilot, LocalFacade, engine thread) with
    ``cluster = "local:2"``: Textual's print capture stands in for ``sys.stderr``
    (``fileno()`` is -1), which once made multiprocessing's resource tracker fail to
    spawn and the bootstrap screen report "Nanny failed to start". Run in a fresh
    interpreter: a tracker already started by another test would hide the failure."""
    import json
    import subprocess
    import sys

    from itap_bench.engine import derived_config

    config = derived_config(
        load_settings(CONFIG),
        tmp_path / "site",
        fleet=[{"profile": "industrial", "devices": 5, "prefix": "pump", "sites": ["north"]}],
        compute={"cluster": "local:2", "partition_devices": 2},
        simulation={"fault_rate_per_device_day": 0.0},
        detection={"bootstrap_hours": 2, "detector": "robust_z"},
        engine={"tick_seconds": 0.5, "retrain_minutes": 600, "housekeeping_minutes": 600},
    )
    run = subprocess.run(
        [sys.executable, "-c", CONSOLE_BOOTSTRAP, str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["stderr_fd"] == -1
    assert result["error"] is None and result["started"] is True
    # the cluster's device groups moved the console's bar (5 devices in groups of 2)
    assert "training the industrial model: 9/9 group tasks" in result["seen"]
