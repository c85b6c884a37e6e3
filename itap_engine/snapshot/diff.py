"""What changed between two snapshots, keyed by device id.

A fleet of 10,000 devices makes a snapshot of 10,000 rows a tick, most of them
equal to the tick before's when the fleet is quiet. Two forms say what changed:

* :func:`mark_changes` (what publishers do): the new snapshot reuses the previous
  snapshot's row object for every device whose row is equal, and carries
  ``base_seq`` (the snapshot it was compared with) and ``changed`` (the ids added
  or changed since). A subscriber that rendered ``base_seq`` touches only
  ``changed``; any other (first load, a missed snapshot) takes the snapshot whole.
* :func:`diff` / :func:`apply` (the compact form): a :class:`SnapshotDiff` holds only
  the rows added or changed, the ids removed, the order when it is not the old
  order, and the small rest; ``apply(a, diff(a, b)) == b``. Applying a diff to any
  snapshot but its base raises :class:`StaleDiff`: resynchronise with a full snapshot.

Pure functions: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from itap_engine.snapshot.dto import DeviceRow, Snapshot


class StaleDiff(ValueError):
    """A diff applied to a snapshot other than its base: take a full snapshot."""


@dataclass(frozen=True)
class SnapshotDiff:
    """The change from snapshot ``base_seq`` to the snapshot ``rest`` describes.

    Args:
        base_seq: the snapshot this diff applies to.
        upserts: the rows added or changed, in the new snapshot's order.
        removed: the ids of devices no longer in the fleet.
        order: the new order of every device id, or None when it is the old order
            (less the removed) with the added appended in the order of ``upserts``.
        rest: the new snapshot without its device rows (``devices == ()``): the
            anomalies, alerts, stats and the rest are small and travel whole.
    """

    base_seq: int
    upserts: tuple[DeviceRow, ...]
    removed: frozenset[str]
    order: tuple[str, ...] | None
    rest: Snapshot

    @property
    def seq(self) -> int:
        return self.rest.seq


def changed_ids(before: Snapshot, after: Snapshot) -> frozenset[str]:
    """Ids of the devices of ``after`` whose row is new or differs from ``before``'s."""
    old = {row.device_id: row for row in before.devices}
    return frozenset(
        row.device_id for row in after.devices if (prev := old.get(row.device_id)) is not row and prev != row
    )


def mark_changes(before: Snapshot | None, after: Snapshot) -> Snapshot:
    """``after`` with each row equal to ``before``'s replaced by ``before``'s object,
    and ``base_seq``/``changed`` set (``before`` None: ``after`` as it is, a full snapshot)."""
    if before is None:
        return (
            after if after.base_seq is None and after.changed is None else replace(after, base_seq=None, changed=None)
        )
    old = {row.device_id: row for row in before.devices}
    rows: list[DeviceRow] = []
    changed: set[str] = set()
    for row in after.devices:
        prev = old.get(row.device_id)
        if prev is row or (prev is not None and prev == row):
            rows.append(prev)
        else:
            rows.append(row)
            changed.add(row.device_id)
    return replace(after, devices=tuple(rows), base_seq=before.seq, changed=frozenset(changed))


def diff(before: Snapshot, after: Snapshot) -> SnapshotDiff:
    """The compact change from ``before`` to ``after`` (see :func:`apply`)."""
    old = {row.device_id: row for row in before.devices}
    new_ids = [row.device_id for row in after.devices]
    present = set(new_ids)
    upserts = tuple(row for row in after.devices if (prev := old.get(row.device_id)) is not row and prev != row)
    removed = frozenset(device for device in old if device not in present)
    added = [row.device_id for row in upserts if row.device_id not in old]
    implied = [device for device in old if device not in removed] + added
    order = None if implied == new_ids else tuple(new_ids)
    return SnapshotDiff(before.seq, upserts, removed, order, replace(after, devices=()))


def apply(before: Snapshot, change: SnapshotDiff) -> Snapshot:
    """The snapshot ``change`` leads to from ``before``; :class:`StaleDiff` when
    ``before`` is not its base."""
    if before.seq != change.base_seq:
        raise StaleDiff(f"a diff from snapshot {change.base_seq} cannot apply to snapshot {before.seq}")
    rows = {row.device_id: row for row in before.devices if row.device_id not in change.removed}
    added = []
    for row in change.upserts:
        if row.device_id not in rows:
            added.append(row.device_id)
        rows[row.device_id] = row
    if change.order is not None:
        order: list[str] | tuple[str, ...] = change.order
    else:
        order = [row.device_id for row in before.devices if row.device_id not in change.removed] + added
    return replace(change.rest, devices=tuple(rows[device] for device in order))
