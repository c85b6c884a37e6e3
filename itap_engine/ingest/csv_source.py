"""CSV import: map any wide or long CSV onto a profile and feed it to the pipeline.

* **Wide** files have a timestamp column and one column per signal, plus an optional
  device column (else ``--device``, else a device id derived from the file name,
  e.g. ``skab-valve1-0`` for ``skab/valve1/0.csv``).
* **Long** files have ``device, ts, signal, value`` columns; each chunk is pivoted to
  wide. The rows of one ``(device, ts)`` may straddle a chunk boundary, so for every
  device the rows at its latest timestamp in a chunk are held back and prepended to
  the next chunk (long files are expected to keep each instant's rows together, in
  time order; a ``(device, ts)`` that reappears later is rejected as a duplicate).

Why the reader is built this way: the file is streamed in blocks of ``chunk_rows``
lines, so memory stays flat however large the file. Each block's field counts are
computed first (vectorised over the block's bytes), so a line with too many or too
few fields becomes a quarantined row naming its line number instead of a crash (or,
worse, a short line silently read as missing values). The well-formed lines of the
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
import gzip
import io
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from itap_engine.config import Settings
from itap_engine.errors import ItapError
from itap_engine.ingest.pipeline import IngestReport, IngestRun
from itap_engine.ingest.validate import LABELS, ValidationReport, Validator
from itap_engine.store.sql import Store

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


class CsvImportError(ItapError):
    """A CSV file cannot be imported as a whole; the message names the file."""


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

    @property
    def raw_names(self) -> dict[str, str]:
        return {canonical: original for original, canonical in self.rename.items()}


# ---------------------------------------------------------------------- planning
def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115


def _check_file(path: Path) -> None:
    if not path.exists():
        raise CsvImportError(f"{path}: no such file")
    if path.is_dir():
        raise CsvImportError(f"{path}: is a directory, not a CSV file")
    try:
        with _open_binary(path) as fh:
            fh.read(1)
    except OSError as error:
        raise CsvImportError(f"{path}: cannot read: {error.strerror or error}") from None


def _sep_value(sep: str | None) -> str | None:
    if sep is None:
        return None
    named = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
    sep = named.get(sep.lower(), sep)
    if len(sep) != 1 or not sep.isascii() or sep in "\r\n\"":
        raise CsvImportError(f"separator {sep!r} is not supported: give one character such as ',' ';' '|' or 'tab'")
    return sep


def _split(line: str, sep: str) -> list[str]:
    return next(csv.reader([line], delimiter=sep), [])


def _read_header(path: Path, sep: str | None, default_sep: str) -> tuple[str, list[str]]:
    with _open_binary(path) as fh:
        first = fh.readline()
    if not first:
        raise CsvImportError(f"{path}: file is empty (a header line is expected)")
    text = first.decode("utf-8-sig", errors="replace").rstrip("\r\n")
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
    known = set(profile_signals) if profile_signals is not None else {
        s for spec in settings.profiles.values() for s in spec.signals
    }
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


def plan_csv(
    settings: Settings,
    path: str | Path,
    *,
    profile: str | None = None,
    device: str | None = None,
    sep: str | None = None,
    ts_column: str | None = None,
    device_column: str | None = None,
    mapping: dict[str, str] | None = None,
    long: bool | None = None,
) -> CsvPlan:
    """Work out how a file maps onto a profile; raises :class:`CsvImportError` if it cannot.

    Options left as None come from ``[import]`` in config or are detected from the
    header (separator, timestamp and device columns, wide or long, profile).
    """
    path = Path(path)
    _check_file(path)
    imp = settings.import_
    mapping = dict(mapping or {})
    sep_used, header = _read_header(path, _sep_value(sep), _sep_value(imp.sep) or ",")
    for source, target in mapping.items():
        if target == "fault" and source not in header:
            raise CsvImportError(f"{path}: no label column {source!r} in the header ({', '.join(header)})")
    ts_col = _find(header, ts_column or imp.timestamp_column, TS_ALIASES)
    if ts_col is None:
        raise CsvImportError(
            f"{path}: no timestamp column {ts_column or imp.timestamp_column!r} in the header "
            f"({', '.join(header)}); use --ts-column NAME"
        )
    if ts_column and ts_col != ts_column:
        raise CsvImportError(f"{path}: no column {ts_column!r} in the header ({', '.join(header)})")
    dev_col = None if device else _find(header, device_column or imp.device_column, DEVICE_ALIASES)
    if device_column and not device and dev_col != device_column:
        raise CsvImportError(f"{path}: no device column {device_column!r} in the header ({', '.join(header)})")
    fixed_device = device if device or dev_col else _derived_device(path)
    if profile is not None:
        settings.profile(profile)

    sig_col = _find(header, None, LONG_SIGNAL)
    val_col = _find(header, None, LONG_VALUE)
    is_long = long if long is not None else (
        sig_col is not None and val_col is not None
        and not (set(_signal_map(header, settings, mapping, None).values()) - {"state", *LABELS})
    )
    if is_long:
        if sig_col is None or val_col is None:
            raise CsvImportError(
                f"{path}: a long CSV needs 'signal' and 'value' columns besides device and ts; found {', '.join(header)}"
            )
        names = _peek_long_signals(path, sep_used, sig_col, imp.chunk_rows)
        chosen = profile or _choose_profile(path, settings, names, mapping)
        spec = settings.profile(chosen)
        signal_names = _signal_map(names, settings, mapping, spec.signal_names)
        rename = {ts_col: "ts"}
        if dev_col:
            rename[dev_col] = "device_id"
        return CsvPlan(
            path, chosen, sep_used, header, True, ts_col, dev_col, fixed_device, rename, sig_col, val_col, signal_names
        )

    others = [h for h in header if h not in (ts_col, dev_col)]
    chosen = profile or _choose_profile(path, settings, others, mapping)
    spec = settings.profile(chosen)
    rename = {ts_col: "ts"}
    if dev_col:
        rename[dev_col] = "device_id"
    for name, target in _signal_map(others, settings, mapping, spec.signal_names).items():
        if target not in rename.values():
            rename[name] = target
    final: dict[str, str] = {}
    for column in header:
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
            f"found {', '.join(header)}; use --map CSV=signal"
        )
    return CsvPlan(path, chosen, sep_used, header, False, ts_col, dev_col, fixed_device, rename)


def _peek_long_signals(path: Path, sep: str, column: str, rows: int) -> list[str]:
    try:
        with _open_binary(path) as fh:
            head = pd.read_csv(
                fh, sep=sep, usecols=[column], nrows=rows, dtype=str, keep_default_na=False,
                encoding="utf-8-sig", encoding_errors="replace", on_bad_lines="skip",
            )
    except (ValueError, pd.errors.ParserError) as error:
        raise CsvImportError(f"{path}: cannot read the signal column {column!r}: {error}") from None
    return [str(v).strip() for v in pd.unique(head[column]) if str(v).strip()]


# ---------------------------------------------------------------------- reading
_UNCLOSED_QUOTE = -1
"""Field count recorded for a line with an unclosed quote."""


def _blocks(path: Path, sep: str, header: list[str], chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Raw string frames of ``chunk_rows`` lines, with ``_line`` and, for lines that
    do not have the header's number of fields, ``_error`` and ``_raw``."""
    ncols = len(header)
    sepb = sep.encode()[0]
    with _open_binary(path) as fh:
        fh.readline()
        line_no = 1
        while True:
            try:
                lines = list(islice(fh, chunk_rows))
            except (OSError, EOFError, zlib.error) as error:  # a truncated or corrupt .gz
                raise CsvImportError(f"{path}: unreadable after line {line_no}: {error}") from None
            if not lines:
                return
            numbers = np.arange(line_no + 1, line_no + 1 + len(lines))
            line_no += len(lines)
            buf = b"".join(lines)
            if not buf.endswith(b"\n"):
                buf += b"\n"
            arr = np.frombuffer(buf, dtype=np.uint8)
            ends = np.flatnonzero(arr == 10)
            fields = np.bincount(np.searchsorted(ends, np.flatnonzero(arr == sepb)), minlength=len(ends)) + 1
            blank = np.zeros(len(ends), dtype=bool)
            for i in np.flatnonzero(fields == 1):  # a blank line has no separator
                blank[i] = not lines[i].strip()
            if 34 in arr:  # quotes: count fields properly on the lines that have them
                for i in np.unique(np.searchsorted(ends, np.flatnonzero(arr == 34))):
                    text = lines[i].decode("utf-8", errors="replace").rstrip("\r\n")
                    # an unclosed quote would swallow the following lines: malformed
                    fields[i] = _UNCLOSED_QUOTE if text.count('"') % 2 else len(_split(text, sep))
            bad = ~blank & (fields != ncols)
            good = ~blank & ~bad
            if good.all():
                data = _parse(buf, sep, header)
            else:
                idx = np.flatnonzero(good)
                data = _parse(b"".join(lines[i] if lines[i].endswith(b"\n") else lines[i] + b"\n" for i in idx), sep, header)
            if len(data) != int(good.sum()):
                raise CsvImportError(
                    f"{path}: lines {numbers[0]}-{numbers[-1]} could not be split into rows "
                    "(a quoted field spanning lines?)"
                )
            data["_line"] = numbers[good]
            if bad.any():
                data = pd.concat([data, _bad_rows(lines, numbers, bad, fields, sep, header)], ignore_index=True)
                data = data.sort_values("_line", kind="stable", ignore_index=True)
            yield data


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
    lines: list[bytes], numbers: np.ndarray, bad: np.ndarray, fields: np.ndarray, sep: str, header: list[str]
) -> pd.DataFrame:
    records = []
    for i in np.flatnonzero(bad):
        text = lines[i].decode("utf-8", errors="replace").rstrip("\r\n")
        values = _split(text, sep)
        record: dict[str, Any] = {name: (values[k] if k < len(values) else None) for k, name in enumerate(header)}
        record["_line"] = int(numbers[i])
        record["_error"] = (
            "unclosed quote" if fields[i] == _UNCLOSED_QUOTE else f"expected {len(header)} fields, found {fields[i]}"
        )
        record["_raw"] = text
        records.append(record)
    return pd.DataFrame.from_records(records)


def read_frames(plan: CsvPlan, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The file as frames ready for the validator: canonical column names, ``_line``
    (and ``_error``/``_raw``/``_check`` for rows the reader rejects)."""
    blocks = _blocks(plan.path, plan.sep, plan.header, max(1, chunk_rows))
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


def _pivot_long(
    plan: CsvPlan, block: pd.DataFrame, carry: pd.DataFrame | None, *, final: bool
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Pivot a block of long rows (plus rows carried from the previous block) to wide."""
    frame = block.rename(columns=plan.rename).rename(columns={plan.signal_column: "_signal", plan.value_column: "_value"})
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
        return pd.DataFrame({"device_id": pd.Series([], dtype=object), "ts": pd.Series([], dtype=object),
                             "_line": pd.Series([], dtype="int64")})
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
def _mapping_option(pairs: Sequence[str] | None) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise CsvImportError(f"--map {pair!r}: expected CSV_COLUMN=signal")
        source, target = pair.split("=", 1)
        mapping[source.strip()] = target.strip()
    return mapping


def import_csv(
    store: Store,
    settings: Settings,
    path: str | Path,
    *,
    profile: str | None = None,
    device: str | None = None,
    sep: str | None = None,
    ts_column: str | None = None,
    device_column: str | None = None,
    mapping: dict[str, str] | None = None,
    long: bool | None = None,
    chunk_rows: int | None = None,
    now: datetime | None = None,
) -> IngestReport:
    """Validate and store one CSV file as one ingestion run."""
    plan = plan_csv(
        settings, path, profile=profile, device=device, sep=sep, ts_column=ts_column,
        device_column=device_column, mapping=mapping, long=long,
    )
    with IngestRun(store, settings, plan.profile, kind="ingest", source=str(plan.path), now=now) as run:
        assert run.validator is not None
        run.validator.raw_names = plan.raw_names
        for frame in read_frames(plan, chunk_rows or settings.import_.chunk_rows):
            run.add(frame)
    return run.report


def validate_csv(
    settings: Settings,
    path: str | Path,
    *,
    profile: str | None = None,
    device: str | None = None,
    sep: str | None = None,
    ts_column: str | None = None,
    device_column: str | None = None,
    mapping: dict[str, str] | None = None,
    long: bool | None = None,
    chunk_rows: int | None = None,
    now: datetime | None = None,
) -> tuple[CsvPlan, ValidationReport]:
    """Validate a CSV file without storing anything."""
    plan = plan_csv(
        settings, path, profile=profile, device=device, sep=sep, ts_column=ts_column,
        device_column=device_column, mapping=mapping, long=long,
    )
    validator = Validator(settings.profile(plan.profile), settings.validation, now=now, source=str(plan.path))
    validator.raw_names = plan.raw_names
    for frame in read_frames(plan, chunk_rows or settings.import_.chunk_rows):
        validator.validate(frame)
    return plan, validator.finish()
