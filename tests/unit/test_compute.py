"""Batch work by device groups (itap_engine.compute) in one process: the same results
as the whole-fleet code paths, the cluster setting, and a missing Dask extra.

The LocalCluster runs of the same functions are in tests/functional/test_dask_cluster.py.
"""

from __future__ import annotations

import shutil
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _detection_helpers import START, local_settings

from itap_engine.compute.cluster import ComputeError, LocalExecutor, open_executor, partitions
from itap_engine.compute.score import score_backlog
from itap_engine.compute.simulate import simulate_fleet
from itap_engine.config import ConfigError, check_cluster
from itap_engine.detection.alerts import alerts_frame
from itap_engine.detection.scoring import score_pending, train_model
from itap_engine.ingest.simulator import Simulator, device_ids_for
from itap_engine.store.sql import Store, to_epoch_ms

SCORE_TOLERANCE = 1e-9
"""Scores of a different grouping (device groups, time slices) agree to this, relative;
the same grouping in another process gives identical numbers."""


@pytest.fixture
def fleet(tmp_path: Path):
    """10 industrial devices x 8 h with random faults, stored by device groups of 3."""
    settings = local_settings(tmp_path, compute={"partition_devices": 3}, simulation={"fault_rate_per_device_day": 6.0})
    store = Store(settings)
    simulate_fleet(
        LocalExecutor(),
        settings,
        "industrial",
        device_ids_for("pump", 10),
        START,
        START + timedelta(hours=8),
        source="test",
        url=store.url,
    )
    yield settings, store
    store.close()


@pytest.mark.parametrize("value", ["none", "local", "local:2", "tcp://10.0.0.5:8786", "tls://sched:8786"])
def test_cluster_setting_accepts(value: str) -> None:
    assert check_cluster(value) == value


@pytest.mark.parametrize("value", ["", "local:0", "local:x", "8786", "spark://x"])
def test_cluster_setting_rejects_in_one_line(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"compute\.cluster: .*local") as info:
        local_settings(tmp_path, compute={"cluster": value})
    assert "\n" not in str(info.value)


def test_partitions_are_sorted_device_groups() -> None:
    parts = partitions(["b", "a", "d", "c", "a", "e"], 2)
    assert [p.devices for p in parts] == [("a", "b"), ("c", "d"), ("e",)]
    assert [(p.index, p.count) for p in parts] == [(0, 3), (1, 3), (2, 3)]


def test_none_runs_here_and_reports_progress(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    with open_executor(local_settings(tmp_path)) as executor:
        assert isinstance(executor, LocalExecutor)
        assert executor.map(divmod, [(7, 2), (9, 4)], lambda d, t: seen.append((d, t))) == [(3, 1), (2, 1)]
    assert seen == [(1, 2), (2, 2)]


def test_a_cluster_without_the_dask_extra_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with (
        pytest.raises(ComputeError, match=r"install the dask extra \(pip install 'itap\[dask\]'\)") as info,
        open_executor(local_settings(tmp_path), "local:2"),
    ):
        pass
    assert "\n" not in str(info.value)


def test_device_groups_store_the_rows_of_one_whole_fleet_pass(fleet) -> None:
    settings, store = fleet
    stored = store.read_readings("industrial")
    whole = Simulator(settings, "industrial", device_ids_for("pump", 10)).generate(START, START + timedelta(hours=8))
    whole["ts"] = to_epoch_ms(whole["ts"])
    whole = whole.sort_values(["device_id", "ts"], kind="stable").reset_index(drop=True)
    assert len(stored) == len(whole) == 10 * 8 * 360
    pd.testing.assert_frame_equal(stored[whole.columns.tolist()].reset_index(drop=True), whole, check_dtype=False)
    runs = pd.read_sql("select kind, rows_in, inserted from run", store.engine)
    assert len(runs) == 4 and runs["rows_in"].sum() == runs["inserted"].sum() == len(whole)


@pytest.mark.parametrize("slice_rows", [None, 2_000], ids=["one slice", "time slices"])
def test_backlog_scoring_by_device_groups_is_score_pending(
    fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slice_rows: int | None
) -> None:
    settings, store = fleet
    if slice_rows:  # each group's backlog is scored in several time slices, alerts carried over
        monkeypatch.setattr("itap_engine.detection.scoring.SCORE_CHUNK_ROWS", slice_rows)
    train_model(store, settings, "industrial", train_until_ms=_ms(4))
    copy = tmp_path / "copy.db"
    store.checkpoint()
    shutil.copy(store.url.split("///", 1)[1], copy)
    whole = score_pending(store, settings, "industrial")
    other = Store(settings, url=f"sqlite:///{copy}")
    try:
        grouped = score_backlog(LocalExecutor(), other, settings, "industrial")
        assert (grouped.rows, grouped.anomalous, grouped.watermark) == (whole.rows, whole.anomalous, whole.watermark)
        assert (grouped.alerts_opened, grouped.alerts_closed) == (whole.alerts_opened, whole.alerts_closed)
        assert grouped.partitions == 4
        a, b = _scores(store), _scores(other)
        np.testing.assert_array_equal(a[["device_id", "ts"]].to_numpy(), b[["device_id", "ts"]].to_numpy())
        np.testing.assert_allclose(b["score"], a["score"], rtol=SCORE_TOLERANCE)
        pd.testing.assert_frame_equal(_alerts(other), _alerts(store), rtol=SCORE_TOLERANCE)
        assert len(_alerts(store)) > 0
        # the watermark moved: a second run finds nothing new
        assert score_backlog(LocalExecutor(), other, settings, "industrial").rows == 0
    finally:
        other.close()


def _ms(hours: float) -> int:
    return int(to_epoch_ms([START + timedelta(hours=hours)])[0])


def _scores(store: Store) -> pd.DataFrame:
    return pd.read_sql("select device_id, ts, score from score order by device_id, ts", store.engine)


def _alerts(store: Store) -> pd.DataFrame:
    keep = ["device_id", "family", "opened_ts", "closed_ts", "last_ts", "status", "severity", "peak_score", "threshold"]
    return (
        alerts_frame(store, "industrial")[keep].sort_values(["device_id", "opened_ts", "family"]).reset_index(drop=True)
    )


def _assert_close(a, b, path: str = "") -> None:
    """Equal JSON-like values, floats within SCORE_TOLERANCE (relative)."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for key in a:
            _assert_close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=SCORE_TOLERANCE, nan_ok=True), path
    else:
        assert a == b, path


def test_score_pending_reads_the_backlog_in_bounded_time_slices(fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    """``itap score`` of one whole fleet and the device groups run one function
    (detection.scoring.score_range), so a large backlog never sits in memory at once."""
    settings, store = fleet
    train_model(store, settings, "industrial", train_until_ms=_ms(4))
    monkeypatch.setattr("itap_engine.detection.scoring.SCORE_CHUNK_ROWS", 5_000)
    reads: list[int] = []
    original = Store.read_readings

    def spy(self, *args, **kwargs):
        frame = original(self, *args, **kwargs)
        reads.append(len(frame))
        return frame

    monkeypatch.setattr(Store, "read_readings", spy)
    result = score_pending(store, settings, "industrial")
    assert result.rows == 10 * 8 * 360
    assert len(reads) > 5 and max(reads) <= 2 * 5_000


@pytest.mark.parametrize(
    ("stdout_tty", "stderr_tty", "shown"), [(True, True, True), (False, True, False), (True, False, False)]
)
def test_the_progress_bar_needs_a_terminal_on_stdout_and_stderr(
    monkeypatch: pytest.MonkeyPatch, stdout_tty: bool, stderr_tty: bool, shown: bool
) -> None:
    """``itap score --json | jq`` or a cron job gets no bar; a terminal gets one."""
    from itap_engine.modes.render import progress

    monkeypatch.setattr(sys.stdout, "isatty", lambda: stdout_tty)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: stderr_tty)
    drawn: list[object] = []
    monkeypatch.setattr("rich.progress.Progress.update", lambda self, task, **kw: drawn.append(kw))
    with progress.task_progress("score industrial") as update:
        update(1, 2)
    assert bool(drawn) is shown


def test_readings_read_in_batches_equal_one_read_and_share_their_strings(
    fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long window is fetched a batch at a time (W3's training read went from 3.5 to
    1.4 GB peak RSS), with one string object per distinct device id and state."""
    _, store = fleet
    whole = store.read_readings("industrial")
    monkeypatch.setattr("itap_engine.store.sql._READ_BATCH_ROWS", 7_000)
    batched = store.read_readings("industrial")
    pd.testing.assert_frame_equal(batched, whole)
    assert len({id(v) for v in batched["device_id"]}) == 10
    assert len({id(v) for v in batched["state"]}) == batched["state"].nunique()
    assert store.read_readings("industrial", since_ms=_ms(99)).empty


def test_backlog_scoring_of_each_shard_splits_the_fleet(fleet, tmp_path: Path) -> None:
    """``itap score --shard i/N``: each shard scores its own devices only, against its
    own watermark, so the shards together do the whole backlog once, with the scores of
    one unsharded run; a shard run again finds nothing new."""
    from itap_engine.engine.shards import Shard
    from itap_engine.store.watermarks import for_shard, scored_key

    settings, store = fleet
    train_model(store, settings, "industrial", train_until_ms=_ms(4))
    copy = tmp_path / "copy.db"
    store.checkpoint()
    shutil.copy(store.url.split("///", 1)[1], copy)
    whole = score_backlog(LocalExecutor(), store, settings, "industrial")
    other = Store(settings, url=f"sqlite:///{copy}")
    try:
        shards = [Shard(0, 2), Shard(1, 2)]
        owned = [[d for d in device_ids_for("pump", 10) if s.owns(d)] for s in shards]
        assert all(owned)
        results = [score_backlog(LocalExecutor(), other, settings, "industrial", shard=s) for s in shards]
        scored = _scores(other)
        for shard, devices, result in zip(shards, owned, results, strict=True):
            assert result.shard == shard.label
            assert result.rows == int(scored["device_id"].isin(devices).sum()) > 0
            assert other.get_watermark(for_shard(scored_key("industrial"), shard.label)) == str(result.watermark)
        assert sum(r.rows for r in results) == whole.rows  # every reading once
        pd.testing.assert_frame_equal(scored, _scores(store), rtol=SCORE_TOLERANCE)
        pd.testing.assert_frame_equal(_alerts(other), _alerts(store), rtol=SCORE_TOLERANCE)
        assert other.get_watermark(scored_key("industrial")) is None  # the unsharded mark is not moved
        assert score_backlog(LocalExecutor(), other, settings, "industrial", shard=shards[0]).rows == 0
    finally:
        other.close()


PG_URL = __import__("os").environ.get("ITAP_TEST_PG_URL")


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.xdist_group("postgres")  # resets the schema of the one test database
@pytest.mark.skipif(not PG_URL, reason="ITAP_TEST_PG_URL not set")
def test_itap_score_with_a_shard_on_postgres(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """The command on PostgreSQL: ``--shard 0/2`` scores only shard 0's devices; a run of
    ``[engine] shard = "1/2"`` (the config) scores the rest; a shard whose database lock
    is held (its engine runs) is exit 3, one line, and nothing is scored."""
    import json

    import sqlalchemy as sa

    from itap_engine.engine.shards import Shard, ShardLock
    from itap_engine.modes.cli import main

    engine = sa.create_engine(PG_URL)  # type: ignore[arg-type]
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    from itap_bench.engine import derived_config
    from itap_engine.config import load_settings

    config = derived_config(
        local_settings(tmp_path / "base"),
        tmp_path / "site",
        fleet=[{"profile": "industrial", "devices": 6, "prefix": "pump", "sites": ["north"]}],
        detection={"detector": "robust_z"},
    )
    monkeypatch.setenv("ITAP_DB_URL", str(PG_URL))
    settings = load_settings(config)
    store = Store(settings)
    try:
        simulate_fleet(
            LocalExecutor(),
            settings,
            "industrial",
            device_ids_for("pump", 6),
            START,
            START + timedelta(hours=6),
            source="test",
            url=store.url,
        )
        train_model(store, settings, "industrial", train_until_ms=_ms(4))
        owned = [d for d in device_ids_for("pump", 6) if Shard(0, 2).owns(d)]
        assert 0 < len(owned) < 6

        held = ShardLock(settings, Shard(0, 2)).acquire()
        try:
            assert main(["score", "--config", str(config), "--shard", "0/2"]) == 3
        finally:
            held.release()
        assert "another ITAP run holds shard 0/2" in capsys.readouterr().err
        assert _scores(store).empty

        assert main(["score", "--config", str(config), "--shard", "0/2", "--json"]) == 0
        first = json.loads(capsys.readouterr().out)
        devices = set(_scores(store)["device_id"])
        assert devices == set(owned) and first[0]["shard"] == "0/2"
        assert first[0]["rows"] == len(owned) * 6 * 360

        derived_config(settings, tmp_path / "site", engine={"shard": "1/2"})  # the same site, sharded by config
        assert main(["score", "--config", str(config), "--json"]) == 0
        second = json.loads(capsys.readouterr().out)
        assert second[0]["shard"] == "1/2" and second[0]["rows"] == (6 - len(owned)) * 6 * 360
        scores = _scores(store)
        assert set(scores["device_id"]) == set(device_ids_for("pump", 6))
        assert not scores.duplicated(["device_id", "ts"]).any()
    finally:
        store.close()


FITTED = ["states_", "levels_", "spreads_", "fallback_spreads_", "lag_tau_", "lag_delay_", "lag_taps_", "step_ms_"]
FITTED += ["device_steps_", "history_", "feature_names_out_"]


def _same_builder(a, b) -> None:  # type: ignore[no-untyped-def]
    for name in FITTED:
        x, y = getattr(a, name), getattr(b, name)
        assert np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y, name
    assert list(a.device_profiles_) == list(b.device_profiles_)
    for device, coef in a.device_profiles_.items():
        np.testing.assert_array_equal(coef, b.device_profiles_[device])


@pytest.mark.parametrize("detector", ["shift", "iforest"])
def test_the_feature_builder_fitted_by_device_groups_is_the_whole_fit(fleet, detector: str) -> None:
    """The grouped fit (what a cluster runs: fleet-wide values, then each group's own
    steps, profiles and spread residuals, the lag on the first devices) gives the very
    numbers of one ``FeatureBuilder.fit`` on the whole window, so the model, its
    thresholds and its scores are those of one process."""
    from itap_engine.detection.scoring import _map_here

    settings, store = fleet
    settings = settings.with_overrides(detection={"detector": detector, "n_estimators": 20})
    whole = train_model(store, settings, "industrial", train_until_ms=_ms(6))
    calls: list[str] = []

    def by_groups(fn, tasks):  # type: ignore[no-untyped-def]
        calls.append(fn.__name__)
        return _map_here(fn, tasks)

    grouped = train_model(store, settings, "industrial", train_until_ms=_ms(6), map_groups=by_groups)
    assert calls == ["fleet_group", "device_group", "validate_group"]
    _same_builder(grouped.features, whole.features)
    assert len(whole.features.device_profiles_) == 10  # type: ignore[union-attr]
    assert grouped.threshold == whole.threshold and grouped.device_thresholds == whole.device_thresholds
    X = np.random.default_rng(3).normal(size=(200, len(whole.feature_names)))
    np.testing.assert_array_equal(grouped.detector.score_samples(X), whole.detector.score_samples(X))


def test_training_a_large_window_reads_a_subset_on_the_driver_and_fits_every_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above MAX_TRAIN_READINGS the driver reads only the seeded subset of devices it
    fits the fleet-wide statistics and the detector on; every device group reads its
    own devices, so every device gets its own daily profile, sampling step and
    threshold, in one process as on a cluster."""
    import itap_engine.detection.scoring as scoring

    settings = local_settings(tmp_path, compute={"partition_devices": 3}, simulation={"fault_rate_per_device_day": 0.0})
    store = Store(settings)
    devices = device_ids_for("pump", 10)
    try:
        simulate_fleet(
            LocalExecutor(),
            settings,
            "industrial",
            devices,
            START,
            START + timedelta(hours=8),
            source="t",
            url=store.url,
        )
        monkeypatch.setattr(scoring, "MAX_TRAIN_READINGS", 6_000)  # ~2 of the 10 devices' 8 h
        monkeypatch.setattr("itap_engine.detection.features._LAG_SEARCH_ROWS", 4_000)  # the lag: 2 devices
        reads: list[int] = []
        real = scoring._training_frame

        def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
            frame = real(*args, **kwargs)
            reads.append(frame["device_id"].nunique())
            return frame

        monkeypatch.setattr(scoring, "_training_frame", spy)
        model = scoring.train_model(store, settings, "industrial", train_until_ms=_ms(8))
    finally:
        store.close()
    assert reads and max(reads) <= 3  # the subset (2 devices here), then groups of 3: never the whole fleet
    assert reads[0] < len(devices)
    assert model.features is not None
    assert sorted(model.features.device_profiles_) == devices
    assert sorted(model.features.device_steps_) == devices
    assert sorted(model.device_thresholds) == devices  # each calibrated on its own known-good scores


class _InlineCluster(LocalExecutor):
    """A cluster's executor as training sees it (not ``none``), running here."""

    name = "inline"


def _one_count(seen: list[tuple[int, int]], total: int) -> None:
    """One honest count: ``done`` only grows, the total never changes, and the count
    reaches its total exactly once, last."""
    dones = [d for d, _ in seen]
    assert dones == sorted(set(dones)), seen
    assert {t for _, t in seen} == {total}, seen
    assert seen[-1] == (total, total)
    assert sum(d == t for d, t in seen) == 1, seen


def test_training_progress_counts_its_three_passes_as_one(fleet) -> None:
    """Training maps its 4 device groups (10 devices in groups of 3) three times
    (fleet statistics, device statistics, validation). The progress the CLI bar and
    the console's bootstrap screen show counts the 12 tasks against one total; each
    pass used to report 1..4 of 4 again, so the bar filled three times over."""
    from itap_engine.compute.train import train_profile

    settings, store = fleet
    seen: list[tuple[int, int]] = []
    train_profile(
        _InlineCluster(),
        store,
        settings,
        "industrial",
        train_until_ms=_ms(6),
        progress=lambda d, t: seen.append((d, t)),
    )
    _one_count(seen, 12)


def test_a_pass_that_did_not_run_ends_the_count_at_what_ran() -> None:
    from itap_engine.compute.cluster import group_map

    seen: list[tuple[int, int]] = []
    groups = group_map(_InlineCluster(), lambda d, t: seen.append((d, t)), passes=3)
    assert groups is not None
    for _ in range(2):
        assert groups(divmod, [(7, 2), (9, 4)]) == [(3, 1), (2, 1)]
    assert seen[-1] == (4, 6)
    groups.finish()
    assert seen[-1] == (4, 4)
    groups.finish()  # once
    assert seen.count((4, 4)) == 1
