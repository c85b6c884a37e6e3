"""Validation of telemetry before anything is stored.

Every input row gets exactly one outcome: *accepted* (it goes to the readings table)
or *rejected* (it goes to quarantine with a reason that names the check and the
field, e.g. ``temp_c=999.0 outside valid range [-40, 200]``). A missing reading
(NaN, empty) is data, not an error: a sensor dropout is a fault the product must see,
so it is stored as NULL and counted, and a high missing-value rate per device and
signal raises a validation *alert* instead.

Why it is built this way:

* **Vectorised.** Checks run over whole columns with pandas/numpy. Device ids and
  states are checked once per distinct value (``pd.factorize``), not once per row.
  Python only touches rejected rows (to write their reason and their raw JSON).
* **Streaming.** A :class:`Validator` validates one input chunk by chunk and keeps
  what the checks need across chunks (last accepted timestamp and accepted keys per
  device, missing-value counts), so validating a file in chunks gives exactly the
  same outcome as validating it whole.
* **Per-row checks before key checks.** Row-local checks (device id, timestamp,
  numbers, ranges, labels) run first; only rows that pass them take part in the key
  checks (duplicate ``(device_id, ts)``, order per device). A rejected row never
  "claims" a key, so a later good row with the same key is stored.

Conventions: naive timestamps are taken as UTC (SKAB's naive local wall-clock times
are stored as given); string timestamps must be ISO 8601 (``2026-01-01 10:00:00``,
``2026-01-01T10:00:00Z``, with an optional offset), or epoch seconds/milliseconds
written as digits. Timestamps are keyed at millisecond precision, like the store.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from itap_engine.config import ProfileSpec, ValidationSettings
from itap_engine.errors import ItapError
from itap_engine.safe_text import visible as one_line

__all__ = [
    "CHECKS",
    "ValidationAlert",
    "ValidationError",
    "ValidationReport",
    "ValidationResult",
    "Validator",
    "render_report",
    "validate_frame",
]

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
_MISSING_TOKENS = frozenset({"", "nan", "na", "n/a", "null", "none"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_INVISIBLE = re.compile("[\u202a-\u202e\u2066-\u2069\u200b-\u200f\u061c\ufeff]")
_EPOCH = re.compile(r"^\s*-?\d{9,13}(\.\d+)?\s*$")
_MIN_TS_MS = -2208988800000  # 1900-01-01
_INT64_MIN = np.iinfo(np.int64).min
_TEXT = pd.Series(["text"]).dtype
"""The dtype pandas gives text columns (``str`` on pandas 3, object before)."""


class ValidationError(ItapError):
    """An input cannot be validated at all (e.g. a required column is absent); one line."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _iso(ms: np.ndarray) -> np.ndarray:
    """Epoch ms as ISO strings, without a ``.000`` millisecond part."""
    text = np.datetime_as_string(np.asarray(ms, dtype=np.int64).astype("datetime64[ms]"), unit="ms")
    return np.char.replace(text.astype(str), ".000", "").astype(object)


def _fmt(value: float) -> str:
    return f"{value:g}"


# ---------------------------------------------------------------------- report
@dataclass(frozen=True)
class ValidationAlert:
    """A check that failed beyond its tolerance over an input (not a single row)."""

    level: str
    """info, warning or critical."""
    check: str
    device_id: str | None
    signal: str | None
    value: float | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "check": self.check,
            "device_id": self.device_id,
            "signal": self.signal,
            "value": self.value,
            "message": self.message,
        }


def _empty_missing(signals: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame(columns=signals or [], dtype="int64")


@dataclass
class ValidationReport:
    """Counts, examples and alerts of one validation; mergeable across chunks.

    ``checks`` counts rejected rows per check (a row failing two checks counts in
    both, so the sum may exceed ``rejected``). Missing-value counts are kept per
    device and signal so that merged reports give exact rates.
    """

    source: str = ""
    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    checks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHECKS, 0))
    examples: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[ValidationAlert] = field(default_factory=list)
    missing: pd.DataFrame = field(default_factory=_empty_missing)
    """Missing readings among accepted rows: index device_id, one column per signal."""
    device_rows: pd.Series = field(default_factory=lambda: pd.Series(dtype="int64"))
    """Accepted rows per device."""
    max_examples: int = 20

    def merge(self, other: ValidationReport) -> ValidationReport:
        """Add ``other`` (a later chunk of the same input) into this report; returns self."""
        self.rows += other.rows
        self.accepted += other.accepted
        self.rejected += other.rejected
        for name, count in other.checks.items():
            self.checks[name] = self.checks.get(name, 0) + count
        room = self.max_examples - len(self.examples)
        if room > 0:
            self.examples.extend(other.examples[:room])
        self.alerts.extend(other.alerts)
        if len(other.missing.columns) or len(other.missing):
            self.missing = self.missing.add(other.missing, fill_value=0).fillna(0).astype("int64")
        if len(other.device_rows):
            self.device_rows = self.device_rows.add(other.device_rows, fill_value=0).astype("int64")
        if not self.source:
            self.source = other.source
        return self

    def copy(self) -> ValidationReport:
        return copy.deepcopy(self)

    @property
    def missing_rate(self) -> dict[str, dict[str, float]]:
        """signal -> device -> share of that device's accepted rows missing the signal."""
        if self.missing.empty:
            return {}
        rows = self.device_rows.reindex(self.missing.index).replace(0, np.nan)
        rates = self.missing.div(rows, axis=0).fillna(0.0)
        return {
            signal: {str(device): round(float(rate), 6) for device, rate in rates[signal].items()}
            for signal in rates.columns
        }

    @property
    def warnings(self) -> list[ValidationAlert]:
        return [a for a in self.alerts if a.level != "info"]

    @property
    def clean(self) -> bool:
        """No row rejected and no warning or critical alert."""
        return self.rejected == 0 and not self.warnings

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": self.rows,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "checks": dict(self.checks),
            "missing_rate": self.missing_rate,
            "examples": list(self.examples),
            "alerts": [a.to_dict() for a in self.alerts],
        }


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of validating one frame (or one chunk of an input)."""

    accepted: pd.DataFrame
    """device_id, ts (datetime64[ns], naive UTC), state if given, one float column
    per profile signal (NaN = missing), fault and changepoint if given."""
    rejected: pd.DataFrame
    """reason, check (the first failing check), line, device_id, ts (epoch ms), raw (JSON)."""
    report: ValidationReport
    accepted_lines: np.ndarray | None = None
    """Source line of each accepted row, when the input had ``_line``."""


REJECTED_COLUMNS = ("reason", "check", "line", "device_id", "ts", "raw")


# ---------------------------------------------------------------------- validator
_Builder = Callable[[np.ndarray], np.ndarray]


class Validator:
    """Validates one input, chunk by chunk, for one profile.

    Args:
        profile: the profile the rows claim to follow (signals, ranges, states).
        settings: ``[validation]`` settings.
        now: the clock for the "too far in the future" check (default: UTC now).
        source: where the rows come from (file name), for messages and reports.
    """

    def __init__(
        self,
        profile: ProfileSpec,
        settings: ValidationSettings,
        *,
        now: datetime | None = None,
        source: str = "",
    ) -> None:
        self.profile = profile
        self.settings = settings
        self.source = source
        now = now or _utcnow()
        if now.tzinfo is not None:
            now = now.astimezone(UTC).replace(tzinfo=None)
        self.now = now
        self.signals = profile.signal_names
        self._future_ms = int(pd.Timestamp(now).value // 1_000_000) + settings.max_future_s * 1000
        self._last: dict[str, int] = {}
        self._history: dict[str, list[np.ndarray]] = {}
        self._history_size = 0
        self._unfolded: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        """The last chunk's accepted keys, folded into _last/_history when a next chunk comes."""
        self._absent: set[str] = set()
        self._present: set[str] = set()
        self._announced: set[str] = set()
        self._total = self._new_report()
        self.raw_names: dict[str, str] = {}
        """Column -> name in the source (e.g. a CSV header), used in rejected rows' raw JSON."""

    def _new_report(self) -> ValidationReport:
        return ValidationReport(
            source=self.source,
            max_examples=self.settings.report_examples,
            missing=_empty_missing(self.signals),
        )

    # ------------------------------------------------------------------ public
    def validate(self, frame: pd.DataFrame) -> ValidationResult:
        """Validate the next chunk of the input; see the module docstring."""
        missing_required = [c for c in ("device_id", "ts") if c not in frame.columns]
        if missing_required:
            found = ", ".join(str(c) for c in frame.columns if c not in META_COLUMNS) or "none"
            where = f"{self.source}: " if self.source else ""
            raise ValidationError(
                f"{where}required column(s) {', '.join(missing_required)} missing; found columns: {found}"
            )
        frame = frame.reset_index(drop=True)
        report = self._new_report()
        report.alerts.extend(self._column_alerts(frame))
        n = len(frame)
        if n == 0:
            self._total.merge(report)
            return ValidationResult(self._empty_accepted(frame), _empty_rejected(), report)

        entries: list[tuple[str, np.ndarray, _Builder]] = []

        def add(check: str, mask: np.ndarray, builder: _Builder) -> None:
            if mask.any():
                entries.append((check, mask, builder))

        # reader errors (malformed lines)
        reader_error = np.zeros(n, dtype=bool)
        if "_error" in frame.columns:
            errors = frame["_error"]
            reader_error = errors.notna().to_numpy()
            err_text = errors.to_numpy(dtype=object)
            checks = (
                frame["_check"].fillna("malformed").to_numpy(dtype=object)
                if "_check" in frame.columns
                else np.full(n, "malformed", dtype=object)
            )
            for check in pd.unique(checks[reader_error]):
                add(str(check), reader_error & (checks == check), lambda pos: err_text[pos].astype(str).astype(object))
        n_reader_entries = len(entries)

        # device ids, once per distinct value
        codes, uniques = pd.factorize(frame["device_id"], use_na_sentinel=True)
        names = np.array([_device_name(u) for u in uniques] + [""], dtype=object)
        problems = np.array([_device_problem(s) for s in names[:-1]] + ["device_id is empty"], dtype=object)
        dev_codes = np.where(codes < 0, len(uniques), codes)
        bad_device = np.array([p is not None for p in problems], dtype=bool)[dev_codes]
        add("device_id", bad_device, lambda pos: problems[dev_codes[pos]])

        # timestamps
        ms, ts_bad, ts_reason = self._parse_ts(frame["ts"])
        add("timestamp", ts_bad, lambda pos: ts_reason(pos))
        future = ~ts_bad & (ms > self._future_ms)
        future_limit = self.settings.max_future_s

        def future_reason(pos: np.ndarray) -> np.ndarray:
            ahead = (ms[pos] - (self._future_ms - future_limit * 1000)) // 1000
            iso = _iso(ms[pos])
            return np.array(
                [f"ts={t} is {a} s ahead of now (max {future_limit} s)" for t, a in zip(iso, ahead)], dtype=object
            )

        add("future", future, future_reason)

        # signals
        values: dict[str, np.ndarray] = {}
        for signal in self.signals:
            if signal not in frame.columns:
                values[signal] = np.full(n, np.nan)
                continue
            column = frame[signal]
            vals, nonnum = _to_float(column)
            values[signal] = vals
            add(
                "numeric",
                nonnum,
                _reason(
                    lambda pos, s=signal, c=column: [  # type: ignore[misc]
                        f"{s}={_short(v)} is not a number" for v in c.to_numpy(dtype=object)[pos]
                    ]
                ),
            )
            inf = np.isinf(vals)
            add("non_finite", inf, _reason(lambda pos, s=signal, v=vals: [f"{s}={x} is not finite" for x in v[pos]]))  # type: ignore[misc]
            lo, hi = self.profile.signals[signal].range
            with np.errstate(invalid="ignore"):
                out = ~inf & ((vals < lo) | (vals > hi))
            add(
                "range",
                out,
                _reason(
                    lambda pos, s=signal, v=vals, lo=lo, hi=hi: [  # type: ignore[misc]
                        f"{s}={float(x)!r} outside valid range [{_fmt(lo)}, {_fmt(hi)}]" for x in v[pos]
                    ]
                ),
            )

        # state
        state_out: np.ndarray | None = None
        if "state" in frame.columns:
            s_codes, s_uniques = pd.factorize(frame["state"], use_na_sentinel=True)
            known = self.profile.states
            s_names = [None if _is_missing_text(u) else str(u).strip() for u in s_uniques]
            s_bad_u = np.array([s is not None and s not in known for s in s_names] + [False])
            s_vals = np.array([*s_names, None], dtype=object)
            s_idx = np.where(s_codes < 0, len(s_uniques), s_codes)
            state_out = s_vals[s_idx]
            allowed = ", ".join(known)
            add(
                "state",
                s_bad_u[s_idx],
                _reason(
                    lambda pos: [
                        f"state={_short(v)} is not a state of this profile ({allowed})" for v in state_out[pos]
                    ]
                ),
            )

        # labels (ground truth, never signals)
        fault_out, changepoint_out = self._labels(frame, add)

        # a row the reader could not split is reported for that alone
        if reader_error.any():
            entries = entries[:n_reader_entries] + [
                (c, m & ~reader_error, bld) for c, m, bld in entries[n_reader_entries:] if (m & ~reader_error).any()
            ]
        # row-local verdict, then key checks on the rows that passed
        local_bad = np.zeros(n, dtype=bool)
        for _check, mask, _builder in entries:
            local_bad |= mask
        dup, order, prev_max = self._key_checks(~local_bad, dev_codes, names, ms)
        add(
            "duplicate",
            dup,
            _reason(
                lambda pos: [
                    f"duplicate (device_id, ts) = ({d!r}, {t}): already seen earlier in this input"
                    for d, t in zip(names[dev_codes[pos]], _iso(ms[pos]))
                ]
            ),
        )
        add(
            "order",
            order,
            _reason(
                lambda pos: [
                    f"ts={t} out of order: not after the previous reading of {d!r} at {p}"
                    for d, t, p in zip(names[dev_codes[pos]], _iso(ms[pos]), _iso(prev_max[pos]))
                ]
            ),
        )

        rejected = local_bad | dup | order
        accepted = ~rejected
        acc_pos = np.flatnonzero(accepted)

        # accepted frame
        out: dict[str, Any] = {  # type: ignore[no-redef]
            "device_id": names[dev_codes[acc_pos]],
            "ts": ms[acc_pos].astype("datetime64[ms]").astype("datetime64[ns]"),
        }
        if state_out is not None:
            out["state"] = state_out[acc_pos]
        for signal in self.signals:
            out[signal] = values[signal][acc_pos]
        if fault_out is not None:
            out["fault"] = fault_out[acc_pos]
        if changepoint_out is not None:
            out["changepoint"] = pd.array(changepoint_out[acc_pos], dtype="Float64").astype("Int64")
        accepted_frame = _text_columns(pd.DataFrame(out))

        # counts
        report.rows = n
        report.accepted = len(acc_pos)
        report.rejected = n - len(acc_pos)
        for check, mask, _builder in entries:
            report.checks[check] = report.checks.get(check, 0) + int(mask.sum())
        acc_codes = dev_codes[acc_pos]
        if len(acc_pos):
            per_device = np.bincount(acc_codes, minlength=len(names))
            seen = np.flatnonzero(per_device)
            report.device_rows = pd.Series(per_device[seen], index=names[seen].astype(str), dtype="int64")
            report.missing = pd.DataFrame(
                {
                    s: np.bincount(acc_codes, weights=np.isnan(values[s][acc_pos]), minlength=len(names))[seen].astype(
                        "int64"
                    )
                    for s in self.signals
                },
                index=names[seen].astype(str),
            )

        rejected_frame = self._rejected_frame(
            frame, np.flatnonzero(rejected), entries, names, dev_codes, codes, ms, ts_bad
        )
        report.examples = _examples(rejected_frame, self.settings.report_examples)
        self._remember(acc_codes, names, ms[acc_pos])
        self._total.merge(report)
        lines = frame["_line"].to_numpy()[acc_pos] if "_line" in frame.columns else None
        return ValidationResult(accepted_frame, rejected_frame, report, lines)

    def finish(self) -> ValidationReport:
        """The whole-input report: every chunk's counts plus input-level alerts."""
        report = self._total.copy()
        report.alerts.extend(
            ValidationAlert(
                "warning",
                "columns",
                None,
                signal,
                None,
                f"signal {signal} is absent from the input; its readings are stored as NULL",
            )
            for signal in self.signals
            if signal in self._absent and signal not in self._present
        )
        report.alerts.extend(self._final_alerts(report))
        return report

    # ------------------------------------------------------------------ pieces
    def _column_alerts(self, frame: pd.DataFrame) -> list[ValidationAlert]:
        alerts = []
        known = {"device_id", "ts", "state", *self.signals, *LABELS, *META_COLUMNS}
        # a signal is absent if no chunk has it (a long file's chunk of bad lines has
        # no signal column at all): told by finish(), once the whole input was seen
        for signal in self.signals:
            (self._present if signal in frame.columns else self._absent).add(signal)
        extra = [str(c) for c in frame.columns if c not in known and str(c) not in self._announced]
        if extra:
            self._announced.update(extra)
            alerts.append(
                ValidationAlert(
                    "info",
                    "columns",
                    None,
                    None,
                    None,
                    f"ignored columns not in the profile: {', '.join(extra)}",
                )
            )
        return alerts

    def _parse_ts(self, column: pd.Series) -> tuple[np.ndarray, np.ndarray, _Builder]:
        """Epoch ms (int64), a bad-timestamp mask and a reason builder."""
        n = len(column)
        raw = column.to_numpy(dtype=object) if not pd.api.types.is_datetime64_any_dtype(column.dtype) else None
        if pd.api.types.is_datetime64_any_dtype(column.dtype):
            stamps = column
            if getattr(stamps.dt, "tz", None) is not None:
                stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
            empty = stamps.isna().to_numpy()
            ms = stamps.to_numpy(dtype="datetime64[ms]").astype(np.int64)
            bad_parse = np.zeros(n, dtype=bool)
        elif pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
            num = column.to_numpy(dtype=float)
            empty = np.isnan(num)
            bad_parse = ~empty & ~np.isfinite(num)
            ms = _epoch_to_ms(np.where(empty | bad_parse, 0, num))
        else:
            parsed = pd.to_datetime(column.astype(object), errors="coerce", utc=True, format="ISO8601")
            nat = parsed.isna().to_numpy()
            ms = np.zeros(n, dtype=np.int64)
            ok = ~nat
            if ok.any():
                ms[ok] = parsed[ok].dt.tz_localize(None).to_numpy(dtype="datetime64[ms]").astype(np.int64)
            empty = np.zeros(n, dtype=bool)
            bad_parse = np.zeros(n, dtype=bool)
            for i in np.flatnonzero(nat):  # only values that did not parse
                value = raw[i]  # type: ignore[index]
                if _is_missing_text(value):
                    empty[i] = True
                elif isinstance(value, str) and _EPOCH.match(value):
                    ms[i] = int(_epoch_to_ms(np.array([float(value)]))[0])
                else:
                    bad_parse[i] = True
        ms = np.where(empty | bad_parse, 0, ms).astype(np.int64)
        too_old = ~empty & ~bad_parse & (ms < _MIN_TS_MS)
        bad = empty | bad_parse | too_old

        def reason(pos: np.ndarray) -> np.ndarray:
            out = []
            for i in pos:
                if empty[i]:
                    out.append("ts is empty")
                elif too_old[i]:
                    out.append(f"ts={_iso(ms[i : i + 1])[0]} is before 1900")
                else:
                    shown = raw[i] if raw is not None else column.iloc[i]
                    out.append(f"ts={_short(shown)} is not a valid timestamp (ISO 8601 expected)")
            return np.array(out, dtype=object)

        return ms, bad, reason

    def _labels(
        self, frame: pd.DataFrame, add: Callable[[str, np.ndarray, _Builder], None]
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        fault: np.ndarray | None = None
        if "fault" in frame.columns:
            raw = frame["fault"].to_numpy(dtype=object)
            f_codes, f_uniques = pd.factorize(frame["fault"], use_na_sentinel=True)
            # blank, whitespace, "normal" and "0" mean a normal reading
            f_names = [None if _is_missing_text(u) or _is_normal_label(u) else str(u).strip() for u in f_uniques]
            f_vals = np.array([*f_names, None], dtype=object)
            f_idx = np.where(f_codes < 0, len(f_uniques), f_codes)
            fault = f_vals[f_idx]
            too_long = np.array([s is not None and len(s) > MAX_LABEL for s in f_names] + [False])[f_idx]
            add(
                "label",
                too_long,
                _reason(lambda pos: [f"fault label longer than {MAX_LABEL} characters: {_short(v)}" for v in raw[pos]]),
            )
            # NUL and other control characters are never label text (PostgreSQL refuses NUL)
            control = np.array([s is not None and bool(_CONTROL.search(s)) for s in f_names] + [False])[f_idx]
            add(
                "label",
                control & ~too_long,
                _reason(lambda pos: [f"fault={_short(v)} contains control characters" for v in raw[pos]]),
            )
        if "anomaly" in frame.columns:
            vals, nonnum = _to_float(frame["anomaly"])
            bad = nonnum | (~np.isnan(vals) & (vals != 0) & (vals != 1))
            raw_a = frame["anomaly"].to_numpy(dtype=object)
            add("label", bad, _reason(lambda pos: [f"anomaly={_short(v)} is not 0 or 1" for v in raw_a[pos]]))
            flagged = np.where(vals == 1, "anomaly", None).astype(object)  # type: ignore[call-overload]
            fault = flagged if fault is None else np.where(pd.isna(fault), flagged, fault).astype(object)
        changepoint: np.ndarray | None = None
        if "changepoint" in frame.columns:
            vals, nonnum = _to_float(frame["changepoint"])
            bad = nonnum | (~np.isnan(vals) & (vals != 0) & (vals != 1))
            raw_c = frame["changepoint"].to_numpy(dtype=object)
            add("label", bad, _reason(lambda pos: [f"changepoint={_short(v)} is not 0 or 1" for v in raw_c[pos]]))
            changepoint = np.where(np.isnan(vals) | bad, np.nan, vals)
        return fault, changepoint

    def _key_checks(
        self, candidate: np.ndarray, dev_codes: np.ndarray, names: np.ndarray, ms: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Duplicate and out-of-order masks among candidate rows, and the previous max ts."""
        n = len(ms)
        dup = np.zeros(n, dtype=bool)
        order = np.zeros(n, dtype=bool)
        prev_full = np.zeros(n, dtype=np.int64)
        pos = np.flatnonzero(candidate)
        if len(pos) == 0:
            return dup, order, prev_full
        self._fold()
        c_codes = dev_codes[pos]
        c_ts = ms[pos]
        before = np.array([self._last.get(str(d), _INT64_MIN) for d in names], dtype=np.int64)
        prior = before[c_codes]
        series = pd.Series(c_ts)
        prev_in_chunk = series.groupby(c_codes, sort=False).shift(1).groupby(c_codes, sort=False).cummax()
        prev = prev_in_chunk.to_numpy(dtype=float, na_value=np.nan)
        prev_int = np.where(np.isnan(prev), _INT64_MIN, np.nan_to_num(prev, nan=0.0)).astype(np.int64)
        prev_max = np.maximum(prev_int, prior)
        late = c_ts <= prev_max
        prev_full[pos] = prev_max
        if not late.any():
            return dup, order, prev_full
        late_pos = pos[late]
        is_dup = np.zeros(len(late_pos), dtype=bool)
        # within this chunk: keys of rows accepted so far (in-order candidates)
        ok_pos = pos[~late]
        late_codes = dev_codes[late_pos]
        devices = np.unique(late_codes)
        sel = np.isin(dev_codes[ok_pos], devices)
        if sel.any():
            seen = pd.MultiIndex.from_arrays([dev_codes[ok_pos][sel], ms[ok_pos][sel]])
            is_dup |= pd.MultiIndex.from_arrays([late_codes, ms[late_pos]]).isin(seen)
        # earlier chunks
        for code in devices:
            history = self._history_of(str(names[code]))
            if history is None:
                continue
            here = late_codes == code
            is_dup[here] |= np.isin(ms[late_pos[here]], history)
        dup[late_pos] = is_dup
        order[late_pos] = ~is_dup
        return dup, order, prev_full

    def _history_of(self, device: str) -> np.ndarray | None:
        parts = self._history.get(device)
        if not parts:
            return None
        if len(parts) > 1:
            parts[:] = [np.concatenate(parts)]
        return parts[0]

    def _remember(self, acc_codes: np.ndarray, names: np.ndarray, acc_ms: np.ndarray) -> None:
        """Keep a chunk's accepted keys for the duplicate and order checks of later chunks.

        Folded in lazily: most inputs (an engine tick, a small file) are one chunk,
        and indexing a thousand devices' keys for a chunk that never comes costs more
        than validating the chunk.
        """
        self._fold()
        self._unfolded = (acc_codes, names, acc_ms)

    def _fold(self) -> None:
        if self._unfolded is None:
            return
        acc_codes, names, acc_ms = self._unfolded
        self._unfolded = None
        if len(acc_codes) == 0:
            return
        order = np.argsort(acc_codes, kind="stable")
        sorted_codes = acc_codes[order]
        sorted_ms = acc_ms[order]
        cuts = np.flatnonzero(np.diff(sorted_codes)) + 1
        for codes_part, ms_part in zip(np.split(sorted_codes, cuts), np.split(sorted_ms, cuts)):
            device = str(names[codes_part[0]])
            self._last[device] = max(self._last.get(device, _INT64_MIN), int(ms_part[-1]))
            self._history.setdefault(device, []).append(ms_part)
            self._history_size += len(ms_part)
        if self._history_size > HISTORY_LIMIT:
            keep = max(1, HISTORY_LIMIT // (2 * max(1, len(self._history))))
            self._history_size = 0
            for device in self._history:
                arr = self._history_of(device)
                trimmed = arr[-keep:] if arr is not None else np.empty(0, dtype=np.int64)
                self._history[device] = [trimmed]
                self._history_size += len(trimmed)

    def _rejected_frame(
        self,
        frame: pd.DataFrame,
        rej_pos: np.ndarray,
        entries: list[tuple[str, np.ndarray, _Builder]],
        names: np.ndarray,
        dev_codes: np.ndarray,
        codes: np.ndarray,
        ms: np.ndarray,
        ts_bad: np.ndarray,
    ) -> pd.DataFrame:
        if len(rej_pos) == 0:
            return _empty_rejected()
        reasons = np.full(len(rej_pos), "", dtype=object)
        first = np.full(len(rej_pos), "", dtype=object)
        rank = {name: i for i, name in enumerate(CHECKS)}
        for check, mask, builder in sorted(entries, key=lambda e: rank.get(e[0], len(CHECKS))):
            sub = mask[rej_pos]
            if not sub.any():
                continue
            text = np.asarray(builder(rej_pos[sub]), dtype=object)
            current = reasons[sub]
            reasons[sub] = np.where(current == "", text, current + "; " + text)
            first[sub] = np.where(first[sub] == "", check, first[sub])
        if "_line" in frame.columns:
            line = pd.array(pd.to_numeric(frame["_line"].iloc[rej_pos], errors="coerce"), dtype="Int64")
        else:
            line = pd.array([pd.NA] * len(rej_pos), dtype="Int64")
        safe_names = np.array([_safe_text(str(v), MAX_DEVICE_ID) for v in names], dtype=object)
        device = np.where(codes[rej_pos] < 0, None, safe_names[dev_codes[rej_pos]]).astype(object)  # type: ignore[attr-defined]
        ts = pd.array(np.where(ts_bad[rej_pos], 0, ms[rej_pos]), dtype="Int64")
        ts[ts_bad[rej_pos]] = pd.NA
        return pd.DataFrame(
            {
                "reason": reasons,
                "check": first,
                "line": line,
                "device_id": device,
                "ts": ts,
                "raw": _raw_json(frame, rej_pos, self.raw_names),
            }
        )

    def _final_alerts(self, report: ValidationReport) -> list[ValidationAlert]:
        alerts: list[ValidationAlert] = []
        threshold = self.settings.missing_rate_alert
        if not report.missing.empty:
            rows = report.device_rows.reindex(report.missing.index)
            signals = [s for s in self.signals if s in self._present and s in report.missing.columns]
            # one vectorised pass finds the (device, signal) pairs over the threshold;
            # only those are visited (a thousand devices x a dozen signals per tick)
            totals = rows.to_numpy(dtype=float)
            counts = report.missing[signals].to_numpy(dtype=float)
            with np.errstate(invalid="ignore", divide="ignore"):
                over = (totals[:, None] > 0) & (counts / totals[:, None] > threshold)
            hot = np.flatnonzero(over.any(axis=1)) if len(signals) else np.zeros(0, dtype=int)
            index = report.missing.index
            for r in sorted(hot, key=lambda r: index[r]):
                device = index[r]
                total = int(totals[r])
                for j, signal in enumerate(signals):
                    count = int(counts[r, j])
                    rate = count / total
                    if rate > threshold:
                        alerts.append(
                            ValidationAlert(
                                "warning",
                                "missing_rate",
                                str(device),
                                signal,
                                round(rate, 6),
                                f"{signal} missing in {rate:.0%} of {device}'s readings "
                                f"({count} of {total}; alert above {threshold:.0%})",
                            )
                        )
        if report.rows and report.rejected / report.rows > REJECTION_RATE_ALERT:
            rate = report.rejected / report.rows
            top = sorted(((c, k) for k, c in report.checks.items() if c), reverse=True)[:3]
            causes = ", ".join(f"{k} {c}" for c, k in top)
            alerts.append(
                ValidationAlert(
                    "warning",
                    "rejection_rate",
                    None,
                    None,
                    round(rate, 6),
                    f"{report.rejected} of {report.rows} rows rejected ({rate:.1%}; alert above "
                    f"{REJECTION_RATE_ALERT:.0%}): {causes}",
                )
            )
        return alerts

    def _empty_accepted(self, frame: pd.DataFrame) -> pd.DataFrame:
        out: dict[str, Any] = {
            "device_id": pd.Series([], dtype=object),
            "ts": pd.Series([], dtype="datetime64[ns]"),
        }
        if "state" in frame.columns:
            out["state"] = pd.Series([], dtype=object)
        for signal in self.signals:
            out[signal] = pd.Series([], dtype=float)
        if "fault" in frame.columns or "anomaly" in frame.columns:
            out["fault"] = pd.Series([], dtype=object)
        if "changepoint" in frame.columns:
            out["changepoint"] = pd.Series([], dtype="Int64")
        return _text_columns(pd.DataFrame(out))


# ---------------------------------------------------------------------- helpers
def _text_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """device_id, state and fault with one dtype whatever the chunk (None stays missing)."""
    for name in ("device_id", "state", "fault"):
        if name in frame.columns and frame[name].dtype != _TEXT:
            frame[name] = frame[name].astype(_TEXT) if len(frame) else pd.Series([], dtype=_TEXT)
    return frame


def _safe_text(text: str, limit: int) -> str:
    """Text fit for any database column: control characters escaped, length capped."""
    if _CONTROL.search(text):
        text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text[:limit]


def _reason(fn: Callable[[np.ndarray], list[str]]) -> _Builder:
    return lambda pos: np.array(fn(pos), dtype=object)


def _device_name(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@functools.lru_cache(maxsize=65_536)
def _device_problem(name: str) -> str | None:
    if name == "" or (_is_missing_text(name) and name.strip() == ""):
        return "device_id is empty"
    if len(name) > MAX_DEVICE_ID:
        return f"device_id is longer than {MAX_DEVICE_ID} characters ({len(name)}): {_short(name)}"
    if _CONTROL.search(name):
        return f"device_id={_short(name)} contains control characters"
    if _INVISIBLE.search(name):  # bidi overrides / zero-width: the id would not read as it is
        return f"device_id={_short(name)} contains bidirectional or zero-width characters"
    if name != name.strip():
        return f"device_id={_short(name)} has leading or trailing whitespace"
    return None


_NORMAL_LABELS = frozenset({"normal", "0", "0.0"})


def _is_normal_label(value: Any) -> bool:
    """A ground-truth label value that means "normal" (``normal``, ``0``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value == 0
    return isinstance(value, str) and value.strip().lower() in _NORMAL_LABELS


def _is_missing_text(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, str):
        return value.strip().lower() in _MISSING_TOKENS
    return False


def _to_float(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
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
        unparsed[idx] = [not _is_missing_text(v) and not _is_nan_number(v) for v in raw[idx]]
    return vals, unparsed


def _is_nan_number(value: Any) -> bool:
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def _epoch_to_ms(values: np.ndarray) -> np.ndarray:
    """Epoch numbers as ms: seconds below 1e11 (until year 5138), milliseconds above."""
    values = np.asarray(values, dtype=float)
    scaled = np.where(np.abs(values) < 1e11, values * 1000.0, values)
    return np.clip(np.round(scaled), -9.2e18, 9.2e18).astype(np.int64)


_EMPTY_REJECTED: list[pd.DataFrame] = []


def _empty_rejected() -> pd.DataFrame:
    """An empty rejected-rows frame: a copy of one built once (building one costs about
    a millisecond, and every clean chunk of every tick needs one)."""
    if not _EMPTY_REJECTED:
        _EMPTY_REJECTED.append(
            pd.DataFrame(
                {
                    "reason": pd.Series([], dtype=object),
                    "check": pd.Series([], dtype=object),
                    "line": pd.Series([], dtype="Int64"),
                    "device_id": pd.Series([], dtype=object),
                    "ts": pd.Series([], dtype="Int64"),
                    "raw": pd.Series([], dtype=object),
                }
            )
        )
    return _EMPTY_REJECTED[0].copy()


def _json_value(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else (None if math.isnan(value) else str(value))
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (pd.Timestamp, datetime, np.datetime64)):
        return str(pd.Timestamp(value))
    return value


def _raw_json(frame: pd.DataFrame, pos: np.ndarray, names: dict[str, str] | None = None) -> np.ndarray:
    """The rejected rows as received, as JSON objects (the reader's raw line if given)."""
    columns = [c for c in frame.columns if c not in META_COLUMNS]
    records = frame.iloc[pos][columns].to_dict("records")
    names = names or {}
    out = np.array(
        [
            json.dumps(
                {names.get(str(k), str(k)): _json_value(v) for k, v in r.items()}, default=str, ensure_ascii=False
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


def _examples(rejected: pd.DataFrame, limit: int) -> list[dict[str, Any]]:
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


def validate_frame(
    frame: pd.DataFrame,
    profile: ProfileSpec,
    settings: ValidationSettings,
    *,
    now: datetime | None = None,
    source: str = "",
) -> ValidationResult:
    """Validate a whole input at once; the report includes input-level alerts."""
    validator = Validator(profile, settings, now=now, source=source)
    result = validator.validate(frame)
    return ValidationResult(result.accepted, result.rejected, validator.finish())


# ---------------------------------------------------------------------- rendering
def render_report(report: ValidationReport) -> Any:
    """A rich renderable summarising a report. Data is shown as text, never as markup."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    status = "clean" if report.clean else ("rejections" if report.rejected else "alerts")
    style = "green" if report.clean else "yellow"
    title = Text.assemble(
        ("Validation ", "bold"),
        (report.source or "input", "bold cyan"),
        ": ",
        (f"{report.rows} rows, {report.accepted} accepted, {report.rejected} rejected", ""),
        "  ",
        (status, style),
    )
    parts.append(title)
    counts = {k: v for k, v in report.checks.items() if v}
    if counts:
        table = Table(title="Rejected rows by check", title_justify="left", show_edge=False)
        table.add_column("check")
        table.add_column("rows", justify="right")
        for name, count in sorted(counts.items(), key=lambda kv: -kv[1]):
            table.add_row(Text(name), str(count))
        parts.append(table)
    if report.examples:
        table = Table(title="Examples", title_justify="left", show_edge=False)
        table.add_column("line", justify="right")
        table.add_column("device")
        table.add_column("reason", overflow="fold")
        for example in report.examples:
            line = example.get("line")
            table.add_row(
                "" if line is None else str(line),
                Text(str(example.get("device_id") or "")),
                Text(str(example.get("reason") or "")),
            )
        parts.append(table)
    if report.alerts:
        table = Table(title="Alerts", title_justify="left", show_edge=False)
        table.add_column("level")
        table.add_column("check")
        table.add_column("message", overflow="fold")
        colours = {"info": "dim", "warning": "yellow", "critical": "bold red"}
        for alert in report.alerts:
            table.add_row(Text(alert.level, colours.get(alert.level, "")), Text(alert.check), Text(alert.message))
        parts.append(table)
    return Group(*parts)
