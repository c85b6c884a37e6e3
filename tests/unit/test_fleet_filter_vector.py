"""The fleet table's vectorised filter answers exactly as the filter does row by row."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from itap_engine.snapshot import DeviceRow
from itap_tui.filtering import Filter
from itap_tui.widgets.device_table import _sorted_ids_numpy, fleet_matches, sort_key, sorted_ids

WORDS = (
    "pump",
    "ac",
    "00",
    "1",
    "pump-001",
    "aircraft",
    "fan",
    "ok",
    "crit",
    "warn",
    "critical",
    "stale",
    "run",
    "idle",
    "north",
    "overheat",
    "profile:pump",
    "p:aircraft",
    "status:warn",
    "sev:critical",
    "state:run",
    "site:south",
    "fault:overheat",
    "device:01",
    "d:ac",
    "score>0.5",
    "score<=0.2",
    "temp>3",
    "temp<-1",
    "rpm>=100",
    "score>1e-3",
)

values = st.one_of(st.none(), st.floats(-10, 200, allow_nan=False), st.just(math.nan), st.integers(-5, 500))
rows = st.builds(
    DeviceRow,
    device_id=st.sampled_from(["pump-001", "PUMP-002", "ac-001", "fan-10", "x", "north-1", "Ok-7"]),
    profile=st.sampled_from(["pump", "aircraft", "Fan"]),
    site=st.sampled_from([None, "north", "South"]),
    state=st.sampled_from([None, "RUN", "idle", "warn"]),
    values=st.dictionaries(st.sampled_from(["temp", "Temp", "rpm", "score", "TEMP"]), values, max_size=4),
    score=st.one_of(st.none(), st.floats(0, 2, allow_nan=False)),
    threshold=st.none(),
    status=st.sampled_from(["ok", "warning", "critical", "stale", "untrained"]),
    last_ts=st.none(),
    injected_fault=st.sampled_from([None, "overheat", "Bearing"]),
)
term = st.builds(lambda neg, word: ("!" if neg else "") + word, st.booleans(), st.sampled_from(WORDS))
clause = st.lists(term, min_size=1, max_size=3).map("|".join)
filters = st.lists(clause, min_size=0, max_size=3).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(rows, max_size=40), filters)
def test_fleet_matches_equals_matches_device(fleet: list[DeviceRow], text: str) -> None:
    flt = Filter.parse(text)
    assert fleet_matches(flt, fleet).tolist() == [flt.matches_device(row) for row in fleet]


def test_fleet_matches_of_no_filter_and_no_rows() -> None:
    assert fleet_matches(Filter(), []).tolist() == []
    assert fleet_matches(Filter.parse("pump"), []).tolist() == []


sortable = st.builds(
    DeviceRow,
    device_id=st.text(min_size=1, max_size=6),
    profile=st.sampled_from(["pump", "aircraft", "Fan", ""]),
    site=st.none(),
    state=st.sampled_from([None, "", "RUN", "idle", "Idle"]),
    values=st.just({}),
    score=st.one_of(st.none(), st.sampled_from([0.0, -0.0, 0.5, 1.0]), st.floats(-5, 5, allow_nan=False)),
    threshold=st.none(),
    status=st.sampled_from(["ok", "warning", "critical", "stale", "untrained", "other"]),
    last_ts=st.none(),
    injected_fault=st.none(),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(sortable, max_size=60, unique_by=lambda r: r.device_id),
    st.sampled_from(["status", "score", "device", "profile", "state"]),
    st.booleans(),
)
def test_the_vectorised_sort_equals_sorted(fleet: list[DeviceRow], column: str, reverse: bool) -> None:
    expected = [row.device_id for row in sorted(fleet, key=sort_key(column), reverse=reverse)]
    assert _sorted_ids_numpy(fleet, column, reverse) == expected
    assert sorted_ids(fleet, column, reverse) == expected
