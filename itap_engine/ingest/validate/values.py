"""Constants and value helpers shared by the validation checks: how a value is read
(numbers, epoch timestamps, missing-value tokens), how it is shown in a reason, and how
a rejected row is kept as JSON."""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

CHECKS = (
    "malformed",
    "device_id",
    "timestamp",
    "future",
    "numeric",
    "non_finite",
    "range",
    "state",
    "label",
    "duplicate",
    "order",
)
"""Checks that reject rows, in the order their reasons are written."""

REJECTION_RATE_ALERT = 0.05
"""Share of rejected rows in one input above which a warning alert is raised."""
MAX_DEVICE_ID = 128
MAX_LABEL = 64
HISTORY_LIMIT = 5_000_000
"""Accepted keys kept per input to tell a duplicate from an out-of-order row. Beyond
this, the oldest keys are dropped: such rows are still rejected, but as 'order'."""
META_COLUMNS = ("_line", "_raw", "_error", "_check")
"""Columns a reader may add: source line number, raw line text, reader error and
the check to file that error under (default "malformed"). Rows with ``_error`` are
rejected for that reason alone."""
LABELS = ("fault", "anomaly", "changepoint")
MISSING_TOKENS = frozenset({"", "nan", "na", "n/a", "null", "none"})
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
INVISIBLE = re.compile("[\u202a-\u202e\u2066-\u2069\u200b-\u200f\u061c\ufeff]")
EPOCH = re.compile(r"^\s*-?\d{9,13}(\.\d+)?\s*$")
MIN_TS_MS = -2208988800000  # 1900-01-01
INT64_MIN = np.iinfo(np.int64).min
TEXT = pd.Series(["text"]).dtype
"""The dtype pandas gives text columns (``str`` on pandas 3, object before)."""


Builder = Callable[[np.ndarray], np.ndarray]
"""Writes the reasons of the rows at the given positions."""


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def iso(ms: np.ndarray) -> np.ndarray:
    """Epoch ms as ISO strings, without a ``.000`` millisecond part."""
    text = np.datetime_as_string(np.asarray(ms, dtype=np.int64).astype("datetime64[ms]"), unit="ms")
    return np.char.replace(text.astype(str), ".000", "").astype(object)


def fmt(value: float) -> str:
    return f"{value:g}"


def text_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """device_id, state and fault with one dtype whatever the chunk (None stays missing)."""
    for name in ("device_id", "state", "fault"):
        if name in frame.columns and frame[name].dtype != TEXT:
            frame[name] = frame[name].astype(TEXT) if len(frame) else pd.Series([], dtype=TEXT)
    return frame


def safe_text(text: str, limit: int) -> str:
    """Text fit for any database column: control characters escaped, length capped."""
    if CONTROL.search(text):
        text = CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text[:limit]


def reason(fn: Callable[[np.ndarray], list[str]]) -> Builder:
    return lambda pos: np.array(fn(pos), dtype=object)


def device_name(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@functools.lru_cache(maxsize=65_536)
def device_problem(name: str) -> str | None:
    if name == "" or (is_missing_text(name) and name.strip() == ""):
        return "device_id is empty"
    if len(name) > MAX_DEVICE_ID:
        return f"device_id is longer than {MAX_DEVICE_ID} characters ({len(name)}): {short(name)}"
    if CONTROL.search(name):
        return f"device_id={short(name)} contains control characters"
    if INVISIBLE.search(name):  # bidi overrides / zero-width: the id would not read as it is
        return f"device_id={short(name)} contains bidirectional or zero-width characters"
    if name != name.strip():
        return f"device_id={short(name)} has leading or trailing whitespace"
    return None


NORMAL_LABELS = frozenset({"normal", "0", "0.0"})


def is_normal_label(value: Any) -> bool:
    """A ground-truth label value that means "normal" (``normal``, ``0``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value == 0
    return isinstance(value, str) and value.strip().lower() in NORMAL_LABELS


def is_missing_text(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, str):
        return value.strip().lower() in MISSING_TOKENS
    return False


def to_float(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Values as float64 (NaN = missing) and a mask of values that are not numbers."""
    if pd.api.types.is_bool_dtype(column.dtype):
        return column.astype(float).to_numpy(), np.zeros(len(column), dtype=bool)
    if pd.api.types.is_numeric_dtype(column.dtype):
        return column.to_numpy(dtype=float, na_value=np.nan), np.zeros(len(column), dtype=bool)
    vals = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    unparsed = np.isnan(vals) & column.notna().to_numpy()
    if unparsed.any():
        raw = column.to_numpy(dtype=object)
        idx = np.flatnonzero(unparsed)
        unparsed[idx] = [not is_missing_text(v) and not is_nan_number(v) for v in raw[idx]]
    return vals, unparsed


def is_nan_number(value: Any) -> bool:
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def epoch_to_ms(values: np.ndarray) -> np.ndarray:
    """Epoch numbers as ms: seconds below 1e11 (until year 5138), milliseconds above."""
    values = np.asarray(values, dtype=float)
    scaled = np.where(np.abs(values) < 1e11, values * 1000.0, values)
    return np.clip(np.round(scaled), -9.2e18, 9.2e18).astype(np.int64)


def empty_rejected() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "reason": pd.Series([], dtype=object),
            "check": pd.Series([], dtype=object),
            "line": pd.Series([], dtype="Int64"),
            "device_id": pd.Series([], dtype=object),
            "ts": pd.Series([], dtype="Int64"),
            "raw": pd.Series([], dtype=object),
        }
    )


def json_value(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else (None if math.isnan(value) else str(value))
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (pd.Timestamp, datetime, np.datetime64)):
        return str(pd.Timestamp(value))
    return value


def raw_json(frame: pd.DataFrame, pos: np.ndarray, names: dict[str, str] | None = None) -> np.ndarray:
    """The rejected rows as received, as JSON objects (the reader's raw line if given)."""
    columns = [c for c in frame.columns if c not in META_COLUMNS]
    records = frame.iloc[pos][columns].to_dict("records")
    names = names or {}
    out = np.array(
        [
            json.dumps(
                {names.get(str(k), str(k)): json_value(v) for k, v in r.items()}, default=str, ensure_ascii=False
            )
            for r in records
        ],
        dtype=object,
    )
    if "_raw" in frame.columns:
        given = frame["_raw"].to_numpy(dtype=object)[pos]
        has = pd.notna(given)
        out[has] = [json.dumps(v if isinstance(v, dict) else {"line": str(v)}, ensure_ascii=False) for v in given[has]]
    return out


def examples(rejected: pd.DataFrame, limit: int) -> list[dict[str, Any]]:
    head = rejected.head(limit)
    return [
        {
            "line": None if pd.isna(line) else int(line),
            "device_id": device,
            "check": check,
            "reason": reason,
            "raw": raw,
        }
        for line, device, check, reason, raw in zip(
            head["line"].tolist(),
            head["device_id"].tolist(),
            head["check"].tolist(),
            head["reason"].tolist(),
            head["raw"].tolist(),
        )
    ]
