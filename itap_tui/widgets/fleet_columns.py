"""A snapshot's devices as numpy columns: the fleet table's sorts and filters over 10,000 rows.

The fleet table re-plans its view when a key changes the sort or the filter. Done row by
row in Python that is tens of milliseconds at 10,000 devices, on the event loop while
the operator waits. :class:`FleetColumns` reads each device's sort and filter fields
once per snapshot (off the event loop, when the table plans a tick's view in its worker
thread); a key's re-plan of the same snapshot is then a numpy ``lexsort`` or a boolean
mask over the columns, and its sort orders are kept for the next key.

Every answer equals the row-by-row definition: :func:`sort_key` over ``sorted`` for the
order, :meth:`~itap_tui.filtering.Filter.matches_device` for the filter (tests compare
them on generated fleets).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from itap_engine.snapshot import DeviceRow
from itap_tui.filtering import Filter, Term
from itap_tui.format import STATUS_RANK

SORT_COLUMNS = ("status", "score", "device", "profile", "state")


def sort_key(column: str):  # type: ignore[no-untyped-def]
    """A key function over :class:`DeviceRow` for a sort column (the definition)."""
    if column == "status":
        return lambda r: (-STATUS_RANK.get(r.status, 0), -(r.score or 0.0), r.device_id)
    if column == "score":
        return lambda r: (-(r.score if r.score is not None else -1.0), r.device_id)
    if column == "profile":
        return lambda r: (r.profile, r.device_id)
    if column == "state":
        return lambda r: (r.state or "", r.device_id)
    return lambda r: r.device_id


_COMPARE_OPS = {">": np.greater, "<": np.less, ">=": np.greater_equal, "<=": np.less_equal}
_LOWER_NAMES: dict[tuple[str, ...], dict[str, str]] = {}


def _lower_names(names: tuple[str, ...]) -> dict[str, str]:
    """Lower-case signal name -> the name as stored (the last wins, as in ``matches_device``)."""
    found = _LOWER_NAMES.get(names)
    if found is None:
        if len(_LOWER_NAMES) > 1000:
            _LOWER_NAMES.clear()
        found = _LOWER_NAMES[names] = {name.lower(): name for name in names}
    return found


class _Ids:
    """What depends only on the device ids (kept while the fleet's ids stay the same)."""

    def __init__(self, ids: list[str]) -> None:
        n = len(ids)
        self.ids = ids
        self.array = np.array(ids, dtype=object) if n else np.empty(0, dtype=object)
        by_id = sorted(range(n), key=ids.__getitem__)  # Python's str order, as sorted() uses
        self.by_id = np.array(by_id, dtype=np.intp)
        self.rank = np.empty(n, dtype=np.intp)
        self.rank[self.by_id] = np.arange(n)
        self.position = {device: i for i, device in enumerate(ids)}
        self._lower: list[str] | None = None

    @property
    def lower(self) -> list[str]:
        if self._lower is None:
            self._lower = [device.lower() for device in self.ids]
        return self._lower


class FleetColumns:
    """The sort and filter fields of ``rows`` as columns, in the rows' order.

    Args:
        rows: the devices (ids unique).
        previous: the columns of the previous snapshot; what depends only on the ids is
            reused when the fleet's ids are the same, in the same order.
    """

    def __init__(self, rows: Sequence[DeviceRow], previous: FleetColumns | None = None) -> None:
        ids = [row.device_id for row in rows]
        n = len(ids)
        self.rows = rows
        self.size = n
        self._ids = previous._ids if previous is not None and previous._ids.ids == ids else _Ids(ids)
        status_rank = np.empty(n, dtype=float)
        score = np.empty(n, dtype=float)  # NaN for a missing score
        groups: dict[tuple[object, ...], int] = {}
        codes = np.empty(n, dtype=np.intp)
        rank_of = STATUS_RANK.get
        for i, row in enumerate(rows):
            status_rank[i] = -rank_of(row.status, 0)
            value = row.score
            score[i] = np.nan if value is None else value
            key = (row.profile, row.status, row.state, row.site, row.injected_fault)
            code = groups.get(key)
            if code is None:
                code = groups[key] = len(groups)
            codes[i] = code
        self._status_rank = status_rank
        self._score = score
        self._groups = list(groups)
        self._codes = codes
        self._orders: dict[str, np.ndarray] = {}
        self._numbers: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ ids
    @property
    def ids(self) -> list[str]:
        return self._ids.ids

    @property
    def position(self) -> Mapping[str, int]:
        """Device id -> its place in ``rows``."""
        return self._ids.position

    def id_list(self, positions: np.ndarray) -> list[str]:
        """The ids at ``positions``."""
        return self._ids.array[positions].tolist()  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ sort
    def order(self, column: str) -> np.ndarray:
        """Positions of ``rows`` in the order ``sorted(rows, key=sort_key(column))`` gives.
        Every key ends with the (unique) id, so the order is total and its reverse is
        the order backwards."""
        found = self._orders.get(column)
        if found is None:
            found = self._orders[column] = self._sort(column)
        return found

    def _sort(self, column: str) -> np.ndarray:
        rank = self._ids.rank
        if column == "status":
            score = -np.nan_to_num(self._score, nan=0.0)  # ``-(score or 0.0)``
            return np.lexsort((rank, score, self._status_rank))
        if column == "score":
            return np.lexsort((rank, -np.nan_to_num(self._score, nan=-1.0)))
        if column in ("profile", "state"):
            words = [str((group[0] if column == "profile" else group[2]) or "") for group in self._groups]
            code = {word: i for i, word in enumerate(sorted(set(words)))}
            group_code = np.array([code[word] for word in words], dtype=np.intp)
            return np.lexsort((rank, group_code[self._codes] if self.size else self._codes))
        return self._ids.by_id

    # ------------------------------------------------------------------ filter
    def matches(self, flt: Filter) -> np.ndarray:
        """``[flt.matches_device(row) for row in rows]`` as a boolean array: a term on the
        profile, status, state, site or fault is decided once per distinct combination
        of them (with the filter's own ``_term_matches``); the id's substring match and
        the number comparisons are done over the whole column."""
        n = self.size
        if not flt:
            return np.ones(n, dtype=bool)
        group_fields = [
            {
                "device": "",
                "profile": profile.lower(),
                "status": status.lower(),
                "severity": status.lower(),
                "state": (state or "").lower(),
                "site": (site or "").lower(),
                "fault": (fault or "").lower(),
            }
            for profile, status, state, site, fault in self._groups  # type: ignore[misc]
        ]
        codes = self._codes

        def by_group(term: Term) -> np.ndarray:
            answers = np.fromiter(
                (Filter._term_matches(term, f, {}) for f in group_fields), dtype=bool, count=len(group_fields)
            )
            return answers[codes] if n else np.zeros(0, dtype=bool)

        def in_id(value: str) -> np.ndarray:
            return np.fromiter((value in device for device in self._ids.lower), dtype=bool, count=n)

        result = np.ones(n, dtype=bool)
        for clause in flt.clauses:
            any_term = np.zeros(n, dtype=bool)
            for term in clause:
                plain = replace(term, negated=False)
                if term.op != ":":
                    with np.errstate(invalid="ignore"):
                        found = _COMPARE_OPS[term.op](self.numbers(term.key or ""), float(term.value))
                elif term.key is None:
                    found = in_id(term.value) | by_group(plain)
                elif term.key == "device":
                    found = in_id(term.value)
                else:
                    found = by_group(plain)
                any_term |= found != term.negated
            result &= any_term
        return result

    def numbers(self, name: str) -> np.ndarray:
        """The number ``name>N`` compares (the score, or a signal by its lower-case
        name), NaN where a device has none."""
        found = self._numbers.get(name)
        if found is None:
            if name == "score":
                found = self._score
            else:
                values = (row.values.get(_lower_names(tuple(row.values)).get(name, "\0")) for row in self.rows)
                found = np.fromiter((np.nan if v is None else v for v in values), dtype=float, count=self.size)
            self._numbers[name] = found
        return found


class OrderIndex(Mapping[str, int]):
    """Device id -> its row in a display order given as positions of
    :class:`FleetColumns` rows, without a dict of 10,000 entries per view."""

    def __init__(self, columns: FleetColumns, positions: np.ndarray) -> None:
        self._position = columns.position
        self._ids = columns.ids
        self._positions = positions
        where = np.full(columns.size, -1, dtype=np.intp)
        where[positions] = np.arange(len(positions))
        self._where = where

    def __getitem__(self, device: str) -> int:
        row = int(self._where[self._position[device]])
        if row < 0:
            raise KeyError(device)
        return row

    def get(self, device: Any, default: Any = None) -> Any:
        place = self._position.get(device)
        if place is None:
            return default
        row = int(self._where[place])
        return default if row < 0 else row

    def __contains__(self, device: object) -> bool:
        place = self._position.get(device)  # type: ignore[call-overload]
        return place is not None and self._where[place] >= 0

    def __iter__(self) -> Iterator[str]:
        ids = self._ids
        return (ids[i] for i in self._positions.tolist())

    def __len__(self) -> int:
        return len(self._positions)


class MatchMap(Mapping[str, bool]):
    """Device id -> whether the filter shows it, over a mask of :class:`FleetColumns` rows."""

    def __init__(self, columns: FleetColumns, mask: np.ndarray) -> None:
        self._position = columns.position
        self._ids = columns.ids
        self.mask = mask

    def __getitem__(self, device: str) -> bool:
        return bool(self.mask[self._position[device]])

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


def sorted_ids(rows: Sequence[DeviceRow], column: str, reverse: bool = False) -> list[str]:
    """The ids of ``rows`` in the order ``sorted(rows, key=sort_key(column), reverse=reverse)``
    gives, by a lexsort over key columns (scores are never NaN: a NaN has no place in
    either order)."""
    columns = FleetColumns(rows)
    order = columns.order(column)
    return columns.id_list(order[::-1] if reverse else order)


def fleet_matches(flt: Filter, rows: Sequence[DeviceRow]) -> np.ndarray:
    """``[flt.matches_device(row) for row in rows]`` as a boolean array (see :meth:`FleetColumns.matches`)."""
    return FleetColumns(rows).matches(flt)
