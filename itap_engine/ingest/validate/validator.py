"""The streaming validator: runs the checks over each chunk of one input, keeps what the
key checks need across chunks, and assembles the accepted and rejected frames."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from itap_engine.config import ProfileSpec, ValidationSettings
from itap_engine.ingest.validate.checks import (
    Devices,
    Findings,
    check_device_ids,
    check_labels,
    check_reader,
    check_signals,
    check_state,
    check_timestamps,
)
from itap_engine.ingest.validate.report import (
    ValidationAlert,
    ValidationError,
    ValidationReport,
    ValidationResult,
    empty_missing,
)
from itap_engine.ingest.validate.values import (
    HISTORY_LIMIT,
    INT64_MIN,
    LABELS,
    MAX_DEVICE_ID,
    META_COLUMNS,
    REJECTION_RATE_ALERT,
    empty_rejected,
    examples,
    iso,
    raw_json,
    reason,
    safe_text,
    text_columns,
    utcnow,
)


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
        now = now or utcnow()
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
            missing=empty_missing(self.signals),
        )

    # ------------------------------------------------------------------ public
    def validate(self, frame: pd.DataFrame) -> ValidationResult:
        """Validate the next chunk of the input: row-local checks, then key checks on the rows that passed."""
        self._require_keys(frame)
        frame = frame.reset_index(drop=True)
        report = self._new_report()
        report.alerts.extend(self._column_alerts(frame))
        n = len(frame)
        if n == 0:
            self._total.merge(report)
            return ValidationResult(self._empty_accepted(frame), empty_rejected(), report)

        found = Findings()
        reader_error = check_reader(frame, found)
        n_reader_entries = len(found.entries)
        devices = check_device_ids(frame, found)
        ms, ts_bad = check_timestamps(frame, found, future_ms=self._future_ms, max_future_s=self.settings.max_future_s)
        values = check_signals(frame, found, self.profile)
        state = check_state(frame, found, self.profile)
        fault, changepoint = check_labels(frame, found)
        found.only_reader_errors_for(reader_error, n_reader_entries)
        self._check_keys(found, ~found.rejected(n), devices, ms)

        rejected = found.rejected(n)
        acc_pos = np.flatnonzero(~rejected)
        accepted = self._accepted_frame(acc_pos, devices, ms, values, state, fault, changepoint)
        rejected_frame = self._rejected_frame(frame, np.flatnonzero(rejected), found, devices, ms, ts_bad)
        self._count(report, n, acc_pos, found, devices, values)
        report.examples = examples(rejected_frame, self.settings.report_examples)
        self._remember(devices.codes[acc_pos], devices.names, ms[acc_pos])
        self._total.merge(report)
        lines = frame["_line"].to_numpy()[acc_pos] if "_line" in frame.columns else None
        return ValidationResult(accepted, rejected_frame, report, lines)

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

    # ------------------------------------------------------------------ steps
    def _require_keys(self, frame: pd.DataFrame) -> None:
        missing = [c for c in ("device_id", "ts") if c not in frame.columns]
        if missing:
            found = ", ".join(str(c) for c in frame.columns if c not in META_COLUMNS) or "none"
            where = f"{self.source}: " if self.source else ""
            raise ValidationError(f"{where}required column(s) {', '.join(missing)} missing; found columns: {found}")

    def _check_keys(self, found: Findings, candidate: np.ndarray, devices: Devices, ms: np.ndarray) -> None:
        """Duplicate ``(device_id, ts)`` and out-of-order rows among the rows that passed so far."""
        names, codes = devices.names, devices.codes
        dup, order, prev_max = self._key_checks(candidate, codes, names, ms)
        found.add(
            "duplicate",
            dup,
            reason(
                lambda pos: [
                    f"duplicate (device_id, ts) = ({d!r}, {t}): already seen earlier in this input"
                    for d, t in zip(names[codes[pos]], iso(ms[pos]))
                ]
            ),
        )
        found.add(
            "order",
            order,
            reason(
                lambda pos: [
                    f"ts={t} out of order: not after the previous reading of {d!r} at {p}"
                    for d, t, p in zip(names[codes[pos]], iso(ms[pos]), iso(prev_max[pos]))
                ]
            ),
        )

    def _accepted_frame(
        self,
        acc_pos: np.ndarray,
        devices: Devices,
        ms: np.ndarray,
        values: dict[str, np.ndarray],
        state: np.ndarray | None,
        fault: np.ndarray | None,
        changepoint: np.ndarray | None,
    ) -> pd.DataFrame:
        out: dict[str, Any] = {
            "device_id": devices.names[devices.codes[acc_pos]],
            "ts": ms[acc_pos].astype("datetime64[ms]").astype("datetime64[ns]"),
        }
        if state is not None:
            out["state"] = state[acc_pos]
        for signal in self.signals:
            out[signal] = values[signal][acc_pos]
        if fault is not None:
            out["fault"] = fault[acc_pos]
        if changepoint is not None:
            out["changepoint"] = pd.array(changepoint[acc_pos], dtype="Float64").astype("Int64")
        return text_columns(pd.DataFrame(out))

    def _count(
        self,
        report: ValidationReport,
        n: int,
        acc_pos: np.ndarray,
        found: Findings,
        devices: Devices,
        values: dict[str, np.ndarray],
    ) -> None:
        """Rows, rejections per check, and accepted and missing readings per device."""
        report.rows = n
        report.accepted = len(acc_pos)
        report.rejected = n - len(acc_pos)
        for check, count in found.counts().items():
            report.checks[check] = report.checks.get(check, 0) + count
        if not len(acc_pos):
            return
        names = devices.names
        acc_codes = devices.codes[acc_pos]
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

    def _rejected_frame(
        self,
        frame: pd.DataFrame,
        rej_pos: np.ndarray,
        found: Findings,
        devices: Devices,
        ms: np.ndarray,
        ts_bad: np.ndarray,
    ) -> pd.DataFrame:
        if len(rej_pos) == 0:
            return empty_rejected()
        reasons, first = found.reasons(rej_pos)
        if "_line" in frame.columns:
            line = pd.array(pd.to_numeric(frame["_line"].iloc[rej_pos], errors="coerce"), dtype="Int64")
        else:
            line = pd.array([pd.NA] * len(rej_pos), dtype="Int64")
        safe_names = np.array([safe_text(str(v), MAX_DEVICE_ID) for v in devices.names], dtype=object)
        device = np.where(devices.raw_codes[rej_pos] < 0, None, safe_names[devices.codes[rej_pos]]).astype(object)  # type: ignore[attr-defined]
        ts = pd.array(np.where(ts_bad[rej_pos], 0, ms[rej_pos]), dtype="Int64")
        ts[ts_bad[rej_pos]] = pd.NA
        return pd.DataFrame(
            {
                "reason": reasons,
                "check": first,
                "line": line,
                "device_id": device,
                "ts": ts,
                "raw": raw_json(frame, rej_pos, self.raw_names),
            }
        )

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
        before = np.array([self._last.get(str(d), INT64_MIN) for d in names], dtype=np.int64)
        prior = before[c_codes]
        series = pd.Series(c_ts)
        prev_in_chunk = series.groupby(c_codes, sort=False).shift(1).groupby(c_codes, sort=False).cummax()
        prev = prev_in_chunk.to_numpy(dtype=float, na_value=np.nan)
        prev_int = np.where(np.isnan(prev), INT64_MIN, np.nan_to_num(prev, nan=0.0)).astype(np.int64)
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
            self._last[device] = max(self._last.get(device, INT64_MIN), int(ms_part[-1]))
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
        return text_columns(pd.DataFrame(out))


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
