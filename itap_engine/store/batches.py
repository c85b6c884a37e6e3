"""The pieces of the store's write path that make every row end somewhere, once.

* **Conflicts** (:func:`find_conflicts`). ``INSERT ... ON CONFLICT DO NOTHING`` tells
  how many rows of a batch were new, not which of the others are true duplicates and
  which are re-deliveries with other values. When a batch inserted fewer rows than it
  has, one SELECT per batch (its keys joined on the primary key: ``unnest`` of two
  arrays on PostgreSQL, a temporary table on SQLite) reads the stored rows back in the
  same transaction, and pandas compares them with the
  batch: rows equal to the stored ones are duplicates (or were inserted just now),
  the others are conflicts. A batch of new rows costs no extra query; a conflict never
  costs a SELECT of its own. Only the columns the input carries are compared.
* **Quarantine keys** (:func:`row_keys`) and **raw caps** (:func:`cap_raw`): a
  quarantined row is keyed by the sha256 of its source, line, reason and raw text, so
  re-ingesting a file (or re-running after a crash) skips rows already quarantined;
  raw text beyond the cap is stored as its head, length and sha256.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

__all__ = ["cap_raw", "find_conflicts", "replace_rows", "row_keys"]

_KEYS = "itap_batch_keys"
"""Temporary table (per connection) holding the keys of the batch being checked."""


def cap_raw(payload: str, limit: int) -> str:
    """``payload`` if it fits in ``limit`` bytes, else JSON with its head, length and sha256.

    A reader line (``{"line": text}``) is measured and hashed as the line itself, so
    the sha256 is the one ``sha256sum`` gives for that line.
    """
    if len(payload) <= limit // 4:
        return payload
    data = payload.encode("utf-8")
    if len(data) <= limit:
        return payload
    try:
        record = json.loads(payload)
    except ValueError:
        record = None
    if isinstance(record, dict) and set(record) == {"line"} and isinstance(record["line"], str):
        data = record["line"].encode("utf-8")
    head = data[: limit // 4].decode("utf-8", errors="ignore")
    return json.dumps(
        {"head": head, "length": len(data), "sha256": hashlib.sha256(data).hexdigest(), "truncated": True},
        ensure_ascii=False,
    )


def row_keys(source: str, lines: Sequence[Any], reasons: Sequence[str], raws: Sequence[str]) -> list[str]:
    """One key per quarantined row: sha256 of source, line, reason and raw text.

    Identical rows without a line number (a frame handed in by the engine) are told
    apart by their occurrence among identical rows, so they are kept as many times as
    they came, and again not at all when the same input comes again.
    """
    seen: dict[str, int] = {}
    keys = []
    prefix = hashlib.sha256(source.encode("utf-8", errors="surrogatepass")).hexdigest()
    for line, reason, raw in zip(lines, reasons, raws):
        base = hashlib.sha256(
            f"{prefix}\x1f{'' if line is None else line}\x1f{reason}\x1f{raw}".encode("utf-8", errors="surrogatepass")
        ).hexdigest()
        count = seen.get(base, 0)
        seen[base] = count + 1
        keys.append(base if count == 0 else hashlib.sha256(f"{base}#{count}".encode()).hexdigest())
    return keys


_TEXT = frozenset({"device_id", "state", "fault"})


def _same(new: pd.Series, old: pd.Series, text: bool) -> np.ndarray:
    """Equal values, or both missing; numbers compared as floats, vectorised."""
    a, b = new.to_numpy(dtype=object), old.to_numpy(dtype=object)
    if not text:
        try:
            fa, fb = np.array(a, dtype=float), np.array(b, dtype=float)  # None -> NaN
        except (TypeError, ValueError):
            pass
        else:
            return (fa == fb) | (np.isnan(fa) & np.isnan(fb))
    missing_a, missing_b = pd.isna(a), pd.isna(b)
    equal = np.zeros(len(a), dtype=bool)
    both = ~missing_a & ~missing_b
    if both.any():
        equal[both] = [x == y for x, y in zip(a[both], b[both])]
    return (missing_a & missing_b) | equal


def _show(value: Any) -> str:
    return "NULL" if value is None or (isinstance(value, float) and np.isnan(value)) else repr(value)


def find_conflicts(
    conn: sa.Connection,
    table: sa.Table,
    columns: Mapping[str, list[Any]],
    start: int,
    stop: int,
    compare: Sequence[str],
) -> pd.DataFrame:
    """Rows ``start:stop`` of ``columns`` whose key is stored with other values.

    Returns ``position`` (index into ``columns``), ``device_id``, ``ts`` (epoch ms) and
    ``reason`` (which values differ, stored -> new).
    """
    batch = pd.DataFrame(
        {
            "device_id": columns["device_id"][start:stop],
            "ts": columns["ts"][start:stop],
            **{c: pd.Series(columns[c][start:stop], dtype=object) for c in compare},
        }
    )
    batch["position"] = np.arange(start, stop)
    # the stored rows are read by a join of the batch's keys on the primary key: exactly
    # the rows that share a key, however sparse the batch is against what is stored (a
    # time-range query would read every stored row in between)
    fetched = _stored_rows(conn, table, columns["device_id"][start:stop], columns["ts"][start:stop], compare)
    empty = pd.DataFrame({"position": [], "device_id": [], "ts": [], "reason": []})
    if not fetched:
        return empty
    # column-wise from plain DB-API tuples (pandas probes SQLAlchemy rows for keys: slow)
    grid = np.array(fetched, dtype=object)
    names = ["device_id", "ts", *compare]
    stored = pd.DataFrame({name: grid[:, k] for k, name in enumerate(names)})
    stored["device_id"] = stored["device_id"].astype(batch["device_id"].dtype)
    stored["ts"] = stored["ts"].astype(np.int64)
    both = batch.merge(stored, on=["device_id", "ts"], suffixes=("", "__stored"))
    if both.empty:
        return empty
    same = np.ones(len(both), dtype=bool)
    differs: dict[str, np.ndarray] = {}
    for c in compare:
        eq = _same(both[c], both[f"{c}__stored"], c in _TEXT)
        differs[c] = ~eq
        same &= eq
    hits = np.flatnonzero(~same)
    if not len(hits):
        return empty
    reasons = []
    for i in hits:
        changes = ", ".join(
            f"{c} {_show(both[f'{c}__stored'].iat[i])} -> {_show(both[c].iat[i])}" for c in compare if differs[c][i]
        )
        when = pd.Timestamp(int(both["ts"].iat[i]), unit="ms").isoformat()
        reasons.append(f"conflict: ({both['device_id'].iat[i]!r}, {when}) is stored with other values: {changes}")
    return pd.DataFrame(
        {
            "position": both["position"].to_numpy()[hits],
            "device_id": both["device_id"].to_numpy()[hits],
            "ts": both["ts"].to_numpy()[hits].astype(np.int64),
            "reason": reasons,
        }
    )


def _stored_rows(
    conn: sa.Connection, table: sa.Table, devices: Sequence[Any], stamps: Sequence[Any], compare: Sequence[str]
) -> list[tuple[Any, ...]]:
    """The stored ``device_id, ts, *compare`` of the given keys, in one SELECT.

    PostgreSQL: the keys are bound as two arrays and ``unnest``-ed (one statement, no
    temporary table). SQLite: they go to a temporary table of the connection (sqlite3's
    executemany, in the same transaction), joined on the primary key.
    """
    names = ", ".join(["r.device_id", "r.ts", *(f"r.{conn.dialect.identifier_preparer.quote(c)}" for c in compare)])
    target = conn.dialect.identifier_preparer.format_table(table)
    on = "r.device_id = k.device_id AND r.ts = k.ts"
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if conn.dialect.name == "postgresql":
            cursor.execute(
                f"SELECT {names} FROM {target} r JOIN unnest(%s::varchar[], %s::bigint[]) AS k(device_id, ts) ON {on}",
                (list(devices), list(stamps)),
            )
            return cursor.fetchall()  # type: ignore[return-value]
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_KEYS} (device_id VARCHAR(128), ts BIGINT)")
        cursor.execute(f"DELETE FROM {_KEYS}")
        cursor.executemany(f"INSERT INTO {_KEYS} (device_id, ts) VALUES ({mark}, {mark})", list(zip(devices, stamps)))
        cursor.execute(f"SELECT {names} FROM {target} r JOIN {_KEYS} k ON {on}")
        rows = cursor.fetchall()
        cursor.execute(f"DELETE FROM {_KEYS}")
        return rows  # type: ignore[return-value]
    finally:
        cursor.close()


def replace_rows(
    conn: sa.Connection,
    table: sa.Table,
    columns: Mapping[str, list[Any]],
    positions: Sequence[int],
    compare: Sequence[str],
) -> None:
    """UPDATE the stored rows at ``positions`` with their new values (one executemany)."""
    stmt = (
        sa.update(table)
        .where(table.c.device_id == sa.bindparam("k_device"), table.c.ts == sa.bindparam("k_ts"))
        .values({c: sa.bindparam(f"v_{c}") for c in compare})
    )
    params = [
        {"k_device": columns["device_id"][p], "k_ts": columns["ts"][p], **{f"v_{c}": columns[c][p] for c in compare}}
        for p in positions
    ]
    conn.execute(stmt, params)
