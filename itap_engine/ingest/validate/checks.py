"""The row-local checks, one function each.

Every check looks at whole columns of one chunk and files the rows it rejects in a
:class:`Findings`: the check's name, a row mask and a builder that writes the reasons
of only the rejected rows (Python touches rejected rows, never the good ones). A check
also returns what later steps need from the column it parsed (epoch ms, floats,
states, labels). The key checks (duplicate, order) need what came before and live
with the :class:`~itap_engine.ingest.validate.Validator`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from itap_engine.config import ProfileSpec
from itap_engine.ingest.validate.values import (
    CHECKS,
    CONTROL,
    EPOCH,
    MAX_LABEL,
    MIN_TS_MS,
    Builder,
    device_name,
    device_problem,
    epoch_to_ms,
    fmt,
    is_missing_text,
    is_normal_label,
    iso,
    reason,
    short,
    to_float,
)


@dataclass
class Findings:
    """The rows each check rejected in one chunk, with the builders of their reasons."""

    entries: list[tuple[str, np.ndarray, Builder]] = field(default_factory=list)

    def add(self, check: str, mask: np.ndarray, builder: Builder) -> None:
        if mask.any():
            self.entries.append((check, mask, builder))

    def rejected(self, n: int) -> np.ndarray:
        """Rows any check rejected so far."""
        out = np.zeros(n, dtype=bool)
        for _check, mask, _builder in self.entries:
            out |= mask
        return out

    def only_reader_errors_for(self, reader_error: np.ndarray, n_reader_entries: int) -> None:
        """A row the reader could not split is reported for that alone."""
        if not reader_error.any():
            return
        self.entries = self.entries[:n_reader_entries] + [
            (c, m & ~reader_error, b) for c, m, b in self.entries[n_reader_entries:] if (m & ~reader_error).any()
        ]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for check, mask, _builder in self.entries:
            out[check] = out.get(check, 0) + int(mask.sum())
        return out

    def reasons(self, rej_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each rejected row's reasons joined in CHECKS order, and its first failing check."""
        reasons = np.full(len(rej_pos), "", dtype=object)
        first = np.full(len(rej_pos), "", dtype=object)
        rank = {name: i for i, name in enumerate(CHECKS)}
        for check, mask, builder in sorted(self.entries, key=lambda e: rank.get(e[0], len(CHECKS))):
            sub = mask[rej_pos]
            if not sub.any():
                continue
            text = np.asarray(builder(rej_pos[sub]), dtype=object)
            current = reasons[sub]
            reasons[sub] = np.where(current == "", text, current + "; " + text)
            first[sub] = np.where(first[sub] == "", check, first[sub])
        return reasons, first


def check_reader(frame: pd.DataFrame, found: Findings) -> np.ndarray:
    """Rows the reader could not parse (``_error``), filed under their ``_check``."""
    n = len(frame)
    if "_error" not in frame.columns:
        return np.zeros(n, dtype=bool)
    errors = frame["_error"]
    reader_error = errors.notna().to_numpy()
    err_text = errors.to_numpy(dtype=object)
    checks = (
        frame["_check"].fillna("malformed").to_numpy(dtype=object)
        if "_check" in frame.columns
        else np.full(n, "malformed", dtype=object)
    )
    for check in pd.unique(checks[reader_error]):
        found.add(str(check), reader_error & (checks == check), lambda pos: err_text[pos].astype(str).astype(object))
    return reader_error


@dataclass(frozen=True)
class Devices:
    """The chunk's device ids, factorized: ``names[codes[i]]`` is row i's id."""

    names: np.ndarray
    """Distinct ids as text, plus "" for a missing id (the last entry)."""
    codes: np.ndarray
    """Index into ``names`` per row (missing ids point at the last entry)."""
    raw_codes: np.ndarray
    """pandas' codes: -1 where the id is missing."""


def check_device_ids(frame: pd.DataFrame, found: Findings) -> Devices:
    """Empty, over-long or unreadable ids; checked once per distinct value."""
    raw_codes, uniques = pd.factorize(frame["device_id"], use_na_sentinel=True)
    names = np.array([device_name(u) for u in uniques] + [""], dtype=object)
    problems = np.array([device_problem(s) for s in names[:-1]] + ["device_id is empty"], dtype=object)
    codes = np.where(raw_codes < 0, len(uniques), raw_codes)
    bad = np.array([p is not None for p in problems], dtype=bool)[codes]
    found.add("device_id", bad, lambda pos: problems[codes[pos]])
    return Devices(names, codes, raw_codes)


def parse_timestamps(column: pd.Series) -> tuple[np.ndarray, np.ndarray, Builder]:
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
        ms = epoch_to_ms(np.where(empty | bad_parse, 0, num))
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
            if is_missing_text(value):
                empty[i] = True
            elif isinstance(value, str) and EPOCH.match(value):
                ms[i] = int(epoch_to_ms(np.array([float(value)]))[0])
            else:
                bad_parse[i] = True
    ms = np.where(empty | bad_parse, 0, ms).astype(np.int64)
    too_old = ~empty & ~bad_parse & (ms < MIN_TS_MS)
    bad = empty | bad_parse | too_old

    def why(pos: np.ndarray) -> np.ndarray:
        out = []
        for i in pos:
            if empty[i]:
                out.append("ts is empty")
            elif too_old[i]:
                out.append(f"ts={iso(ms[i : i + 1])[0]} is before 1900")
            else:
                shown = raw[i] if raw is not None else column.iloc[i]
                out.append(f"ts={short(shown)} is not a valid timestamp (ISO 8601 expected)")
        return np.array(out, dtype=object)

    return ms, bad, why


def check_timestamps(
    frame: pd.DataFrame, found: Findings, *, future_ms: int, max_future_s: int
) -> tuple[np.ndarray, np.ndarray]:
    """Unreadable timestamps and timestamps too far ahead of now: (epoch ms, bad mask)."""
    ms, bad, why = parse_timestamps(frame["ts"])
    found.add("timestamp", bad, why)
    future = ~bad & (ms > future_ms)

    def ahead(pos: np.ndarray) -> np.ndarray:
        seconds = (ms[pos] - (future_ms - max_future_s * 1000)) // 1000
        return np.array(
            [f"ts={t} is {a} s ahead of now (max {max_future_s} s)" for t, a in zip(iso(ms[pos]), seconds)],
            dtype=object,
        )

    found.add("future", future, ahead)
    return ms, bad


def check_signals(frame: pd.DataFrame, found: Findings, profile: ProfileSpec) -> dict[str, np.ndarray]:
    """Non-numeric, non-finite and out-of-range readings; each signal as float64 (NaN = missing)."""
    n = len(frame)
    values: dict[str, np.ndarray] = {}
    for signal in profile.signal_names:
        if signal not in frame.columns:
            values[signal] = np.full(n, np.nan)
            continue
        column = frame[signal]
        vals, nonnum = to_float(column)
        values[signal] = vals
        found.add(
            "numeric",
            nonnum,
            reason(
                lambda pos, s=signal, c=column: [  # type: ignore[misc]
                    f"{s}={short(v)} is not a number" for v in c.to_numpy(dtype=object)[pos]
                ]
            ),
        )
        inf = np.isinf(vals)
        found.add(
            "non_finite",
            inf,
            reason(lambda pos, s=signal, v=vals: [f"{s}={x} is not finite" for x in v[pos]]),  # type: ignore[misc]
        )
        lo, hi = profile.signals[signal].range
        with np.errstate(invalid="ignore"):
            out = ~inf & ((vals < lo) | (vals > hi))
        found.add(
            "range",
            out,
            reason(
                lambda pos, s=signal, v=vals, lo=lo, hi=hi: [  # type: ignore[misc]
                    f"{s}={float(x)!r} outside valid range [{fmt(lo)}, {fmt(hi)}]" for x in v[pos]
                ]
            ),
        )
    return values


def check_state(frame: pd.DataFrame, found: Findings, profile: ProfileSpec) -> np.ndarray | None:
    """States this profile does not have; the stripped state per row (None = missing)."""
    if "state" not in frame.columns:
        return None
    codes, uniques = pd.factorize(frame["state"], use_na_sentinel=True)
    known = profile.states
    names = [None if is_missing_text(u) else str(u).strip() for u in uniques]
    bad_unique = np.array([s is not None and s not in known for s in names] + [False])
    idx = np.where(codes < 0, len(uniques), codes)
    state = np.array([*names, None], dtype=object)[idx]
    allowed = ", ".join(known)
    found.add(
        "state",
        bad_unique[idx],
        reason(lambda pos: [f"state={short(v)} is not a state of this profile ({allowed})" for v in state[pos]]),
    )
    return state


def check_labels(frame: pd.DataFrame, found: Findings) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Ground-truth labels (never signals): the fault label per row and the changepoint flag.

    ``fault`` text: blank, whitespace, ``normal`` and ``0`` mean a normal reading.
    ``anomaly`` 0/1 fills the fault label as "anomaly" where ``fault`` gives none.
    """
    fault: np.ndarray | None = None
    if "fault" in frame.columns:
        raw = frame["fault"].to_numpy(dtype=object)
        codes, uniques = pd.factorize(frame["fault"], use_na_sentinel=True)
        names = [None if is_missing_text(u) or is_normal_label(u) else str(u).strip() for u in uniques]
        idx = np.where(codes < 0, len(uniques), codes)
        fault = np.array([*names, None], dtype=object)[idx]
        too_long = np.array([s is not None and len(s) > MAX_LABEL for s in names] + [False])[idx]
        found.add(
            "label",
            too_long,
            reason(lambda pos: [f"fault label longer than {MAX_LABEL} characters: {short(v)}" for v in raw[pos]]),
        )
        # NUL and other control characters are never label text (PostgreSQL refuses NUL)
        control = np.array([s is not None and bool(CONTROL.search(s)) for s in names] + [False])[idx]
        found.add(
            "label",
            control & ~too_long,
            reason(lambda pos: [f"fault={short(v)} contains control characters" for v in raw[pos]]),
        )
    if "anomaly" in frame.columns:
        flags, bad = _zero_one(frame, found, "anomaly")
        flagged = np.where(flags == 1, "anomaly", None).astype(object)  # type: ignore[call-overload]
        fault = flagged if fault is None else np.where(pd.isna(fault), flagged, fault).astype(object)
    changepoint: np.ndarray | None = None
    if "changepoint" in frame.columns:
        flags, bad = _zero_one(frame, found, "changepoint")
        changepoint = np.where(np.isnan(flags) | bad, np.nan, flags)
    return fault, changepoint


def _zero_one(frame: pd.DataFrame, found: Findings, column: str) -> tuple[np.ndarray, np.ndarray]:
    """A 0/1 label column as floats (NaN = missing) and the mask of other values."""
    vals, nonnum = to_float(frame[column])
    bad = nonnum | (~np.isnan(vals) & (vals != 0) & (vals != 1))
    raw = frame[column].to_numpy(dtype=object)
    found.add("label", bad, reason(lambda pos: [f"{column}={short(v)} is not 0 or 1" for v in raw[pos]]))
    return vals, bad
