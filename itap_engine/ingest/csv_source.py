"""CSV import: map any wide or long CSV onto a profile and feed it to the pipeline.

* **Wide** files have a timestamp column and one column per signal, plus an optional
  device column (else ``--device``, else a device id derived from the file name,
  e.g. ``skab-valve1-0`` for ``skab/valve1/0.csv``).
* **Long** files have ``device, ts, signal, value`` columns; each chunk is pivoted to
  wide. The rows of one ``(device, ts)`` may straddle a chunk boundary, so for every
  device the rows at its latest timestamp in a chunk are held back and prepended to
  the next chunk (long files are expected to keep each instant's rows together, in
  time order; a ``(device, ts)`` that reappears later is rejected as a duplicate).

Why the reader is built this way: the input is opened once and read once by
:class:`~itap_engine.ingest.csv_stream.CsvSource` (files, gzip, FIFOs, pipes and stdin; bounded
lines; strict text) and streamed in blocks of ``chunk_rows`` lines, so memory stays
flat however large the file. Each block's field counts are
computed first (vectorised over the block's bytes), so a line with too many or too
few fields becomes a quarantined row naming its line number instead of a crash (or,
worse, a short line silently read as missing values); so does a line over
``[import] max_line_bytes``, a field over ``max_field_bytes`` and, in an LF or CRLF
file, a bare CR inside a line. The well-formed lines of the
block are then parsed by pandas' fast C engine with ``dtype=str``, so nothing is
coerced before validation. Blank lines are skipped; a quoted field spanning lines is
not supported (its lines are quarantined as malformed).

Column mapping: ``--map CSV=signal`` options, then ``[import.columns]`` in config,
then exact names, then names equal after normalisation (``Temp C`` -> ``temp_c``).
The profile is ``--profile`` or the declared profile whose signals the columns cover
best. Naive timestamps are taken as UTC (SKAB's local wall-clock times are stored as
written).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from itap_engine.config import Settings
from itap_engine.ingest.csv_stream import CsvImportError, CsvSource, Line, Oversize, is_pipe_name
from itap_engine.ingest.pipeline import IngestReport, ingest_source
from itap_engine.ingest.validate import LABELS, ValidationReport, Validator
from itap_engine.store.protocol import TelemetryStore

__all__ = [
    "CsvImportError",
    "CsvPlan",
    "import_csv",
    "plan_csv",
    "read_frames",
    "validate_csv",
]

SEPARATORS = (",", ";", "\t", "|")
TS_ALIASES = ("ts", "timestamp", "datetime", "time", "date")
DEVICE_ALIASES = ("device_id", "device", "deviceid")
LONG_SIGNAL = ("signal", "sensor", "variable", "name")
LONG_VALUE = ("value", "reading")
MIN_COVERAGE = 0.5
"""A profile is chosen automatically only if the columns cover at least this share of its signals."""


@dataclass(frozen=True)
class CsvPlan:
    """How a CSV file maps onto a profile; built by :func:`plan_csv`."""

    path: Path
    profile: str
    sep: str
    header: list[str]
    long: bool
    ts_column: str
    device_column: str | None
    """The file's device column, or None when ``device`` is used for every row."""
    device: str | None
    rename: dict[str, str] = field(default_factory=dict)
    """File column -> canonical column (ts, device_id, a signal, a label)."""
    signal_column: str | None = None
    value_column: str | None = None
    signal_names: dict[str, str] = field(default_factory=dict)
    """Long format: name used in the file's signal column -> profile signal."""
    source: CsvSource | None = field(default=None, compare=False, repr=False)
    """The input, opened once by :func:`plan_csv`; :func:`read_frames` reads on from it."""
    encoding: str | None = None
    max_field_bytes: int = 64 * 1024

    @property
    def raw_names(self) -> dict[str, str]:
        return {canonical: original for original, canonical in self.rename.items()}


# ---------------------------------------------------------------------- planning
def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def _sep_value(sep: str | None) -> str | None:
    if sep is None:
        return None
    named = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
    sep = named.get(sep.lower(), sep)
    if len(sep) != 1 or not sep.isascii() or sep in '\r\n"':
        raise CsvImportError(f"separator {sep!r} is not supported: give one character such as ',' ';' '|' or 'tab'")
    return sep


def _split(line: str, sep: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=sep), [])
    except csv.Error:  # a field over the csv module's limit, a stray line break
        return line.split(sep)


def _read_header(path: Path, first: bytes | None, sep: str | None, default_sep: str) -> tuple[str, list[str]]:
    if first is None:
        raise CsvImportError(f"{path}: file is empty (a header line is expected)")
    text = first.decode("utf-8", errors="replace").rstrip("\r\n")
    if "\x00" in text:
        raise CsvImportError(
            f"{path}: line 1 contains NUL bytes: UTF-16 without a BOM? give the file's encoding with --encoding, "
            "e.g. --encoding utf-16-le"
        )
    if not text.strip():
        raise CsvImportError(f"{path}: no header: line 1 is empty")
    counts = {s: len(_split(text, s)) for s in SEPARATORS}
    chosen = sep or default_sep
    fields = _split(text, chosen)
    if len(fields) == 1:
        likely = max(counts, key=lambda s: counts[s])
        if counts[likely] > 1 and likely != chosen:
            if sep is not None:
                raise CsvImportError(
                    f"{path}: line 1 has one column with separator {chosen!r}, but {counts[likely]} with "
                    f"{likely!r}: use --sep {likely!r}"
                )
            chosen, fields = likely, _split(text, likely)
    fields = [f.strip() for f in fields]
    if all(_looks_like_value(f) for f in fields if f):
        raise CsvImportError(f"{path}: no header: line 1 looks like data ({text[:60]!r}); add a header line")
    if any(not f for f in fields):
        raise CsvImportError(f"{path}: header (line 1) has an empty column name: {text[:80]!r}")
    seen: set[str] = set()
    for name in fields:
        if name in seen:
            raise CsvImportError(f"{path}: header (line 1) names column {name!r} twice")
        seen.add(name)
    return chosen, fields


def _looks_like_value(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        pass
    return bool(re.match(r"^\d{4}-\d{2}-\d{2}", text))


def _find(header: Sequence[str], wanted: str | None, aliases: Sequence[str]) -> str | None:
    if wanted and wanted in header:
        return wanted
    normed = {_norm(h): h for h in header}
    for name in ([wanted] if wanted else []) + list(aliases):
        if name and _norm(name) in normed:
            return normed[_norm(name)]
    return None


def _derived_device(path: Path) -> str:
    if is_pipe_name(str(path)):
        raise CsvImportError(
            f"{path}: no device column, and a pipe has no file name to name the device after: use --device ID"
        )
    parts = [path.parent.name, path.name.split(".")[0]]
    ancestors = [p.name.lower() for p in path.resolve().parents]
    if "skab" in ancestors and path.parent.name.lower() != "skab":
        parts.insert(0, "skab")
    slug = "-".join(re.sub(r"[^A-Za-z0-9._]+", "-", p).strip("-") for p in parts if p)
    return slug[:128] or "device"


def _signal_map(
    names: Sequence[str], settings: Settings, mapping: dict[str, str], profile_signals: Sequence[str] | None
) -> dict[str, str]:
    """Source name -> signal/label, for names that map to something known."""
    known = (
        set(profile_signals)
        if profile_signals is not None
        else {s for spec in settings.profiles.values() for s in spec.signals}
    )
    known |= {"state", *LABELS}
    normed_known = {_norm(k): k for k in known}
    combined = {**settings.import_.columns, **mapping}
    out: dict[str, str] = {}
    for name in names:
        if name in combined:
            out[name] = combined[name]
        elif name in known:
            out[name] = name
        elif _norm(name) in normed_known:
            out[name] = normed_known[_norm(name)]
    return out


def _choose_profile(path: Path, settings: Settings, names: Sequence[str], mapping: dict[str, str]) -> str:
    mapped = set(_signal_map(names, settings, mapping, None).values())
    best: tuple[float, int, str] | None = None
    for name, spec in settings.profiles.items():
        covered = len(mapped & set(spec.signals))
        score = (covered / len(spec.signals), covered, name)
        if covered and (best is None or score[:2] > best[:2]):
            best = score
    if best is None or best[0] < MIN_COVERAGE:
        expected = "; ".join(f"{n}: {', '.join(spec.signals)}" for n, spec in settings.profiles.items())
        raise CsvImportError(
            f"{path}: no profile fits the columns {', '.join(names)}; profiles expect {expected}. "
            "Use --profile P and --map CSV=signal"
        )
    return best[2]


@dataclass(frozen=True)
class CsvOptions:
    """How to read a CSV file: every option of ``itap ingest`` and ``itap validate``.

    Options left as None come from ``[import]`` in config or are detected from the
    header (separator, timestamp and device columns, wide or long, profile).
    """

    profile: str | None = None
    device: str | None = None
    """One device id for every row (the file has no device column)."""
    sep: str | None = None
    ts_column: str | None = None
    device_column: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)
    """File column -> signal or label (``fault``)."""
    long: bool | None = None
    chunk_rows: int | None = None
    encoding: str | None = None


def plan_csv(settings: Settings, path: str | Path, options: CsvOptions | None = None) -> CsvPlan:
    """Work out how a file maps onto a profile; raises :class:`CsvImportError` if it cannot.

    The input is opened here, once; the plan carries it to :func:`read_frames` (close
    it with ``plan.source.close()`` if the plan is not read).
    """
    options = options or CsvOptions()
    path = Path(path)
    imp = settings.import_
    source = CsvSource(path, encoding=options.encoding or imp.encoding, max_line_bytes=imp.max_line_bytes)
    try:
        return _plan(settings, path, source, options)
    except BaseException:
        source.close()
        raise


@dataclass(frozen=True)
class _Columns:
    """The header's key columns: separator, header, timestamp and device column."""

    sep: str
    header: list[str]
    ts: str
    device: str | None
    fixed_device: str | None


def _key_columns(settings: Settings, path: Path, source: CsvSource, options: CsvOptions) -> _Columns:
    imp = settings.import_
    sep, header = _read_header(path, source.header, _sep_value(options.sep), _sep_value(imp.sep) or ",")
    for source_col, target in options.mapping.items():
        if target == "fault" and source_col not in header:
            raise CsvImportError(f"{path}: no label column {source_col!r} in the header ({', '.join(header)})")
    wanted_ts = options.ts_column
    ts_col = _find(header, wanted_ts or imp.timestamp_column, TS_ALIASES)
    if ts_col is None:
        raise CsvImportError(
            f"{path}: no timestamp column {wanted_ts or imp.timestamp_column!r} in the header "
            f"({', '.join(header)}); use --ts-column NAME"
        )
    if wanted_ts and ts_col != wanted_ts:
        raise CsvImportError(f"{path}: no column {wanted_ts!r} in the header ({', '.join(header)})")
    device, wanted_dev = options.device, options.device_column
    dev_col = None if device else _find(header, wanted_dev or imp.device_column, DEVICE_ALIASES)
    if wanted_dev and not device and dev_col != wanted_dev:
        raise CsvImportError(f"{path}: no device column {wanted_dev!r} in the header ({', '.join(header)})")
    fixed = device if device or dev_col else _derived_device(path)
    return _Columns(sep, header, ts_col, dev_col, fixed)


def _plan(settings: Settings, path: Path, source: CsvSource, options: CsvOptions) -> CsvPlan:
    imp = settings.import_
    extra: dict[str, Any] = {"source": source, "encoding": source.encoding, "max_field_bytes": imp.max_field_bytes}
    cols = _key_columns(settings, path, source, options)
    if options.profile is not None:
        settings.profile(options.profile)
    sig_col = _find(cols.header, None, LONG_SIGNAL)
    val_col = _find(cols.header, None, LONG_VALUE)
    is_long = (
        options.long
        if options.long is not None
        else (
            sig_col is not None
            and val_col is not None
            and not (set(_signal_map(cols.header, settings, options.mapping, None).values()) - {"state", *LABELS})
        )
    )
    rename = {cols.ts: "ts"}
    if cols.device:
        rename[cols.device] = "device_id"
    args = (path, cols.sep, cols.header)
    keys = (cols.ts, cols.device, cols.fixed_device)
    if is_long:
        if sig_col is None or val_col is None:
            raise CsvImportError(
                f"{path}: a long CSV needs 'signal' and 'value' columns besides device and ts; "
                f"found {', '.join(cols.header)}"
            )
        names = _peek_long_signals(path, source, cols.sep, sig_col, imp.chunk_rows)
        chosen = options.profile or _choose_profile(path, settings, names, options.mapping)
        _check_mapping(path, options.mapping, chosen, list(settings.profile(chosen).signals), None)
        signal_names = _signal_map(names, settings, options.mapping, settings.profile(chosen).signal_names)
        return CsvPlan(args[0], chosen, args[1], args[2], True, *keys, rename, sig_col, val_col, signal_names, **extra)
    chosen, rename = _wide_columns(settings, path, cols, options, rename)
    return CsvPlan(args[0], chosen, args[1], args[2], False, *keys, rename, **extra)


def _wide_columns(
    settings: Settings, path: Path, cols: _Columns, options: CsvOptions, rename: dict[str, str]
) -> tuple[str, dict[str, str]]:
    """A wide file's profile and its column -> signal or label renames."""
    others = [h for h in cols.header if h not in (cols.ts, cols.device)]
    chosen = options.profile or _choose_profile(path, settings, others, options.mapping)
    spec = settings.profile(chosen)
    _check_mapping(path, options.mapping, chosen, list(spec.signals), cols.header)
    rename = dict(rename)
    for name, target in _signal_map(others, settings, options.mapping, spec.signal_names).items():
        if target not in rename.values():
            rename[name] = target
    final: dict[str, str] = {}
    for column in cols.header:
        name = rename.get(column, column)
        if name in final:
            raise CsvImportError(
                f"{path}: columns {final[name]!r} and {column!r} both stand for {name!r}; "
                "rename one in the file or choose with --map CSV=signal"
            )
        final[name] = column
    if not set(rename.values()) & set(spec.signals):
        raise CsvImportError(
            f"{path}: no column maps onto a signal of profile {chosen} ({', '.join(spec.signals)}); "
            f"found {', '.join(cols.header)}; use --map CSV=signal"
        )
    return chosen, rename


def _check_mapping(
    path: Path, mapping: dict[str, str], profile: str, signals: list[str], header: list[str] | None
) -> None:
    """Every ``--map CSV=signal`` names a column of the file (wide files; a long file's
    names are in its signal column) and a signal, ``state`` or a label of ``profile``:
    a typo stored every row with that signal empty, or was ignored."""
    for source_col, target in mapping.items():
        if header is not None and source_col not in header:
            raise CsvImportError(
                f"{path}: --map {source_col}={target}: no column {source_col!r} in the header ({', '.join(header)})"
            )
        if target not in {*signals, "state", *LABELS}:
            raise CsvImportError(
                f"{path}: --map {source_col}={target}: {target!r} is not a signal of profile {profile} "
                f"({', '.join(signals)}), 'state' or a label ({', '.join(LABELS)})"
            )


def _peek_long_signals(path: Path, source: CsvSource, sep: str, column: str, rows: int) -> list[str]:
    """Signal names in the first ``rows`` lines, peeked from the source (not consumed)."""
    lines = [line for line in source.peek(rows) if not isinstance(line, Oversize)]
    buf = b"\n".join([source.header or b"", *lines]) + b"\n"
    try:
        head = pd.read_csv(
            io.BytesIO(buf),
            sep=sep,
            usecols=[column],
            dtype=str,
            keep_default_na=False,
            encoding="utf-8",
            encoding_errors="replace",
            on_bad_lines="skip",
        )
    except (ValueError, pd.errors.ParserError) as error:
        raise CsvImportError(f"{path}: cannot read the signal column {column!r}: {error}") from None
    return [str(v).strip() for v in pd.unique(head[column]) if str(v).strip()]


# ---------------------------------------------------------------------- reading
_UNCLOSED_QUOTE = -1
"""Field count recorded for a line with an unclosed quote."""


def _blocks(source: CsvSource, sep: str, header: list[str], chunk_rows: int, max_field: int) -> Iterator[pd.DataFrame]:
    """Raw string frames of ``chunk_rows`` lines, with ``_line`` and, for lines that
    cannot be read as a row, ``_error`` and ``_raw``."""
    ncols = len(header)
    sepb = sep.encode()
    line_no = 1
    for chunk in source.chunks(chunk_rows):
        n = len(chunk)
        numbers = np.arange(line_no + 1, line_no + 1 + n)
        line_no += n
        big = np.fromiter((isinstance(line, Oversize) for line in chunk), dtype=bool, count=n)
        lines: list[bytes] = [b"" if b else line for line, b in zip(chunk, big)] if big.any() else chunk  # type: ignore[assignment, misc]
        buf = b"\n".join(lines) + b"\n"
        arr = np.frombuffer(buf, dtype=np.uint8)
        ends = np.flatnonzero(arr == 10)
        fields = np.bincount(np.searchsorted(ends, np.flatnonzero(arr == sepb[0])), minlength=len(ends)) + 1
        blank = np.zeros(n, dtype=bool)
        for i in np.flatnonzero((fields == 1) & ~big):  # a blank line has no separator
            blank[i] = not lines[i].strip()
        reasons: dict[int, str] = {}
        """Lines the reader refuses for a reason of their own."""
        for i in np.flatnonzero(big):
            reasons[int(i)] = f"line is {chunk[i].length} bytes long (max {source.max_line_bytes}); not read"  # type: ignore[union-attr]
        crs = np.flatnonzero(arr == 13)
        if len(crs):  # a CR not followed by the LF is not a line break: the line is malformed
            for i in np.unique(np.searchsorted(ends, crs[arr[crs + 1] != 10])):
                if not blank[i]:
                    reasons.setdefault(int(i), "carriage return (\\r) inside the line")
        starts = np.concatenate(([0], ends[:-1] + 1))
        for i in np.flatnonzero((ends - starts) > max_field):
            longest = max(map(len, lines[i].split(sepb)))
            if longest > max_field:
                reasons.setdefault(int(i), f"a field is {longest} bytes long (max {max_field})")
        if 34 in arr:  # quotes: count fields properly on the lines that have them
            for i in np.unique(np.searchsorted(ends, np.flatnonzero(arr == 34))):
                if int(i) in reasons:
                    continue
                text = lines[i].decode("utf-8", errors="replace").rstrip("\r")
                # an unclosed quote would swallow the following lines: malformed
                fields[i] = _UNCLOSED_QUOTE if text.count('"') % 2 else len(_split(text, sep))
        refused = np.zeros(n, dtype=bool)
        refused[list(reasons)] = True
        bad = ~blank & (refused | (fields != ncols))
        good = ~blank & ~bad
        idx = np.flatnonzero(good)
        data = _parse(buf if good.all() else b"".join(lines[i] + b"\n" for i in idx), sep, header)
        if len(data) != len(idx):  # the fast parser saw the lines otherwise: split them one by one
            data, unsplit = _parse_each(lines, idx, sep, header)
            for i in unsplit:  # type: ignore[assignment]
                reasons[int(i)] = f"cannot be split into {ncols} fields"
                bad[i], good[i] = True, False
        data["_line"] = numbers[good]
        if bad.any():
            data = pd.concat([data, _bad_rows(chunk, numbers, bad, fields, reasons, sep, header)], ignore_index=True)
            data = data.sort_values("_line", kind="stable", ignore_index=True)
        yield data


def _parse_each(lines: list[bytes], idx: np.ndarray, sep: str, header: list[str]) -> tuple[pd.DataFrame, list[int]]:
    """The lines at ``idx`` split one at a time; those that do not give the header's
    number of fields are returned apart."""
    records, unsplit = [], []
    for i in idx:
        values = _split(lines[i].decode("utf-8", errors="replace").rstrip("\r"), sep)
        if len(values) == len(header):
            records.append([v if v != "" else None for v in values])
        else:
            unsplit.append(int(i))
    frame = pd.DataFrame(records, columns=header, dtype=object) if records else _parse(b"", sep, header)
    return frame, unsplit


def _parse(buf: bytes, sep: str, header: list[str]) -> pd.DataFrame:
    if not buf:
        return pd.DataFrame({name: pd.Series([], dtype=object) for name in header})
    return pd.read_csv(
        io.BytesIO(buf),
        sep=sep,
        header=None,
        names=header,
        dtype=str,
        keep_default_na=False,
        na_values=[""],
        skip_blank_lines=True,
        engine="c",
        encoding="utf-8",
        encoding_errors="replace",
        index_col=False,
    )


def _bad_rows(
    lines: list[Line],
    numbers: np.ndarray,
    bad: np.ndarray,
    fields: np.ndarray,
    reasons: dict[int, str],
    sep: str,
    header: list[str],
) -> pd.DataFrame:
    records = []
    for i in np.flatnonzero(bad):
        line = lines[i]
        record: dict[str, Any]
        if isinstance(line, Oversize):
            record = dict.fromkeys(header)
            record["_raw"] = {
                "head": line.head.decode("utf-8", errors="replace"),
                "length": line.length,
                "sha256": line.sha256,
            }
        else:
            text = line.decode("utf-8", errors="replace").rstrip("\r")
            values = _split(text, sep) if int(i) not in reasons else []
            record = {name: (values[k] if k < len(values) else None) for k, name in enumerate(header)}
            record["_raw"] = text
        record["_line"] = int(numbers[i])
        record["_error"] = reasons.get(int(i)) or (
            "unclosed quote" if fields[i] == _UNCLOSED_QUOTE else f"expected {len(header)} fields, found {fields[i]}"
        )
        records.append(record)
    return pd.DataFrame.from_records(records)


def read_frames(plan: CsvPlan, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The file as frames ready for the validator: canonical column names, ``_line``
    (and ``_error``/``_raw``/``_check`` for rows the reader rejects)."""
    source = _source_of(plan)
    try:
        yield from _frames(plan, source, chunk_rows)
    finally:
        source.close()


def _frames(plan: CsvPlan, source: CsvSource, chunk_rows: int) -> Iterator[pd.DataFrame]:
    blocks = _blocks(source, plan.sep, plan.header, max(1, chunk_rows), plan.max_field_bytes)
    if not plan.long:
        for block in blocks:
            frame = block.rename(columns=plan.rename)
            if plan.device is not None:
                frame["device_id"] = plan.device
            yield frame
        return
    carry: pd.DataFrame | None = None
    for block in blocks:
        frame, carry = _pivot_long(plan, block, carry, final=False)
        if len(frame):
            yield frame
    if carry is not None and len(carry):
        frame, _ = _pivot_long(plan, carry, None, final=True)
        if len(frame):
            yield frame


def _source_of(plan: CsvPlan) -> CsvSource:
    """The plan's input, positioned after the header: read once; a regular file that was
    read already is opened again (a pipe cannot be)."""
    source = plan.source
    if source is None or source.started:
        if source is not None and not source.regular:
            raise CsvImportError(f"{plan.path}: a pipe can be read only once")
        limit = source.max_line_bytes if source is not None else 1024 * 1024
        source = CsvSource(plan.path, encoding=plan.encoding, max_line_bytes=limit)
    return source


def _pivot_long(
    plan: CsvPlan, block: pd.DataFrame, carry: pd.DataFrame | None, *, final: bool
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Pivot a block of long rows (plus rows carried from the previous block) to wide."""
    frame = block.rename(columns=plan.rename).rename(
        columns={plan.signal_column: "_signal", plan.value_column: "_value"}
    )
    if plan.device is not None:
        frame["device_id"] = plan.device
    if carry is not None and len(carry):
        frame = pd.concat([carry, frame], ignore_index=True)
    if "_error" not in frame.columns:
        frame["_error"] = pd.Series([None] * len(frame), dtype=object)
    frame["_check"] = pd.Series([None] * len(frame), dtype=object)
    errors = frame[frame["_error"].notna()]
    rows = frame[frame["_error"].isna()].copy()
    sig_raw = rows["_signal"].fillna("").astype(str).str.strip()
    rows["_sigmap"] = sig_raw.map(plan.signal_names.get) if len(rows) else sig_raw
    unknown = rows["_sigmap"].isna()
    dup = ~unknown & rows.duplicated(["device_id", "ts", "_sigmap"], keep="first")
    problems = []
    if unknown.any():
        bad = rows[unknown].copy()
        bad["_error"] = [
            f"signal {s!r} is not a signal of profile {plan.profile}" for n, s in zip(bad["_line"], sig_raw[unknown])
        ]
        bad["_check"] = "columns"
        problems.append(bad)
    if dup.any():
        bad = rows[dup].copy()
        bad["_error"] = [
            f"duplicate (device_id, ts, signal) = ({d!r}, {t!r}, {s!r})"
            for n, d, t, s in zip(bad["_line"], bad["device_id"], bad["ts"], bad["_sigmap"])
        ]
        bad["_check"] = "duplicate"
        problems.append(bad)
    rows = rows[~unknown & ~dup]
    new_carry = None
    if not final and len(rows):
        stamps = pd.to_datetime(rows["ts"], errors="coerce", utc=True, format="ISO8601")
        latest = stamps.groupby(rows["device_id"].fillna(""), sort=False).transform("max")
        hold = (stamps == latest).to_numpy() & stamps.notna().to_numpy()
        new_carry = rows[hold].copy()
        rows = rows[~hold]
    wide = _to_wide(plan, rows)
    parts = [wide] + [
        p.drop(columns=["_signal", "_value", "_sigmap"], errors="ignore") for p in [errors, *problems] if len(p)
    ]
    out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else wide
    out = out.sort_values("_line", kind="stable", ignore_index=True)
    if new_carry is not None:
        new_carry = new_carry.drop(columns=["_check", "_sigmap"], errors="ignore")
    return out, new_carry


def _to_wide(plan: CsvPlan, rows: pd.DataFrame) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame(
            {
                "device_id": pd.Series([], dtype=object),
                "ts": pd.Series([], dtype=object),
                "_line": pd.Series([], dtype="int64"),
            }
        )
    keys = ["device_id", "ts"]
    rows = rows.assign(device_id=rows["device_id"].fillna(""), ts=rows["ts"].fillna(""))
    wide = rows.pivot(index=keys, columns="_sigmap", values="_value")
    wide.columns.name = None
    lines = rows.groupby(keys, sort=False)["_line"].min()
    wide = wide.join(lines).reset_index()
    wide["device_id"] = wide["device_id"].replace("", None)
    wide["ts"] = wide["ts"].replace("", None)
    return wide.sort_values("_line", kind="stable", ignore_index=True)


# ---------------------------------------------------------------------- entry points
def mapping_option(pairs: Sequence[str] | None) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise CsvImportError(f"--map {pair!r}: expected CSV_COLUMN=signal")
        source, target = pair.split("=", 1)
        mapping[source.strip()] = target.strip()
    return mapping


@dataclass(frozen=True)
class CsvFileSource:
    """A planned CSV file as a :class:`~itap_engine.ingest.source.TelemetrySource`."""

    plan: CsvPlan
    chunk_rows: int

    @property
    def name(self) -> str:
        return str(self.plan.path)

    @property
    def profile(self) -> str:
        return self.plan.profile

    @property
    def raw_names(self) -> dict[str, str]:
        return self.plan.raw_names

    def frames(self) -> Iterator[pd.DataFrame]:
        return read_frames(self.plan, self.chunk_rows)


def import_csv(
    store: TelemetryStore,
    settings: Settings,
    path: str | Path,
    options: CsvOptions | None = None,
    *,
    now: datetime | None = None,
) -> IngestReport:
    """Validate and store one CSV file (``-``: stdin) as one ingestion run."""
    options = options or CsvOptions()
    plan = plan_csv(settings, path, options)
    source = CsvFileSource(plan, options.chunk_rows or settings.import_.chunk_rows)
    return ingest_source(store, settings, source, kind="ingest", now=now)


def validate_csv(
    settings: Settings,
    path: str | Path,
    options: CsvOptions | None = None,
    *,
    now: datetime | None = None,
) -> tuple[CsvPlan, ValidationReport]:
    """Validate a CSV file without storing anything."""
    options = options or CsvOptions()
    plan = plan_csv(settings, path, options)
    validator = Validator(settings.profile(plan.profile), settings.validation, now=now, source=str(plan.path))
    validator.raw_names = plan.raw_names
    for frame in read_frames(plan, options.chunk_rows or settings.import_.chunk_rows):
        validator.validate(frame)
    return plan, validator.finish()
