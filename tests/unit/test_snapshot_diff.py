"""Snapshot diffs: what changed between two snapshots, keyed by device id."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itap_engine.snapshot import DeviceRow, EngineStats, Snapshot, SnapshotPublisher
from itap_engine.snapshot.diff import StaleDiff, apply, changed_ids, diff, mark_changes

STATS = EngineStats(None, None, None, 0, {}, False, "live")
IDS = [f"dev-{i}" for i in range(12)]

values = st.dictionaries(
    st.sampled_from(["temp_c", "rpm", "x"]),
    st.none() | st.floats(allow_nan=False, allow_infinity=False, width=32),
    max_size=3,
)


@st.composite
def device_rows(draw, device_id: str) -> DeviceRow:  # type: ignore[no-untyped-def]
    return DeviceRow(
        device_id=device_id,
        profile=draw(st.sampled_from(["industrial", "aircraft"])),
        site=draw(st.none() | st.sampled_from(["north", "south"])),
        state=draw(st.none() | st.sampled_from(["RUN", "IDLE"])),
        values=draw(values),
        score=draw(st.none() | st.floats(0, 5, allow_nan=False)),
        threshold=0.5,
        status=draw(st.sampled_from(["ok", "warning", "critical", "stale"])),
        last_ts=draw(st.none() | st.integers(0, 10**12)),
        injected_fault=draw(st.none() | st.just("overheat_drift")),
    )


@st.composite
def snapshots(draw, seq: int) -> Snapshot:  # type: ignore[no-untyped-def]
    ids = draw(st.lists(st.sampled_from(IDS), unique=True, max_size=len(IDS)))
    rows = tuple(draw(device_rows(d)) for d in ids)
    return Snapshot(
        seq=seq,
        created_at=datetime(2026, 1, 1, 6, 0, seq % 60),
        devices=rows,
        anomalies=(),
        validation_alerts=(),
        stats=replace(STATS, ticks=seq),
        silenced=draw(st.dictionaries(st.sampled_from(IDS), st.tuples(st.integers(0, 10), st.just("muted")))),
    )


@st.composite
def pairs(draw):  # type: ignore[no-untyped-def]
    """Two snapshots, the second often sharing rows (equal or the same object) with the first."""
    before = draw(snapshots(1))
    after = draw(snapshots(2))
    keep = draw(st.lists(st.sampled_from(before.devices), unique_by=lambda r: r.device_id)) if before.devices else []
    kept = {r.device_id: (r if draw(st.booleans()) else replace(r)) for r in keep}
    rows = [kept.pop(r.device_id, r) for r in after.devices] + list(kept.values())
    order = draw(st.permutations(rows)) if draw(st.booleans()) else rows
    return before, replace(after, devices=tuple(order))


@settings(max_examples=150, deadline=None)
@given(pairs())
def test_a_diff_from_a_to_b_applied_to_a_is_b(pair) -> None:  # type: ignore[no-untyped-def]
    before, after = pair
    change = diff(before, after)
    assert apply(before, change) == after
    # only what changed travels
    old = {r.device_id: r for r in before.devices}
    assert {r.device_id for r in change.upserts} == {r.device_id for r in after.devices if old.get(r.device_id) != r}
    assert change.removed == set(old) - {r.device_id for r in after.devices}


@settings(max_examples=100, deadline=None)
@given(pairs())
def test_marked_changes_name_exactly_the_rows_that_differ_and_share_the_rest(pair) -> None:  # type: ignore[no-untyped-def]
    before, after = pair
    marked = mark_changes(before, after)
    assert marked.base_seq == before.seq and marked.changed == changed_ids(before, after)
    assert replace(marked, base_seq=None, changed=None) == after  # same content
    old = {r.device_id: r for r in before.devices}
    for row in marked.devices:
        if row.device_id not in marked.changed:
            assert row is old[row.device_id]  # the very object: a subscriber skips it by identity


def test_a_diff_applies_only_to_its_base_and_the_first_snapshot_is_full() -> None:
    a = Snapshot(1, datetime(2026, 1, 1), (), (), (), STATS)
    b = replace(a, seq=2)
    with pytest.raises(StaleDiff):
        apply(replace(a, seq=7), diff(a, b))
    assert mark_changes(None, b).changed is None


def test_the_publisher_marks_each_live_snapshot_against_the_previous_one() -> None:
    row = DeviceRow("d1", "industrial", None, "RUN", {"temp_c": 1.0}, 0.1, 0.5, "ok", 1)
    other = replace(row, device_id="d2")
    publisher = SnapshotPublisher()
    seen: list[Snapshot] = []
    publisher.subscribe(seen.append)
    first = Snapshot(1, datetime(2026, 1, 1), (row, other), (), (), STATS)
    publisher._deliver(first)
    publisher._deliver(replace(first, seq=2, devices=(replace(row), replace(other, score=0.9))))
    assert seen[0].changed is None  # full
    assert seen[1].base_seq == 1 and seen[1].changed == {"d2"}
    assert seen[1].devices[0] is row
