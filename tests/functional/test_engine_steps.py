"""The tick split by step, the shard's own bootstrap history on SQLite, and the small
helpers the tick got faster with (each checked against what it replaced)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from itap_bench.engine import derived_config
from itap_bench.sampler import StepSampler, step_of
from itap_engine.config import load_settings
from itap_engine.engine.core import EngineCore
from itap_engine.engine.fleet_view import newest_per_device
from itap_engine.engine.results import TICK_STEPS
from itap_engine.engine.shards import Shard
from itap_engine.ingest.pipeline import ingest_frame
from itap_engine.ingest.simulator import Simulator
from itap_engine.store.sql import Store, _no_rows, datetime_to_ms, to_epoch_ms

REPO = Path(__file__).resolve().parents[2]


def _config(folder: Path, devices: int = 4, **engine: object) -> Path:
    return derived_config(
        load_settings(REPO / "config.toml"),
        folder,
        fleet=[{"profile": "industrial", "devices": devices, "prefix": "pump", "sites": ["north"]}],
        simulation={"fault_rate_per_device_day": 0.0},
        detection={"bootstrap_hours": 1.0, "detector": "robust_z"},
        engine={"tick_seconds": 1.0, "sim_speed": 60.0, **engine},
    )


def test_a_tick_reports_every_step_and_they_add_up_to_no_more_than_its_total(tmp_path: Path) -> None:
    core = EngineCore(load_settings(_config(tmp_path / "site")))
    try:
        core.bootstrap()
        core.resume()
        core.tick()
        result = core.tick()
    finally:
        core.close()
    assert result.scored > 0
    assert set(TICK_STEPS) - {"inbox"} <= set(result.timings)  # inbox: only when the folder exists
    steps = sum(result.timings[s] for s in TICK_STEPS if s in result.timings)
    assert 0 < steps <= result.timings["total"]  # laps are contiguous pieces of the tick


def test_the_conflict_check_is_timed_apart_from_the_insert(tmp_path: Path) -> None:
    settings = load_settings(_config(tmp_path / "site"))
    store = Store(settings)
    sim = Simulator(settings, "industrial", ["pump-001", "pump-002"])
    frame = sim.generate(sim.start, sim.start + timedelta(minutes=10))
    now = frame["ts"].max().to_pydatetime()
    try:
        first = ingest_frame(store, settings, "industrial", frame, source="a", now=now)
        changed = frame.assign(temp_c=frame["temp_c"] + 1.0)
        again = ingest_frame(store, settings, "industrial", changed, source="b", now=now)
    finally:
        store.close()
    assert first.inserted == len(frame) and first.timings["conflicts"] == 0.0  # no stored key: no check
    assert again.conflicts == len(frame) and again.timings["conflicts"] > 0.0
    assert set(again.timings) == {"validate", "ingest", "conflicts", "runs"}


def test_a_shards_first_start_simulates_only_its_own_devices_history(tmp_path: Path) -> None:
    settings = load_settings(_config(tmp_path / "site", devices=8, shard="1/2"))
    shard = Shard(1, 2)
    core = EngineCore(settings)
    try:
        core.bootstrap()
        stored = set(core.store.read_readings("industrial")["device_id"].astype(str))
        fleet = settings.simulation.fleet[0].device_ids()
    finally:
        core.close()
    own = {d for d in fleet if shard.owns(d)}
    assert own and own != set(fleet)
    assert stored == own  # not the other shard's devices


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
    st.one_of(st.none(), st.integers(min_value=-14 * 60, max_value=14 * 60)),
)
def test_datetime_to_ms_agrees_with_the_vectorised_conversion(value: datetime, offset_min: int | None) -> None:
    if offset_min is not None:
        value = value.replace(tzinfo=timezone(timedelta(minutes=offset_min)))
    expected = int(to_epoch_ms([value])[0])
    assert datetime_to_ms(value) == expected
    assert datetime_to_ms(pd.Timestamp(value)) == expected  # the pandas path, for a Timestamp


def test_datetime_to_ms_of_an_aware_time_is_its_utc_instant() -> None:
    assert datetime_to_ms(datetime(1970, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == 0
    assert datetime_to_ms(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)) == 1000


def test_an_empty_rows_frame_is_a_fresh_copy() -> None:
    first = _no_rows()
    first["position"] = first["position"].astype(float)
    first.loc[0] = [1.0, "x", 2, "y"]
    second = _no_rows()
    assert second.empty and str(second["position"].dtype) == "int64"


_rows = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.integers(min_value=0, max_value=10**6)), max_size=30
)


@settings(max_examples=200, deadline=None)
@given(_rows, _rows)
def test_newest_per_device_equals_the_last_row_of_each_device_over_what_was_kept(
    before: list[tuple[str, int]], now: list[tuple[str, int]]
) -> None:
    def frame(rows: list[tuple[str, int]]) -> pd.DataFrame:
        return pd.DataFrame(
            {"device_id": [d for d, _ in rows], "ts": [t for _, t in rows]}, columns=["device_id", "ts"]
        )

    previous = newest_per_device(frame(before), None) if before else None
    got = newest_per_device(frame(now), previous) if now else previous
    expected: dict[str, int] = {}
    for device, ts in [*before, *now]:  # the last row of each device wins
        expected[device] = ts
    if got is None:
        assert not expected
        return
    assert got["ts"].to_dict() == expected


def test_the_sampler_charges_a_stack_to_its_innermost_named_step() -> None:
    import sys

    def features_like() -> str:
        return step_of(sys._getframe())

    features_like.__code__ = features_like.__code__.replace(co_filename="/x/itap_engine/detection/features.py")
    assert features_like() == "features"
    assert step_of(sys._getframe()) == "other"
    with StepSampler(interval_s=0.0005) as sampler:
        sampler.watch()
        deadline = datetime.now() + timedelta(seconds=0.2)
        while datetime.now() < deadline and not sampler.counts:
            sum(range(1000))
        sampler.unwatch()
    assert sum(sampler.counts.values()) > 0 and set(sampler.shares()) <= {"other"}


def test_a_comprehension_counts_as_the_function_around_it() -> None:
    import sys

    def insert_scores() -> str:
        return next(step_of(sys._getframe()) for _ in range(1))  # a <genexpr> frame on top

    code = insert_scores.__code__.replace(co_filename="/x/itap_engine/detection/scoring.py")
    insert_scores.__code__ = code
    # the genexpr's own code object keeps the test file's name, so patch it too
    inner = next(c for c in code.co_consts if hasattr(c, "co_name") and c.co_name == "<genexpr>")
    insert_scores.__code__ = code.replace(
        co_consts=tuple(
            inner.replace(co_filename="/x/itap_engine/detection/scoring.py") if c is inner else c
            for c in code.co_consts
        )
    )
    assert insert_scores() == "store scores"  # not "score (other)", the scoring module's catch-all
