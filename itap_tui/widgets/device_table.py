"""The live fleet table: virtual, so 10,000 devices cost what the screen shows.

The table is a :class:`~textual.widgets.DataTable` (its look, keys, cursor, messages
and CSS) whose rows are not stored in it: the row store is a :class:`FleetView`, the
devices shown in display order, and a cell's text is built only when its row is
drawn (or asked for with :meth:`~DeviceTable.get_cell`). A tick costs, on the event
loop, swapping in the new view and redrawing the lines on screen.

Building a view (filter, sort, cell widths) is :func:`plan_view`, a pure function.
It reads a new snapshot's sort and filter fields once into numpy columns
(:class:`~itap_tui.widgets.fleet_columns.FleetColumns`); a snapshot that says what
changed (``Snapshot.changed``) is compared only there. Up to :data:`INLINE_ROWS`
devices it runs on the event loop (a few milliseconds); above, a snapshot's view is
planned in a worker thread and swapped in when ready, so the loop keeps answering
keys. A key that changes the view (sort, filter, ``o``) plans at once, over the
columns of the snapshot shown: a cached lexsort and a mask, no pass over the rows.
Up to :data:`EXACT_WIDTH_ROWS` devices the plan measures every changed row for the
column widths; above, each frame measures the rows it draws before drawing them.

Drawing a row lays its cells out once per version (text cut to the column) and
styles the pieces with styles shared by the frame; the caches keep
:data:`CACHED_ROWS` rows, a few screens, since every cached object is walked by each
full garbage collection.

While the operator moves the cursor the row order holds still: a view re-sorts
only when asked (``reorder=True``); otherwise rows keep their places and new devices
are added at the end. The cursor stays on its device across views.
:attr:`DeviceTable.last_moved` tells the screen when the operator last moved.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual._segment_tools import line_crop
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets._data_table import ColumnKey, Row, RowKey

from itap_engine.safe_text import visible
from itap_engine.snapshot import DeviceRow, ProfileInfo, Snapshot
from itap_tui.filtering import Filter
from itap_tui.format import Palette, fmt_value, score_text, signals_text, status_text, unit_suffix
from itap_tui.widgets.fleet_columns import FleetColumns, MatchMap, OrderIndex
from itap_tui.widgets.fleet_columns import fleet_matches as fleet_matches
from itap_tui.widgets.fleet_columns import sort_key as sort_key
from itap_tui.widgets.fleet_columns import sorted_ids as sorted_ids
from itap_tui.widgets.navigation import NAV_BINDINGS
from itap_tui.widgets.one_line import OneLineCells, one_line

COLUMNS: tuple[tuple[str, str], ...] = (
    ("device", "Device"),
    ("status", "Status"),
    ("score", "Score"),
    ("state", "State"),
    ("signals", "Key signals"),
    ("fault", "Fault"),
    ("profile", "Profile"),
)

SORTS: tuple[tuple[str, str], ...] = (
    ("status", "status ↓"),
    ("score", "score ↓"),
    ("device", "device ↑"),
    ("profile", "profile ↑"),
    ("state", "state ↑"),
)
"""The ``s`` key cycles through these (column key, label); ``S`` reverses."""

INLINE_ROWS = 500
"""Fleets up to this size plan their views on the event loop (deterministic, a few
milliseconds); larger ones in a worker thread."""

EXACT_WIDTH_ROWS = 2000
"""Fleets up to this size measure every changed row for the column widths; larger
ones measure the first screenful and then the rows as they are drawn."""

log = logging.getLogger(__name__)

SCORE_BAR = 6
"""Cells of the score bar (:func:`~itap_tui.format.score_text`'s default width)."""

Mark = tuple[str, str]
Silence = tuple[int, str]


def sort_label(index: int, reverse: bool) -> str:
    label = SORTS[index][1]
    if reverse:
        label = label.replace("↓", "↥").replace("↑", "↓").replace("↥", "↑")
    return label


SHARED_CELLS = frozenset({1, 3, 5, 6})
"""Columns whose cells take few distinct texts (status, state, fault, profile): each
text is drawn once a frame and shared by the rows that show it."""

CACHED_ROWS = 512
"""Rows whose cells, layout and lines are kept (a few screens: the one shown and the
pages drawn ahead). Every cached row is a few dozen objects the garbage collector
walks on each full collection, so not the whole fleet."""

PREFETCH_ROWS = 6
PREFETCH_DELAY_S = 0.02
"""Over :data:`INLINE_ROWS` devices, the rows a page key would show next are drawn
ahead, this many at a time, this long after the last frame or piece."""


def _sorted_ids_numpy(rows: Sequence[DeviceRow], column: str, reverse: bool) -> list[str]:
    """:func:`sorted_ids` (the name the equivalence tests know)."""
    return sorted_ids(rows, column, reverse)


# ---------------------------------------------------------------------- one row
def _key_signals(row: DeviceRow, profile: ProfileInfo | None) -> tuple[str, ...]:
    return profile.key_signals if profile else tuple(row.values)[:3]


def _fault_state(row: DeviceRow, mark: Mark | None) -> tuple[str | None, str]:
    fault = row.injected_fault or (mark[0] if mark else None)
    return fault, (mark[1] if mark and mark[0] == fault else "")


def row_cells(
    row: DeviceRow,
    profile: ProfileInfo | None,
    palette: Palette,
    mark: Mark | None = None,
    silenced: Silence | None = None,
) -> list[Text]:
    """The row's cells, one per column of :data:`COLUMNS`."""
    names = _key_signals(row, profile)
    units = profile.units if profile else {}
    fault, state = _fault_state(row, mark)
    quiet = silenced[1].split(":")[0] if silenced else ""
    fault_text = Text(end="")
    if fault:
        fault_text.append("⚡ ", style=f"bold {palette.warning}")
        fault_text.append(fault)
        if state:
            fault_text.append(f" {state}", style="bold" if state == "ACTIVE" else "dim")
    status_cell = status_text(row.status, palette)
    if fault:
        status_cell.append(" ⚡", style=f"bold {palette.warning}")
    if quiet:
        status_cell.append(f" {quiet}", style="dim italic")  # muted or maintenance: no new incident
    return [
        Text(visible(row.device_id), style="bold", end=""),
        status_cell,
        score_text(row.score, row.threshold, row.status, palette, width=SCORE_BAR),
        Text(visible(row.state or "—"), end=""),
        signals_text(row.values, names, units),
        fault_text,
        Text(row.profile, end=""),
    ]


_MEASURED: dict[tuple[int, object], int] = {}
_PLAIN = Palette()


def _measured(column: int, part: object, make: Any) -> int:
    """The width of a cell whose text only depends on ``part`` (few distinct values)."""
    width = _MEASURED.get((column, part))
    if width is None:
        if len(_MEASURED) > 50_000:
            _MEASURED.clear()
        width = _MEASURED[(column, part)] = make().cell_len
    return width


def row_widths(
    row: DeviceRow, profile: ProfileInfo | None, mark: Mark | None = None, silenced: Silence | None = None
) -> tuple[int, ...]:
    """The cell widths of :func:`row_cells` (as ``Text.cell_len``), without building them."""
    fault, state = _fault_state(row, mark)
    quiet = silenced[1].split(":")[0] if silenced else ""
    status_part = (row.status, bool(fault), quiet)

    def status_cell() -> Text:
        cell = status_text(row.status, _PLAIN)
        if fault:
            cell.append(" ⚡")
        if quiet:
            cell.append(f" {quiet}")
        return cell

    score = row.score
    names = _key_signals(row, profile)
    units = profile.units if profile else {}
    signals = 2 * max(0, len(names) - 1)
    for name in names:
        value = row.values.get(name)
        signals += cell_len(f"{name} ") + cell_len(fmt_value(value))
        if value is not None:
            signals += cell_len(unit_suffix(name, units.get(name, "")))
    return (
        _measured(0, row.device_id, lambda: Text(visible(row.device_id))),
        _measured(1, status_part, status_cell),
        SCORE_BAR + 6 if score is None else len(f"{score:5.2f} ") + SCORE_BAR,
        _measured(3, row.state, lambda: Text(visible(row.state or "—"))),
        signals,
        0 if not fault else _measured(5, (fault, state), lambda: Text(f"⚡ {fault}" + (f" {state}" if state else ""))),
        _measured(6, row.profile, lambda: Text(row.profile)),
    )


# ---------------------------------------------------------------------- a view
@dataclass(frozen=True)
class ViewRequest:
    """What a view is planned from: a snapshot and the screen's choices."""

    snapshot: Snapshot
    filter: Filter = field(default_factory=Filter)
    sort: str = "status"
    reverse: bool = False
    reorder: bool = True
    marks: Mapping[str, Mark] = field(default_factory=dict)
    generation: int = 0
    """The table's choice counter when asked; a view planned under an older one is dropped."""


@dataclass(frozen=True)
class FleetView:
    """The rows the table shows, and what the next plan reuses."""

    seq: int = -1
    rows: Mapping[str, DeviceRow] = field(default_factory=dict)
    """Every device of the snapshot, shown or not."""
    order: list[str] = field(default_factory=list)
    """The devices shown, in display order."""
    index: Mapping[str, int] = field(default_factory=dict)
    widths: tuple[int, ...] = (0,) * len(COLUMNS)
    """The widest cell of each column measured so far (columns never narrow under the
    operator). Over :data:`EXACT_WIDTH_ROWS` devices only the rows drawn are measured."""
    filter: Filter = field(default_factory=Filter)
    matches: Mapping[str, bool] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)
    """Devices by status, over the whole fleet."""
    changed: frozenset[str] = frozenset()
    """Devices whose row (data, injected-fault mark or mute) changed since the previous view."""
    marks: Mapping[str, Mark] = field(default_factory=dict)
    silenced: Mapping[str, Silence] = field(default_factory=dict)
    profiles: Mapping[str, ProfileInfo] = field(default_factory=dict)
    generation: int = 0
    source: Snapshot | None = field(default=None, compare=False, repr=False)
    """The snapshot planned (a key's re-plan of the same one reuses its rows and counts)."""
    columns: FleetColumns | None = field(default=None, compare=False, repr=False)
    """The snapshot's sort and filter fields as columns (a key's re-plan sorts and
    filters over them; the next snapshot's reuse what depends only on the ids)."""
    plan_ms: float = 0.0
    """How long planning took (the benchmark reads it)."""


def plan_view(previous: FleetView | None, request: ViewRequest) -> FleetView:
    """The view of ``request.snapshot``, reusing ``previous`` where nothing changed. Pure.

    A new snapshot's rows are read into :class:`FleetColumns` once; a key's re-plan of
    the snapshot shown (a sort, a filter) is then a lexsort or a mask over them, with no
    work per row in Python: the order comes out as positions, its index is an
    :class:`OrderIndex` over them. Column widths are measured here up to
    :data:`EXACT_WIDTH_ROWS` devices; above, the table measures the rows it draws."""
    began = time.perf_counter()
    snapshot = request.snapshot
    prev = previous or FleetView()
    same = previous is not None and previous.source is snapshot and previous.columns is not None
    if same:
        rows: Mapping[str, DeviceRow] = prev.rows
        columns = prev.columns
        assert columns is not None
    else:
        rows = {row.device_id: row for row in snapshot.devices}
        columns = FleetColumns(list(rows.values()), prev.columns)
    silenced = dict(snapshot.silenced)
    marks = dict(request.marks)
    changed: set[str]
    if previous is None:
        changed = set(rows)
    else:
        if same:
            changed = set()
        elif snapshot.changed is not None and snapshot.base_seq == previous.seq:
            changed = set(snapshot.changed)
        else:
            changed = {d for d, row in rows.items() if previous.rows.get(d) is not row}
        changed.update(d for d in previous.rows if d not in rows)  # removed
        for device in {*marks, *prev.marks, *silenced, *prev.silenced}:  # a few devices
            if marks.get(device) != prev.marks.get(device) or silenced.get(device) != prev.silenced.get(device):
                changed.add(device)
    profiles = snapshot.profiles
    widths = list(prev.widths)
    if len(rows) <= EXACT_WIDTH_ROWS:
        for device in changed:
            row = rows.get(device)
            if row is None:
                continue
            for index, width in enumerate(
                row_widths(row, profiles.get(row.profile), marks.get(device), silenced.get(device))
            ):
                if width > widths[index]:
                    widths[index] = width
    flt = request.filter
    mask = columns.matches(flt) if flt else None
    matches: Mapping[str, bool] = MatchMap(columns, mask) if mask is not None else {}
    index: Mapping[str, int]
    if request.reorder or previous is None:
        positions = columns.order(request.sort)
        if request.reverse:
            positions = positions[::-1]
        if mask is not None:
            positions = positions[mask[positions]]
        order = columns.id_list(positions)
        index = OrderIndex(columns, positions)
    elif not flt and not prev.filter and len(prev.order) == len(rows) and rows.keys() == prev.rows.keys():
        order, index = prev.order, prev.index  # a tick while the order holds: the same rows in place
    else:
        wanted = set(columns.id_list(np.flatnonzero(mask))) if mask is not None else set(rows)
        order = [d for d in prev.order if d in wanted]
        if len(order) != len(wanted):
            placed = set(order)
            fresh = sorted(
                (row for d, row in rows.items() if d in wanted and d not in placed), key=sort_key(request.sort)
            )
            order += [row.device_id for row in fresh]
        index = {d: i for i, d in enumerate(order)}
    counts: dict[str, int] = dict(prev.counts) if same else {}
    if not same:
        for row in snapshot.devices:
            counts[row.status] = counts.get(row.status, 0) + 1
    return FleetView(
        source=snapshot,
        columns=columns,
        seq=snapshot.seq,
        rows=rows,
        order=order,
        index=index,
        widths=tuple(widths),
        filter=flt,
        matches=matches,
        counts=counts,
        changed=frozenset(changed),
        marks=marks,
        silenced=silenced,
        profiles=profiles,
        generation=request.generation,
        plan_ms=(time.perf_counter() - began) * 1000,
    )


# ---------------------------------------------------------------------- DataTable's row store
def _value(key: object) -> str:
    return key.value if isinstance(key, RowKey) else key  # type: ignore[return-value]


class _Locations:
    """Stands in for DataTable's row key <-> index map, over the view's order."""

    def __init__(self, table: DeviceTable) -> None:
        self._table = table

    def get(self, key: object, default: int | None = None) -> int | None:
        return self._table.view.index.get(_value(key), default)

    def get_key(self, index: int) -> RowKey | None:
        order = self._table.view.order
        return RowKey(order[index]) if 0 <= index < len(order) else None

    def __contains__(self, key: object) -> bool:
        return _value(key) in self._table.view.index

    def __iter__(self) -> Iterator[RowKey]:
        return (RowKey(device) for device in self._table.view.order)

    def __len__(self) -> int:
        return len(self._table.view.order)


class _Rows(Mapping[Any, Row]):
    """Stands in for DataTable's row metadata: every shown device, one line high."""

    def __init__(self, table: DeviceTable) -> None:
        self._table = table

    def __getitem__(self, key: object) -> Row:
        device = _value(key)
        if device not in self._table.view.index:
            raise KeyError(key)
        return Row(RowKey(device), 1)

    def __contains__(self, key: object) -> bool:
        return _value(key) in self._table.view.index

    def __iter__(self) -> Iterator[RowKey]:
        return (RowKey(device) for device in self._table.view.order)

    def __len__(self) -> int:
        return len(self._table.view.order)


class _Data(Mapping[Any, dict[ColumnKey, Text]]):
    """Stands in for DataTable's cells: built when a row is drawn or asked for."""

    def __init__(self, table: DeviceTable) -> None:
        self._table = table

    def __getitem__(self, key: object) -> dict[ColumnKey, Text]:
        device = _value(key)
        if device not in self._table.view.index:
            raise KeyError(key)
        return self._table._cells(device)

    def __contains__(self, key: object) -> bool:
        return _value(key) in self._table.view.index

    def __iter__(self) -> Iterator[RowKey]:
        return (RowKey(device) for device in self._table.view.order)

    def __len__(self) -> int:
        return len(self._table.view.order)


class _Lines(Sequence[Any]):
    """Stands in for DataTable's per-line (row key, line in row) list: one line a row."""

    def __init__(self, order: list[str]) -> None:
        self._order = order

    def __getitem__(self, y):  # type: ignore[no-untyped-def]
        if isinstance(y, slice):
            return [(RowKey(device), 0) for device in self._order[y]]
        return RowKey(self._order[y]), 0

    def __len__(self) -> int:
        return len(self._order)


class _OrderedRows(Sequence[Row]):
    """DataTable's ordered rows, made on demand (a slice is lazy too)."""

    def __init__(self, order: list[str], span: range | None = None) -> None:
        self._order = order
        self._span = span if span is not None else range(len(order))

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        if isinstance(index, slice):
            return _OrderedRows(self._order, self._span[index])
        return Row(RowKey(self._order[self._span[index]]), 1)

    def __len__(self) -> int:
        return len(self._span)


# ---------------------------------------------------------------------- the widget
class DeviceTable(OneLineCells):
    """One row per device; see the module docstring for how updates work."""

    BINDINGS = [Binding("enter", "select_cursor", "Open", show=True), *NAV_BINDINGS]

    class ViewChanged(Message):
        """A new view is on screen (rows, order or filter); the screen updates its summary."""

        def __init__(self, table: DeviceTable) -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> DeviceTable:
            return self.table

    def __init__(self, *, id: str | None = None) -> None:
        self.view = FleetView()
        """The rows shown (see :class:`FleetView`)."""
        self._line_style: Style | None = None
        self._line_frame: dict[str, Any] | None = None
        self._row_styles: dict[tuple[int, object], Style] = {}
        self._header_lines: dict[tuple[object, ...], Strip] = {}
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.fixed_columns = 1
        self.last_moved = float("-inf")
        """``time.monotonic()`` of the operator's last cursor move."""
        self.updates = 0
        """Row changes shown in total (tests read it)."""
        self.inline_rows = INLINE_ROWS
        self._rows = _Rows(self)
        self._row_locations = _Locations(self)  # type: ignore[assignment]
        self.rows = self._rows  # type: ignore[assignment]
        self._data = _Data(self)  # type: ignore[assignment]
        self._line_cache = LRUCache(CACHED_ROWS // 2)  # DataTable's 1,000 lines: ~36 tracked objects each
        self._cell_cache: LRUCache[str, tuple[DeviceRow, tuple[object, ...], dict[ColumnKey, Text]]] = LRUCache(
            CACHED_ROWS
        )
        self._version = 0
        self._versions: dict[str, int] = {}
        """The version of each device's cells (a new one each time they are built)."""
        self._frame_key: tuple[object, ...] | None = None
        self._frame: dict[str, Any] = {}
        self._drawn = [0] * len(COLUMNS)
        self._widen_scheduled = False
        self._dimensions_stale = False
        self._palette = Palette()
        self._generation = 0
        self._choice: tuple[object, ...] | None = None
        self._planning = False
        self._queued: ViewRequest | None = None
        self._job: tuple[FleetView | None, ViewRequest] | None = None
        """The view to plan next and the one it follows, for the worker thread."""
        self._prefetch_timer: Any = None

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    # ------------------------------------------------------------------ DataTable's row store, virtual
    @property
    def _y_offsets(self) -> _Lines:  # type: ignore[override]
        return _Lines(self.view.order)

    @property
    def ordered_rows(self) -> _OrderedRows:  # type: ignore[override]
        return _OrderedRows(self.view.order)

    @property
    def row_count(self) -> int:
        return len(self.view.order)

    def _get_row_region(self, row_index: int) -> Region:
        if not self.is_valid_row_index(row_index):
            return Region(0, 0, 0, 0)
        width = sum(column.get_render_width(self) for column in self.columns.values()) + self._row_label_column_width
        y = row_index + (self.header_height if self.show_header else 0)
        return Region(0, y, max(self.size.width, width), 1)

    def _get_cell_region(self, coordinate):  # type: ignore[no-untyped-def]
        if not self.is_valid_coordinate(coordinate):
            return Region(0, 0, 0, 0)
        row_index, column_index = coordinate
        columns = self.ordered_columns
        x = sum(column.get_render_width(self) for column in columns[:column_index]) + self._row_label_column_width
        y = row_index + (self.header_height if self.show_header else 0)
        return Region(x, y, columns[column_index].get_render_width(self), 1)

    def render_lines(self, crop: Region) -> list[Strip]:
        self._line_style = self.rich_style  # once a frame, not once a line
        self._line_frame = None
        self._fit_drawn_rows(crop)
        try:
            return super().render_lines(crop)
        finally:
            self._line_style = None
            self._line_frame = None
            if len(self.view.order) > self.inline_rows and self._prefetch_timer is None:
                self._prefetch_timer = self.set_timer(PREFETCH_DELAY_S, self._prefetch)

    def _prefetch(self) -> None:
        """Lay out the rows a page key would show next (their cells rendered and cut to
        the columns), a few rows at a time while the loop is idle: PageDown and PageUp
        then only style and place them."""
        self._prefetch_timer = None
        if not self.is_mounted or not self.size.height:
            return
        frame = self._frame_context(self.rich_style)
        height = max(1, self.scrollable_content_region.height - (self.header_height if self.show_header else 0))
        top = self.scroll_offset.y
        order = self.view.order
        done = 0
        for row_index in (*range(top + height, top + 2 * height), *range(top - 1, top - height - 1, -1)):
            if not 0 <= row_index < len(order) or row_index == self.cursor_row:
                continue
            device = order[row_index]
            self._cells(device)
            if (device, self._versions.get(device)) in frame["plain"]:
                continue
            self._layout(device, self._versions.get(device), frame)
            done += 1
            if done >= PREFETCH_ROWS:  # the rest after the loop has looked at its queue
                self._prefetch_timer = self.set_timer(PREFETCH_DELAY_S, self._prefetch)
                return

    def render_line(self, y: int) -> Strip:
        """DataTable's, with the widget's style computed once a frame (the table has
        no fixed rows)."""
        style = self._line_style if self._line_style is not None else self.rich_style
        scroll_x, scroll_y = self.scroll_offset
        header = self.header_height if self.show_header else 0
        if y >= header:
            y += scroll_y
        return self._render_line(y, scroll_x, scroll_x + self.size.width, style)

    def _render_line(self, y: int, x1: int, x2: int, base_style: Style) -> Strip:
        """DataTable's line ``y`` (cached as DataTable caches it), for a data row built
        as one :class:`Strip` instead of three (each ``Strip`` sets up seven caches):
        the same segments, joined where their styles are the same (a test compares
        both)."""
        header = self.header_height if self.show_header else 0
        if y < header:
            return self._header_line(y, x1, x2, base_style)
        if not 0 <= y - header < len(self.view.order):
            return super()._render_line(y, x1, x2, base_style)
        width = self.size.width
        cache_key = (
            y,
            x1,
            x2,
            width,
            self.cursor_coordinate,
            self.hover_coordinate,
            base_style,
            self.cursor_type,
            self._show_hover_cursor,
            self._update_count,
            self._pseudo_class_state,
        )
        found = self._line_cache.get(cache_key)
        if found is not None:
            return found
        fixed, scrollable = self._render_line_in_row(
            RowKey(self.view.order[y - header]),
            0,
            base_style,
            cursor_location=self.cursor_coordinate,
            hover_location=self.hover_coordinate,
        )
        frame = self._line_frame if base_style is self._line_style and self._line_frame is not None else None
        widths = frame["widths"] if frame is not None else [c.get_render_width(self) for c in self.ordered_columns]
        fixed_width = sum(widths[: self.fixed_columns])
        segments: list[Segment] = [segment for cell in fixed for segment in cell]
        if x1 == 0 and fixed_width < x2:
            # not scrolled: the scrollable cells after the fixed ones as laid out (each
            # exactly its column's width), the one the line's end cuts cropped, then the
            # blank: what cropping them all to the line gives, measuring one cell at most
            pos = fixed_width
            for index in range(self.fixed_columns, len(scrollable)):
                cell = scrollable[index]
                cell_width = widths[index] if index < len(widths) else len(cell[0].text)  # the blank
                if pos + cell_width <= x2:
                    segments += cell
                else:
                    segments += line_crop(cell, 0, x2 - pos, cell_width)
                    pos = x2
                    break
                pos += cell_width
            if pos < x2:
                segments.append(Segment(" " * (x2 - pos), base_style))
            strip = Strip(Segment.simplify(segments), width)
        else:
            segments += line_crop([segment for cell in scrollable for segment in cell], x1 + fixed_width, x2, width)
            strip = Strip(segments)
            if strip.cell_length != width:
                strip = strip.adjust_cell_length(width, base_style)
            strip = Strip(Segment.simplify(strip), width)
        self._line_cache[cache_key] = strip
        return strip

    def _header_line(self, y: int, x1: int, x2: int, base_style: Style) -> Strip:
        """DataTable's header line, kept until the columns, the hover over the header
        or the styles change (DataTable drops it at every new view, as it does rows)."""
        hover = self.hover_coordinate
        key = (
            y,
            x1,
            x2,
            self.size.width,
            hover if hover.row < 0 else None,
            self.cursor_coordinate if self.cursor_type != "row" else None,
            base_style,
            self.cursor_type,
            self._show_hover_cursor,
            self._pseudo_class_state,
            tuple((column.label.plain, column.get_render_width(self)) for column in self.ordered_columns),
        )
        found = self._header_lines.get(key)
        if found is None:
            found = super()._render_line(y, x1, x2, base_style)
            if len(self._header_lines) > 16:
                self._header_lines.clear()
            self._header_lines[key] = found
        return found

    def _get_row_style(self, row_index: int, base_style: Style) -> Style:
        """DataTable's, cached until the styles change (it reads the CSS each row)."""
        if row_index < 0 or not self.zebra_stripes:
            return super()._get_row_style(row_index, base_style)
        key = (row_index % 2, self._pseudo_class_state)
        style = self._row_styles.get(key)
        if style is None:
            style = self._row_styles[key] = super()._get_row_style(row_index, base_style)
        return style

    def notify_style_update(self) -> None:
        self._row_styles = {}
        self._header_lines = {}
        self._frame_key = None
        super().notify_style_update()

    def _one_line_source(self, row_index: int, column_index: int) -> tuple[Text, object] | None:
        """The device's cell, kept until its cells change (a new version), not every view."""
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        if row_key is None or column_key is None:
            return None
        device = row_key.value or ""
        cell = self._cells(device)[column_key]
        return cell, (device, column_key, self._versions.get(device))

    def _frame_context(self, base_style: Style) -> dict[str, Any]:
        """What every data line of a frame shares (component styles, column widths),
        computed once per frame instead of once per line as DataTable does."""
        columns = self.ordered_columns
        widths = tuple(column.get_render_width(self) for column in columns)
        key = (
            base_style,
            widths,
            self.size.width,
            self.fixed_columns,
            self.show_cursor,
            self._show_hover_cursor,
            self._pseudo_class_state,
        )
        if key != self._frame_key:
            fixed = self.get_component_styles("datatable--fixed").rich_style  # its meta comes with the cell's
            table_width = sum(widths[self.fixed_columns :]) + self._row_label_column_width
            self._frame_key = key
            self._frame = {
                "widths": widths,
                "fixed_style": fixed,
                "remaining": max(0, self.size.width - table_width),
                "extend": {},
                "rows": {},
                "plain": {},
                "styles": {},
                "placed": {},
                "metas": {},
                "shared": {},
            }
        return self._frame

    def _render_line_in_row(  # type: ignore[override]
        self,
        row_key: RowKey,
        line_no: int,
        base_style: Style,
        cursor_location: Any,
        hover_location: Any,
    ) -> tuple[list[list[Segment]], list[list[Segment]]]:
        """DataTable's line of a row, for a data row of a row-cursor table without row
        labels: the same segments (a test compares both), built from the row's cell
        layout (kept per device until its cells or the column widths change) and one
        style per (cell style, place) shared by the frame, instead of Rich combining
        styles segment by segment; the line is kept until its device's cells, its
        place, the cursor or the frame change (not dropped at every tick)."""
        device = row_key.value if row_key is not self._header_row_key else None
        row_index = self.view.index.get(device, -1) if device is not None else -1
        if (
            row_index < 0
            or line_no != 0
            or self.cursor_type != "row"
            or (self._labelled_row_exists and self.show_row_labels)
        ):
            return super()._render_line_in_row(row_key, line_no, base_style, cursor_location, hover_location)
        frame = self._line_frame if base_style is self._line_style else None
        if frame is None:
            frame = self._frame_context(base_style)
            if base_style is self._line_style:
                self._line_frame = frame  # the rest of this frame's lines
        cursor = cursor_location.row == row_index
        hover = hover_location.row == row_index
        self._cells(device or "")  # builds them (and their version) if the row changed
        version = self._versions.get(device or "")
        key = (device, row_index, version, cursor, hover)
        rows: dict[tuple[object, ...], tuple[list[list[Segment]], list[list[Segment]]]] = frame["rows"]
        found = rows.get(key)
        if found is not None:
            return found
        layout = self._layout(device or "", version, frame)
        row_style = self._get_row_style(row_index, base_style)
        styles: dict[tuple[object, ...], Style] = frame["styles"]
        placed: dict[tuple[object, ...], Style] = frame["placed"]
        if len(styles) > 4096:
            styles.clear()
        if len(placed) > 8 * CACHED_ROWS:
            placed.clear()
        metas: dict[tuple[int, int, bool], Style] = frame["metas"]
        if len(metas) > 8 * CACHED_ROWS:
            metas.clear()
        fixed_style = frame["fixed_style"]
        fixed_columns = self.fixed_columns
        _Segment = Segment

        def styled(index: int, base: Style, in_fixed: bool) -> list[Segment]:
            out = []
            fixed = index < fixed_columns
            for text, style in layout[index]:
                style_key = (style, base, fixed, cursor, hover)
                combined = styles.get(style_key)
                if combined is None:
                    combined = styles[style_key] = self._cell_style(style, base, fixed, cursor, hover)
                place_key = (combined, row_index, index, in_fixed)
                final = placed.get(place_key)
                if final is None:  # the cell's (row, column) meta, as DataTable's
                    meta = metas.get((row_index, index, in_fixed))
                    if meta is None:
                        meta = metas[(row_index, index, in_fixed)] = Style.from_meta(
                            {"fixed": True, "row": row_index, "column": index}
                            if in_fixed
                            else {"row": row_index, "column": index}
                        )
                    final = placed[place_key] = combined + meta if combined is not None else meta
                out.append(_Segment(text, final))
            return out

        fixed_row = [styled(index, fixed_style, True) for index in range(fixed_columns)]
        scrollable_row = [styled(index, row_style, False) for index in range(len(layout))]
        extend_key = (row_index, cursor, hover)
        extend_style = frame["extend"].get(extend_key)
        if extend_style is None:
            component, _ = self._get_styles_to_render_cell(
                False, False, False, hover, cursor, self.show_cursor, self._show_hover_cursor, False, False
            )
            extend_style = (
                row_style + component + Style.from_meta({"row": row_index, "column": 0, "out_of_bounds": True})
            )
            if len(frame["extend"]) > 512:
                frame["extend"].clear()
            frame["extend"][extend_key] = extend_style
        scrollable_row.append([Segment(" " * frame["remaining"], extend_style)])
        if len(rows) > CACHED_ROWS:
            rows.clear()
        pair = rows[key] = (fixed_row, scrollable_row)
        return pair

    def _cell_style(self, style: Style | None, base: Style, fixed: bool, cursor: bool, hover: bool) -> Style:
        """The style DataTable gives a segment of style ``style`` in a cell, before its
        (row, column) meta: ``Styled(Padding(cell))`` over the row's base style and the
        cursor and hover component styles (``fixed``: a fixed column's)."""
        component, post = self._cell_component_styles(fixed, hover, cursor)
        combined = base + component + style  # as Segment.apply_style: the cell's style over the row's
        if post:
            combined = combined + post if combined else post
        return combined

    def _layout(self, device: str, version: int | None, frame: dict[str, Any]) -> list[list[tuple[str, Style | None]]]:
        """The row's cells as (text, style) pieces cut or padded to their columns, before
        any row, cursor or place style; kept per device and version for the frame."""
        key = (device, version)
        plain: dict[tuple[object, ...], list[list[tuple[str, Style | None]]]] = frame["plain"]
        found = plain.get(key)
        if found is None:
            found = self._plain_row(device, frame)
            if len(plain) > CACHED_ROWS:
                plain.clear()
            plain[key] = found
        return found

    def _plain_row(self, device: str, frame: dict[str, Any]) -> list[list[tuple[str, Style | None]]]:
        """A row's cells as :meth:`_render_cell` lays them out (text rendered, cut or
        padded to the column, the padding around), as (text, style) pieces."""
        cells = self._cells(device)
        widths = frame["widths"]
        console = self.app.console
        shared: dict[tuple[object, ...], list[tuple[str, Style | None]]] = frame["shared"]
        if len(shared) > 4096:
            shared.clear()
        out = []
        for index in range(min(len(widths), len(COLUMNS))):
            cell = cells[ColumnKey(COLUMNS[index][0])]
            key: tuple[object, ...] | None = None
            if index in SHARED_CELLS:  # few distinct texts (a status, a state): laid out once a frame
                key = (index, cell.plain, tuple(cell.spans), cell.style)
                found = shared.get(key)
                if found is not None:
                    out.append(found)
                    continue
            segments = one_line(cell, widths[index], self.cell_padding, console)
            if segments is None:  # a tab or a line break from data (a signal's name): escaped, on one line
                escaped = Text(visible(cell.plain), style=cell.style, end="")
                segments = one_line(escaped, widths[index], self.cell_padding, console) or []
            line = [(segment.text, segment.style) for segment in segments]
            if key is not None:
                shared[key] = line
            out.append(line)
        return out

    def _cells(self, device: str) -> dict[ColumnKey, Text]:
        """The device's cells, built when first drawn after its row changed."""
        view = self.view
        row = view.rows[device]
        mark, silenced = view.marks.get(device), view.silenced.get(device)
        cached = self._cell_cache.get(device)
        if cached is not None and cached[0] is row and cached[1] == (mark, silenced, self._palette):
            return cached[2]
        cells = row_cells(row, view.profiles.get(row.profile), self._palette, mark, silenced)
        mapping = {ColumnKey(key): cell for (key, _), cell in zip(COLUMNS, cells, strict=True)}
        self._version += 1
        self._versions[device] = self._version
        self._cell_cache.discard(device)  # Textual's LRUCache.set keeps a key's first value
        self._cell_cache.set(device, (row, (mark, silenced, self._palette), mapping))
        wider = False
        for index, cell in enumerate(cells):
            if cell.cell_len > self._drawn[index]:
                self._drawn[index] = cell.cell_len
                wider = True
        if wider and not self._widen_scheduled:  # not while drawing: after this frame
            self._widen_scheduled = True
            self.call_after_refresh(self._widen)
        return mapping

    def _fit_drawn_rows(self, crop: Region) -> None:
        """Build the cells of the rows this frame draws and widen the columns to them
        before any line is drawn, so the frame after a sort or a filter fits its rows
        (over :data:`EXACT_WIDTH_ROWS` devices no plan measures every row)."""
        header = self.header_height if self.show_header else 0
        top = self.scroll_offset.y
        for device in self.view.order[top + max(0, crop.y - header) : top + max(0, crop.bottom - header)]:
            self._cells(device)
        if self._widen_to_cells():  # this frame draws at the new widths; the virtual size follows after it
            self._update_count += 1
            self._dimensions_stale = True
            if not self._widen_scheduled:
                self._widen_scheduled = True
                self.call_after_refresh(self._widen)

    def _widen(self) -> None:
        self._widen_scheduled = False
        stale, self._dimensions_stale = self._dimensions_stale, False
        if self._fit_columns():
            self._changed()
        elif stale:  # widened while drawing: the scrollable width and the other lines
            self._update_dimensions(())
            self._changed()

    def _fit_columns(self) -> bool:
        """Columns as wide as their widest cell measured or drawn; True if one grew."""
        grew = self._widen_to_cells()
        if grew:
            self._update_dimensions(())
        return grew

    def _widen_to_cells(self) -> bool:
        """Each column's width up to its widest planned or drawn cell (and its label); True if one grew."""
        grew = False
        for column, planned, drawn in zip(self.ordered_columns, self.view.widths, self._drawn, strict=False):
            wanted = max(planned, drawn, column.label.cell_len)
            if wanted > column.content_width:
                column.content_width = wanted
                grew = True
        return grew

    def clear(self, columns: bool = False):  # type: ignore[no-untyped-def]
        self.view = FleetView()
        self._cell_cache.clear()
        self._versions.clear()
        self._changed()
        return self

    # ------------------------------------------------------------------ cursor
    def _moved(self) -> None:
        self.last_moved = time.monotonic()

    def action_cursor_up(self) -> None:
        self._moved()
        super().action_cursor_up()

    def action_cursor_down(self) -> None:
        self._moved()
        super().action_cursor_down()

    def action_page_up(self) -> None:
        self._moved()
        self._page(-1)

    def action_page_down(self) -> None:
        self._moved()
        self._page(1)

    def _page(self, direction: int) -> None:
        """DataTable's page keys with one-line rows, without walking every row."""
        self._set_hover_cursor(False)
        height = self.scrollable_content_region.height - (self.header_height if self.show_header else 0)
        target = max(0, min(self.row_count - 1, self.cursor_row + direction * height))
        self.scroll_relative(y=direction * height, animate=False, force=True)
        self.move_cursor(row=target, scroll=False)

    def action_scroll_top(self) -> None:
        self._moved()
        super().action_scroll_top()

    def action_scroll_bottom(self) -> None:
        self._moved()
        super().action_scroll_bottom()

    async def _on_click(self, event) -> None:  # type: ignore[no-untyped-def]
        self._moved()
        await super()._on_click(event)

    @property
    def cursor_device(self) -> str | None:
        order = self.view.order
        row = self.cursor_row
        return order[row] if 0 <= row < len(order) else None

    @property
    def settled(self) -> bool:
        """No view being planned or waiting to be: the table shows the last request."""
        return not self._planning and self._queued is None

    def shown_devices(self) -> list[str]:
        """The devices shown, in display order (what an export writes)."""
        return list(self.view.order)

    # ------------------------------------------------------------------ views
    def sync(
        self,
        snapshot: Snapshot,
        palette: Palette,
        *,
        flt: Filter | None = None,
        sort: str = "status",
        reverse: bool = False,
        marks: Mapping[str, Mark] | None = None,
        reorder: bool = True,
        now: bool = False,
    ) -> None:
        """Show ``snapshot`` under the screen's filter and sort.

        ``reorder`` sorts the rows; without it rows already shown keep their places
        and new ones go at the end (the operator is navigating). ``marks`` maps a
        device to (fault, state) for faults this console injected; the state (sent,
        pending, ACTIVE) is shown next to the fault's name. Over :attr:`inline_rows`
        devices the view is planned in a worker thread and shown when ready (a newer
        request replaces one not started yet), unless ``now`` (a key asked: the
        operator waits for it anyway; a view being planned meanwhile is dropped).
        """
        flt = flt or Filter()
        choice = (flt, sort, reverse)
        if choice != self._choice:
            self._choice = choice
            self._generation += 1  # a view planned under the old choice is dropped
        if palette != self._palette:
            self._palette = palette
            self._cell_cache.clear()
            self._versions.clear()
            self._changed()
        request = ViewRequest(snapshot, flt, sort, reverse, reorder, dict(marks or {}), self._generation)
        if now or (len(snapshot.devices) <= self.inline_rows and not self._planning):
            self._queued = None
            if self._planning:
                self._generation += 1  # the view being planned is older than this one
                request = replace(request, generation=self._generation)
            self._show(plan_view(self.view if self.view.seq >= 0 else None, request))
            return
        queued = self._queued
        if queued is not None and queued.reorder and not reorder:
            request = replace(request, reorder=True)  # a sort asked for and not planned yet
        self._queued = request
        if not self._planning:
            self._plan_next()

    def _plan_next(self) -> None:
        request, self._queued = self._queued, None
        if request is None:
            self._planning = False
            return
        self._planning = True
        self._job = (self.view if self.view.seq >= 0 else None, request)
        self.run_worker(
            self._plan_in_thread,
            thread=True,
            group="fleet-view",
            description="plan the fleet table",
            exit_on_error=False,
        )

    def _plan_in_thread(self) -> None:
        # The job is taken from the table, not bound to the worker: a finished Textual
        # worker is a reference cycle (worker, task, context), freed only by a full
        # garbage collection, and what it holds (at 10,000 devices a snapshot and a
        # view, ~20,000 objects a tick) would pile up until one, making each longer.
        job, self._job = self._job, None
        assert job is not None  # _plan_next sets it before it starts this worker (one at a time)
        previous, request = job
        try:
            view: FleetView | None = plan_view(previous, request)
        except Exception:  # a bug must not freeze the table: log it, plan the next one
            log.exception("planning the fleet table failed")
            view = None
        with contextlib.suppress(RuntimeError):  # the app is closing
            self.app.call_from_thread(self.call_after_refresh, self._planned, previous, view)

    def _planned(self, previous: FleetView | None, view: FleetView | None) -> None:
        """A worker's view, after the frame being prepared is painted: shown unless the
        choice changed meanwhile (then the queued request, made under the new choice,
        plans again).

        Not before that frame: a key pressed while the view was planned has its frame
        (a cursor move redraws two lines) painted first. Shown at once, the view made
        that frame redraw every line on screen with new rows (at 10,000 devices every
        row changes at every tick), and the key waited for it."""
        if view is not None and view.generation == self._generation and (previous is self.view or previous is None):
            self._show(view)
        self._plan_next()

    def _show(self, view: FleetView) -> None:
        """Swap ``view`` in, keeping the cursor on its device (on the first match when a
        new filter hid it; on the last row when the rows it was on are gone)."""
        keep = self.cursor_device
        old = self.view
        self.view = view
        self.updates += len(view.changed)
        if not self._fit_columns() and len(view.order) != len(old.order):
            self._new_row_count()
        self._changed()
        if keep is not None and keep in view.index:
            index = view.index[keep]
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False)
        elif view.order and view.filter != old.filter:  # a new filter hid it: the first match
            self.move_cursor(row=0, animate=False)
        elif view.order and self.cursor_row >= len(view.order):
            self.move_cursor(row=len(view.order) - 1, animate=False)
        self.post_message(self.ViewChanged(self))

    def _new_row_count(self) -> None:
        """The virtual height for a new number of rows (a filter, devices joining),
        without a layout pass when the scrollbars stay as they are: a layout repaints
        every widget on the screen, at every filter keystroke. Textual's own way for
        a size that needs no layout (``Widget._size_updated``)."""
        header = self.header_height if self.show_header else 0
        size = Size(self.virtual_size.width, len(self.view.order) + header)
        if not self.is_mounted or not self.size.height:
            self._update_dimensions(())
            return
        shown = (self.show_vertical_scrollbar, self.show_horizontal_scrollbar)
        self.set_reactive(Widget.virtual_size, size)
        self._scroll_update(size)
        if (self.show_vertical_scrollbar, self.show_horizontal_scrollbar) != shown:
            self.refresh(layout=True)  # a scrollbar comes or goes: the regions change

    def _changed(self) -> None:
        self._update_count += 1
        self.refresh()
