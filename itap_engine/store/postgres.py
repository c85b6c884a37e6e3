"""PostgreSQL built for time series: time partitions, BRIN indexes and COPY ingestion.

The :class:`~itap_engine.store.sql.Store` uses this module when its URL names
PostgreSQL; SQLite keeps its plain tables and executemany, and no caller sees the
difference.

* **Time partitions.** Readings tables and the ``score`` table are declared
  ``PARTITION BY RANGE (ts)`` (``ts`` is epoch ms, so ranges are integers). Each
  partition covers ``[database] partition_hours`` (24 by default), aligned on the
  epoch. :meth:`TimePartitions.ensure` creates the partitions a batch needs before
  it is inserted; a ``DEFAULT`` partition catches anything else, and a partition
  created later over rows that landed there takes them over. The primary keys
  already contain ``ts``, as PostgreSQL requires of a partitioned table's unique
  constraints, so ``ON CONFLICT (device_id, ts)`` keeps its meaning.
* **BRIN on ts.** One small block-range index per partition (declared once on the
  parent): reads by time range skip blocks without a second B-tree to maintain.
* **Retention drops partitions.** :meth:`TimePartitions.drop_before` drops every
  partition whose upper bound is at or before the cut-off (all its rows are older)
  and deletes only the old rows of the default partition; a partition that straddles
  the cut-off is kept until it is wholly older, so up to ``partition_hours`` more than
  the retention is kept.
* **COPY.** :func:`copy_insert` streams a batch into a temporary staging table with
  binary ``COPY`` and moves it with one ``INSERT ... SELECT ... ON CONFLICT DO
  NOTHING``; the statement's row count is the inserted count, as with executemany.
  A batch that cannot conflict (no key twice in it, and :func:`any_stored` finds no
  stored row of any of its devices within that device's time span in the batch: the usual case of new data) is
  copied straight into the table (:func:`copy_new`), which saves the staging table
  and the conflict checks, more than half of the work; if another writer stored one
  of its keys in between, the unique violation sends the batch the staging way.

Creating partitions is serialised between processes by a transaction-level advisory
lock, so two engines that need the same day do not collide.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)

PARTITION_BY = "RANGE (ts)"
"""The ``postgresql_partition_by`` of every time-partitioned table."""

_LOCK_SPACE = 0x17A9 << 32
_BOUNDS = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")


def advisory_key(name: str) -> int:
    """A stable bigint advisory-lock key for a name (crc32 in ITAP's key space)."""
    return _LOCK_SPACE | zlib.crc32(name.encode())


def is_partitioned(conn: sa.Connection, table: str) -> bool:
    """True when ``table`` (in the current schema) is a partitioned table."""
    row = conn.execute(
        sa.text(
            "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = :t AND n.nspname = current_schema()"
        ),
        {"t": table},
    ).first()
    return row is not None and row[0] == "p"


def schema_lock(conn: sa.Connection) -> None:
    """Serialise schema changes (CREATE TABLE, partitions) with other processes until
    the transaction ends."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": advisory_key("itap.schema")})


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class TimePartitions:
    """The time partitions of one PostgreSQL database, cached per table.

    Args:
        span_ms: the length of a partition, in milliseconds.
    """

    def __init__(self, span_ms: int) -> None:
        self.span_ms = int(span_ms)
        self._ranges: dict[str, list[tuple[int, int]]] = {}
        self.partitioned: set[str] = set()
        """Tables that are partitioned (a database made before partitioning has plain ones)."""

    # ------------------------------------------------------------------ schema
    def setup(self, conn: sa.Connection, table: str) -> None:
        """Default partition and BRIN index of a partitioned table (idempotent)."""
        if not is_partitioned(conn, table):
            self.partitioned.discard(table)
            return
        self.partitioned.add(table)
        conn.execute(
            sa.text(f"CREATE TABLE IF NOT EXISTS {_quote(table + '_default')} PARTITION OF {_quote(table)} DEFAULT")
        )
        conn.execute(
            sa.text(f"CREATE INDEX IF NOT EXISTS {_quote(table + '_ts_brin')} ON {_quote(table)} USING brin (ts)")
        )

    def partitions(self, conn: sa.Connection, table: str) -> list[tuple[str, int, int]]:
        """(name, from, to) of each range partition of ``table``, oldest first."""
        rows = conn.execute(
            sa.text(
                "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
                "JOIN pg_namespace n ON n.oid = p.relnamespace "
                "WHERE p.relname = :t AND n.nspname = current_schema()"
            ),
            {"t": table},
        ).fetchall()
        out = []
        for name, bound in rows:
            match = _BOUNDS.search(bound or "")
            if match:
                out.append((str(name), int(match.group(1)), int(match.group(2))))
        return sorted(out, key=lambda r: r[1])

    def _load(self, conn: sa.Connection, table: str) -> list[tuple[int, int]]:
        ranges = [(lo, hi) for _name, lo, hi in self.partitions(conn, table)]
        self._ranges[table] = ranges
        return ranges

    # ------------------------------------------------------------------ on demand
    def _gaps(self, ranges: Sequence[tuple[int, int]], buckets: Iterable[int]) -> list[tuple[int, int]]:
        """The parts of the buckets' spans ``[b, b + span)`` no partition covers."""
        gaps = []
        for lo in sorted(set(buckets)):
            hi = lo + self.span_ms
            start = lo
            for r_lo, r_hi in ranges:
                if r_hi <= start or r_lo >= hi:
                    continue
                if r_lo > start:
                    gaps.append((start, r_lo))
                start = max(start, r_hi)
                if start >= hi:
                    break
            if start < hi:
                gaps.append((start, hi))
        return gaps

    def ensure(self, engine: sa.Engine, table: str, ts_ms: Any) -> int:
        """Create the partitions that rows with these times (epoch ms) need; returns
        how many were created. A no-op for a table that is not partitioned, and
        (after the first call) a set lookup when every partition exists."""
        import numpy as np

        if table not in self.partitioned:
            return 0
        values = np.asarray(ts_ms, dtype=np.int64)
        if values.size == 0:
            return 0
        buckets = np.unique(values // self.span_ms) * self.span_ms
        ranges = self._ranges.get(table)
        if ranges is not None and not self._gaps(ranges, buckets.tolist()):
            return 0
        created = 0
        with engine.begin() as conn:
            schema_lock(conn)
            for lo, hi in self._gaps(self._load(conn, table), buckets.tolist()):
                self._create(conn, table, lo, hi)
                created += 1
        if created:
            with engine.connect() as conn:
                self._load(conn, table)
        return created

    def _create(self, conn: sa.Connection, table: str, lo: int, hi: int) -> None:
        """One partition ``[lo, hi)``; rows of that range already in the default
        partition move into it (PostgreSQL refuses the partition otherwise)."""
        stamp = datetime.fromtimestamp(lo / 1000, UTC).strftime("%Y%m%d%H%M")
        name = f"{table}_p{stamp}" if hi - lo == self.span_ms else f"{table}_p{stamp}_{(hi - lo) // 60000}m"
        default = _quote(table + "_default")
        stranded = conn.execute(
            sa.text(f"SELECT EXISTS (SELECT 1 FROM {default} WHERE ts >= :lo AND ts < :hi)"), {"lo": lo, "hi": hi}
        ).scalar()
        if stranded:
            conn.execute(sa.text(f"CREATE TEMP TABLE itap_moved (LIKE {_quote(table)}) ON COMMIT DROP"))
            conn.execute(
                sa.text(
                    f"WITH moved AS (DELETE FROM {default} WHERE ts >= :lo AND ts < :hi RETURNING *) "
                    "INSERT INTO itap_moved SELECT * FROM moved"
                ),
                {"lo": lo, "hi": hi},
            )
        conn.execute(
            sa.text(
                f"CREATE TABLE {_quote(name)} PARTITION OF {_quote(table)} FOR VALUES FROM ({int(lo)}) TO ({int(hi)})"
            )
        )
        if stranded:
            conn.execute(sa.text(f"INSERT INTO {_quote(table)} SELECT * FROM itap_moved"))
            conn.execute(sa.text("DROP TABLE itap_moved"))
        log.info("created partition %s [%d, %d)%s", name, lo, hi, " from the default partition" if stranded else "")

    # ------------------------------------------------------------------ retention
    def drop_before(self, engine: sa.Engine, table: str, cutoff_ms: int, devices: Sequence[str]) -> tuple[int, int]:
        """Retention for ``devices``: drop the partitions wholly older than ``cutoff_ms``
        that hold rows of no other device, and delete those devices' older rows from the
        partitions that do (an imported history shares its days with nobody's clock but
        its own) and from the default partition. Returns (partitions dropped, rows deleted).
        """
        if table not in self.partitioned or not devices:
            return 0, 0
        ids = list(devices)
        dropped = deleted = 0
        with engine.begin() as conn:
            schema_lock(conn)
            for name, _lo, hi in self.partitions(conn, table):
                if hi > cutoff_ms:
                    continue
                other = conn.execute(
                    sa.text(f"SELECT 1 FROM {_quote(name)} WHERE NOT (device_id = ANY(:ids)) LIMIT 1"), {"ids": ids}
                ).first()
                if other is None:
                    conn.execute(sa.text(f"DROP TABLE {_quote(name)}"))
                    dropped += 1
                else:
                    deleted += max(
                        conn.execute(
                            sa.text(f"DELETE FROM {_quote(name)} WHERE device_id = ANY(:ids) AND ts < :c"),
                            {"ids": ids, "c": int(cutoff_ms)},
                        ).rowcount,
                        0,
                    )
            deleted += max(
                conn.execute(
                    sa.text(f"DELETE FROM {_quote(table + '_default')} WHERE device_id = ANY(:ids) AND ts < :c"),
                    {"ids": ids, "c": int(cutoff_ms)},
                ).rowcount,
                0,
            )
            self._load(conn, table)
        if dropped:
            log.info("retention dropped %d partitions of %s before %d", dropped, table, cutoff_ms)
        return dropped, deleted


# ---------------------------------------------------------------------- COPY
_COPY_TYPES = {
    sa.BigInteger: "int8",
    sa.SmallInteger: "int2",
    sa.Integer: "int4",
    sa.Float: "float8",
    sa.String: "text",
    sa.Text: "text",
    sa.Boolean: "bool",
}


def copy_type(column: sa.Column[Any]) -> str:
    """The PostgreSQL type name binary COPY writes for a column."""
    kind_of = column.type
    if isinstance(kind_of, sa.types.TypeDecorator):  # e.g. SQLModel's AutoString
        kind_of = kind_of.impl_instance
    for kind, name in _COPY_TYPES.items():
        if isinstance(kind_of, kind):
            return name
    raise TypeError(f"no COPY type for column {column.name} ({column.type})")


def _copy(cursor: Any, target: str, table: sa.Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Binary COPY of ``rows`` (tuples in ``columns`` order) into ``target``."""
    cols = ", ".join(_quote(c) for c in columns)
    with cursor.copy(f"COPY {_quote(target)} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([copy_type(table.c[c]) for c in columns])
        for row in rows:
            copy.write_row(row)


class BatchKeys:
    """The (device_id, ts) keys of rows about to be inserted, as integers: which rows
    repeat an earlier key, and each device's time span in a slice of the rows.

    Args:
        device_ids: the rows' device ids.
        ts: the rows' times, epoch ms.
    """

    def __init__(self, device_ids: Any, ts: Any) -> None:
        import numpy as np
        import pandas as pd

        codes, self.devices = pd.factorize(pd.Series(device_ids), sort=False)
        self.codes = codes.astype(np.int64)
        self.ts = np.asarray(ts, dtype=np.int64)
        lo = int(self.ts.min()) if self.ts.size else 0
        width = (int(self.ts.max()) - lo + 1) if self.ts.size else 1
        if width * max(1, len(self.devices)) < 2**62:
            repeated = pd.Series(self.codes * width + (self.ts - lo)).duplicated()
        else:  # times too far apart to pack with the device into one integer
            repeated = pd.DataFrame({"d": self.codes, "t": self.ts}).duplicated()
        self.repeated = repeated.to_numpy()
        """Per row: an earlier row has the same key."""

    def spans(self, start: int, stop: int) -> list[tuple[str, int, int]]:
        """(device_id, first ts, last ts) of each device among rows ``start:stop``."""
        import pandas as pd

        grouped = pd.Series(self.ts[start:stop]).groupby(self.codes[start:stop]).agg(["min", "max"])
        names = [str(d) for d in self.devices.take(grouped.index.to_numpy())]
        return list(zip(names, grouped["min"].tolist(), grouped["max"].tolist(), strict=True))


def any_stored(
    conn: sa.Connection,
    table: sa.Table,
    spans: Sequence[tuple[str, int, int]],
    fixed: Mapping[str, Any] | None = None,
) -> bool:
    """Whether ``table`` holds a row of a device within that device's span: ``spans``
    are (device_id, first ts, last ts); ``fixed`` gives the value of any key column
    before ``device_id`` (the ``profile`` of a score), so each probe is a
    primary-key range.

    First whether any row at all lies in the spans' whole time range (the BRIN index
    and the partitions answer that at once: new data is newer than everything), then,
    only if one does, one primary-key probe per device (``LATERAL ... LIMIT 1``, so
    the planner cannot turn it into a scan of the table).
    """
    if not spans:
        return False
    raw: Any = conn.connection.dbapi_connection  # psycopg's connection
    ids, los, his = (list(x) for x in zip(*spans, strict=True))
    name = _quote(table.name)
    fixed = dict(fixed or {})
    same = "".join(f" AND t.{_quote(c)} = %s" for c in fixed)
    with raw.cursor() as cursor:
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {name} t WHERE t.ts >= %s AND t.ts <= %s{same})",
            (int(min(los)), int(max(his)), *fixed.values()),
        )
        row = cursor.fetchone()
        if not (row and row[0]):
            return False
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM unnest(%s::text[], %s::int8[], %s::int8[]) AS r(d, lo, hi) "
            f"CROSS JOIN LATERAL (SELECT 1 FROM {name} t WHERE t.device_id = r.d AND t.ts >= r.lo AND t.ts <= r.hi"
            f"{same} LIMIT 1) AS hit)",
            (ids, [int(v) for v in los], [int(v) for v in his], *fixed.values()),
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def widen_device_spans(conn: sa.Connection, ids: Sequence[str], firsts: Sequence[int], lasts: Sequence[int]) -> None:
    """Widen ``device.first_ts`` / ``last_ts`` to include each device's new span, in
    one statement (an executemany UPDATE costs a round trip per device: 0.9 s for
    10,000 devices). LEAST and GREATEST skip NULL, so a first span just sets them."""
    raw: Any = conn.connection.dbapi_connection  # psycopg's connection
    with raw.cursor() as cursor:
        cursor.execute(
            "UPDATE device AS d SET first_ts = LEAST(d.first_ts, s.lo), last_ts = GREATEST(d.last_ts, s.hi) "
            "FROM unnest(%s::text[], %s::int8[], %s::int8[]) AS s(id, lo, hi) WHERE d.id = s.id",
            (list(ids), [int(v) for v in firsts], [int(v) for v in lasts]),
        )


def copy_new(conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
    """COPY straight into ``table``, for rows known to be new (no staging, no conflict
    check); a key that exists after all raises ``psycopg.errors.UniqueViolation`` and
    the caller's transaction is lost. Returns the rows inserted."""
    raw: Any = conn.connection.dbapi_connection  # psycopg's connection: COPY
    with raw.cursor() as cursor:
        _copy(cursor, table.name, table, columns, rows)
    return len(rows)


def copy_insert(
    conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[Sequence[Any]], keys: Sequence[str]
) -> int:
    """Insert ``rows`` (tuples in ``columns`` order) skipping existing ``keys``:
    binary COPY into a temporary staging table, then one ``INSERT ... SELECT ... ON
    CONFLICT DO NOTHING``. Runs in the caller's transaction; returns rows inserted.

    Rows are moved in key order, so the primary key's B-tree is written in order.
    Duplicate keys inside ``rows`` count once, as with executemany.
    """
    raw: Any = conn.connection.dbapi_connection  # psycopg's connection: COPY
    staging = f"itap_stage_{table.name}"
    cols = ", ".join(_quote(c) for c in columns)
    with raw.cursor() as cursor:
        # created once per connection and session; emptied at each commit
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_quote(staging)} (LIKE {_quote(table.name)} INCLUDING DEFAULTS) "
            "ON COMMIT DELETE ROWS"
        )
        _copy(cursor, staging, table, columns, rows)
        order = ", ".join(_quote(k) for k in keys)
        cursor.execute(
            f"INSERT INTO {_quote(table.name)} ({cols}) SELECT {cols} FROM {_quote(staging)} ORDER BY {order} "
            f"ON CONFLICT ({order}) DO NOTHING"
        )
        inserted = cursor.rowcount
    return max(int(inserted), 0)
