"""``itap --once``: one headless cycle for cron, with a monitoring exit status.

One run takes the database's run lock, bootstraps an empty database (history and
models, as the engine's first start does), then runs one engine cycle
(:meth:`itap_engine.engine.core.EngineCore.tick`): fault commands from the
``fault_command`` table, the next simulated interval, CSV files dropped in
``paths.inbox_dir``, validation, ingestion, scores, alerts. It prints a summary (a
table on a terminal, plain text otherwise, or JSON with ``--json``) and may write a
self-contained HTML page (``--report FILE.html``).

Exit status (Nagios/Icinga plugin convention)::

    0 OK        no open alert, no validation alert in this run
    1 WARNING   an open warning-level alert, an alert this run opened and closed (a
                fault that came and went between two runs), a validation alert, a
                rejected inbox file, or rows that conflict with stored values (a
                corrected re-delivery)
    2 CRITICAL  an open critical alert
    3 UNKNOWN   the cycle could not run (an error, or another run holds the lock)

Open alerts count whether they were opened by this run or an earlier one, and
whether or not they were acknowledged: the status says how the fleet is now.

The interval. Each run simulates the wall time elapsed since the previous ``--once``
times ``engine.sim_speed``, at least one engine tick's worth (``sim_speed x
tick_seconds``) and at most :data:`MAX_INTERVAL_S` (6 simulated hours; a longer gap
is not back-filled: the simulated clock simply resumes), rounded down to whole
readings (``simulation.freq_s``). The first run after the
bootstrap simulates one tick's worth. The simulated clock is the same watermark the
engine uses, so cron and ``itap engine`` continue one timeline (they never run at
the same time: both take the lock). Inbox files are imported whatever their times.

The lock lives in the database (:mod:`itap_engine.store.run_lock`: a PostgreSQL advisory
lock, or a lease row on SQLite), so runs from different folders sharing one
``ITAP_DB_URL`` exclude each other too; a second run while one holds it exits 3 at
once naming the holder; a lease left by a killed run (its pid is gone) or silent
past its expiry is taken over.

JSON shape (``--json``, stable; ``schema`` changes if it ever does)::

    {
      "schema": "itap.once/1",
      "status": "OK" | "WARNING" | "CRITICAL" | "UNKNOWN",
      "exit_code": 0 | 1 | 2 | 3,
      "message": "one line: why this status",
      "error": null | "what went wrong (status UNKNOWN)",
      "run_id": 42,                       # the 'once' row of the run table (null on error)
      "started_at": "2026-11-21T07:00:00+00:00",   # wall clock, UTC
      "finished_at": "2026-11-21T07:00:02+00:00",
      "bootstrapped": false,              # true when this run filled an empty database
      "interval": {"from": "2026-01-01T06:00:00", "to": "2026-01-01T06:10:00",
                   "simulated_seconds": 600.0},            # simulated time, UTC
      "rows": {"in": 1500, "inserted": 1500, "duplicates": 0, "conflicts": 0, "quarantined": 0},
                                          # in = inserted + duplicates + conflicts + quarantined
      "sources": [{"source": "sim:industrial", "profile": "industrial", "run_id": 43,
                   "rows_in": 1200, "inserted": 1200, "duplicates": 0, "conflicts": 0, "quarantined": 0,
                   "status": "ok", "error": null}, ...],  # one per simulated profile / inbox file
      "scored": 1500,                     # readings scored in this run
      "validation_alerts": [{"level": "warning", "check": "missing_rate",
                             "device_id": "pump-003", "signal": "temp_c",
                             "message": "..."}, ...],      # raised by this run
      "alerts": {
        "opened": 1, "closed": 0,         # by this run
        "passed": [...],                  # opened and closed by this run (shape of "open")
        "open": [{"id": 7, "device_id": "pump-003", "profile": "industrial",
                  "severity": "critical", "family": "thermal",
                  "opened_at": "2026-01-01T06:04:10", "last_at": "2026-01-01T06:09:50",
                  "peak_score": 0.71, "threshold": 0.52, "acknowledged": false,
                  "contributors": [{"signal": "temp_c", "family": "thermal", "share": 0.83}, ...]},
                 ...]                     # every open alert, highest peak score first
      },
      "models": {"industrial": 3, "aircraft": 4},  # profile -> its active model (vN of that profile)
      "timings_s": {"bootstrap": 4.2, "commands": 0.01, "simulate": 0.02, "ingest": 0.1,
                    "inbox": 0.0, "read": 0.01, "score": 0.3, "store_scores": 0.01,
                    "alerts": 0.01, "retrain": 1.5, "total": 0.6}   # seconds; "bootstrap"
                    # only on a bootstrapping run, "retrain" only when one was requested
    }
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from itap_engine.config import Settings
from itap_engine.engine.logs import configure_logging
from itap_engine.engine.shards import writer_lock
from itap_engine.modes.summary import (
    EXIT_CODES,
    Interval,
    OnceSummary,
    OpenIncident,
    RowCounts,
    SourceOutcome,
    ValidationNote,
    iso,
)
from itap_engine.safe_text import visible, visible_tree
from itap_engine.snapshot import EngineStats, IncidentCounts, Progress, worth_showing
from itap_engine.snapshot.dto import ContributorView, contributors_of
from itap_engine.store.queries import open_alert_records, stored_profile
from itap_engine.store.watermarks import ONCE_WALL_KEY

if TYPE_CHECKING:
    from itap_engine.engine.core import EngineCore, SourceResult, TickResult

__all__ = ["EXIT_CODES", "MAX_INTERVAL_S", "OnceSummary", "choose_interval", "run_cycle", "run_once"]

log = logging.getLogger(__name__)

MAX_INTERVAL_S = 6 * 3600.0
"""Most simulated seconds one run covers."""


def _iso_ms(value: int | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value / 1000, UTC).replace(tzinfo=None).isoformat()


def choose_interval(settings: Settings, last_wall: str | None, now: datetime) -> float:
    """Simulated seconds for this run (see the module docstring)."""
    freq = settings.simulation.freq_s
    step = max(settings.engine.sim_speed * settings.engine.tick_seconds, freq)
    elapsed = 0.0
    if last_wall:
        try:
            elapsed = (now - datetime.fromisoformat(last_wall)).total_seconds()
        except (ValueError, TypeError):
            elapsed = 0.0
    seconds = min(max(elapsed * settings.engine.sim_speed, step), MAX_INTERVAL_S)
    return float(max(freq, int(seconds // freq) * freq))  # whole readings: the clock stays on the grid


def _incident(a: Mapping[str, Any]) -> OpenIncident:
    return OpenIncident(
        id=int(a["id"]),
        device_id=a["device_id"],
        profile=a["profile"],
        severity=a["severity"],
        family=a["family"],
        opened_at=_iso_ms(a["opened_ts"]),
        last_at=_iso_ms(a["last_ts"]),
        peak_score=round(float(a["peak_score"]), 6),
        threshold=round(float(a["threshold"]), 6),
        acknowledged=bool(a["acknowledged"]),
        contributors=tuple(
            ContributorView(c.signal, c.family, round(c.share, 4)) for c in contributors_of(a["contributors"])
        ),
    )


def _open_incidents(core: EngineCore, profile: str | None = None) -> tuple[OpenIncident, ...]:
    return tuple(_incident(a) for a in open_alert_records(core.store, profile=profile))


def _passed_incidents(result: TickResult, mine: Callable[[str | None], bool]) -> tuple[OpenIncident, ...]:
    """Incidents this run both opened and closed: between two cron runs, the only trace
    of a fault that came and went."""
    opened = {id(a) for a in result.opened}
    passed = [a for a in result.closed if id(a) in opened and mine(a.profile)]
    fields = ("id", "device_id", "profile", "severity", "family", "opened_ts", "last_ts", "peak_score", "threshold")
    rows = [
        {**{f: getattr(a, f) for f in fields}, "acknowledged": a.acknowledged, "contributors": a.contributors}
        for a in passed
    ]
    return tuple(_incident(r) for r in sorted(rows, key=lambda r: -float(r["peak_score"])))


def _profile_of(core: EngineCore, device_id: str | None) -> str | None:
    """A device's profile: simulated devices from the fleet, others from the database."""
    if device_id is None:
        return None
    if device_id in core.device_profile:
        return core.device_profile[device_id]
    return stored_profile(core.store, device_id)


def _status(summary: OnceSummary) -> tuple[str, str]:
    """The run's status and why, in one line."""
    critical = [a for a in summary.open_incidents if a.severity == "critical"]
    warning = [a for a in summary.open_incidents if a.severity != "critical"]
    validation = [v for v in summary.validation_alerts if v.level != "info"]
    failed = [s for s in summary.sources if s.status == "error"]
    if critical:
        devices = sorted({a.device_id for a in critical})
        return "CRITICAL", f"{len(critical)} critical incident(s) on {', '.join(devices[:5])}"
    reasons = []
    if warning:
        reasons.append(f"{len(warning)} warning incident(s) on {', '.join(sorted({a.device_id for a in warning})[:5])}")
    if summary.passed_incidents:  # came and went since the last run: over now, but not to be missed
        worst = "critical" if any(a.severity == "critical" for a in summary.passed_incidents) else "warning"
        devices = sorted({a.device_id for a in summary.passed_incidents})
        reasons.append(
            f"{len(summary.passed_incidents)} incident(s) opened and closed during this run "
            f"(worst {worst}) on {', '.join(devices[:5])}"
        )
    if validation:
        reasons.append(f"{len(validation)} validation alert(s)")
    if failed:
        reasons.append(f"{len(failed)} inbox file(s) rejected")
    if summary.rows.conflicts:
        reasons.append(f"{summary.rows.conflicts} row(s) conflict with stored values")
    if reasons:
        return "WARNING", "; ".join(reasons)
    closed = f", {summary.closed} incident(s) closed" if summary.closed else ""
    return "OK", f"{summary.rows.inserted} readings stored, {summary.scored} scored, no open incidents{closed}"


def _rows(result: TickResult | SourceResult) -> RowCounts:
    return RowCounts(result.rows_in, result.inserted, result.duplicates, result.conflicts, result.quarantined)


def run_cycle(
    settings: Settings,
    *,
    progress: Callable[[Progress], None] | None = None,
    now: datetime | None = None,
    profile: str | None = None,
) -> tuple[OnceSummary, EngineCore | None, TickResult | None]:
    """Bootstrap if needed, then one cycle; returns (summary, open core, tick result).

    ``profile`` limits the summary, and so the status and exit code, to one profile
    (one monitoring check per profile). The cycle itself still covers the whole fleet:
    the simulated clock is shared, and skipping a profile would leave a hole in its
    readings that no later run fills.

    The caller holds the lock and closes the core. Raises whatever stops the cycle.
    """
    if profile is not None:
        settings.profile(profile)  # an unknown name is a ConfigError: UNKNOWN, one line
    now = now or datetime.now(UTC)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    from itap_engine.engine.core import EngineCore

    core = EngineCore(settings)
    try:
        bootstrapped = core.needs_bootstrap()
        if bootstrapped:
            t = time.perf_counter()
            core.bootstrap(progress)
            timings["bootstrap"] = time.perf_counter() - t
        core.resume()
        store = core.store
        # an owner tag, so no other run takes it for dead
        run_id = store.start_run("once", source="itap --once", message=f"pid {os.getpid()} on {socket.gethostname()}")
        interval = choose_interval(settings, store.get_watermark(ONCE_WALL_KEY), now)
        try:
            result = core.tick(interval, kind="once-ingest")
        except Exception as error:
            store.finish_run(run_id, status="error", message=f"{type(error).__name__}: {error}"[:2000])
            raise
        store.set_watermark(ONCE_WALL_KEY, now.isoformat())
        if result.retrain_requested:  # asked for by an attached console; used from the next run
            t = time.perf_counter()
            core.retrain(None if result.retrain_requested == "*" else result.retrain_requested)
            timings["retrain"] = time.perf_counter() - t
        summary = _summary_of(core, result, profile, started=iso(now), run_id=run_id, bootstrapped=bootstrapped)
        summary = replace(summary, interval=replace(summary.interval, simulated_seconds=round(interval, 3)))
        timings.update(result.timings)
        timings["total"] = time.perf_counter() - started
        summary = replace(summary, timings_s={k: round(v, 4) for k, v in timings.items()})
        status, message = _status(summary)
        summary = summary.with_status(status, message, datetime.now(UTC))
        store.finish_run(
            run_id,
            status=status.lower(),
            message=f"{status}: {message}"[:2000],
            rows_in=result.rows_in,
            inserted=result.inserted,
            duplicates=result.duplicates,
            conflicts=result.conflicts,
            quarantined=result.quarantined,
        )
        return summary, core, result
    except BaseException:
        core.close()
        raise


def _summary_of(
    core: EngineCore, result: TickResult, profile: str | None, *, started: str | None, run_id: int, bootstrapped: bool
) -> OnceSummary:
    """What the tick did, limited to ``profile`` when one is given."""

    def mine(item_profile: str | None) -> bool:
        return profile is None or item_profile == profile

    sources = tuple(
        SourceOutcome(s.source, s.profile, s.run_id, _rows(s), s.status, s.error)
        for s in result.sources
        if mine(s.profile)
    )
    rows = _rows(result)
    if profile is not None:
        rows = RowCounts(
            sum(s.rows.rows_in for s in sources),
            sum(s.rows.inserted for s in sources),
            sum(s.rows.duplicates for s in sources),
            0,
            sum(s.rows.quarantined for s in sources),
        )
    return OnceSummary(
        started_at=started,
        run_id=run_id,
        bootstrapped=bootstrapped,
        interval=Interval(iso(result.sim_from), iso(result.sim_to)),
        rows=rows,
        sources=sources,
        scored=result.scored if profile is None else result.scored_by_profile.get(profile, 0),
        validation_alerts=tuple(
            ValidationNote(v.level, v.check, v.device_id, v.signal, v.message)
            for v in result.validation_alerts
            if mine(_profile_of(core, v.device_id))
        ),
        opened=sum(1 for c in result.opened if mine(c.profile)),
        closed=sum(1 for c in result.closed if mine(c.profile)),
        open_incidents=_open_incidents(core, profile),
        passed_incidents=_passed_incidents(result, mine),
        models={p: v for p, v in core.model_versions().items() if mine(p)},
    )


# ---------------------------------------------------------------------- output
def _progress() -> tuple[Callable[[Progress], None] | None, Callable[[], None]]:
    """Rich progress bars on stderr when it is a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        return None, lambda: None
    from rich.console import Console
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bars

    bars = Bars(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    )
    tasks: dict[str, Any] = {}
    bars.start()

    def show(p: Progress) -> None:
        if p.stage not in tasks:
            tasks[p.stage] = bars.add_task(p.stage, total=1.0)
        bars.update(tasks[p.stage], completed=p.fraction, description=f"{p.stage}: {p.message}"[:60])

    return show, bars.stop


def perfdata(summary: OnceSummary) -> str:
    """Nagios performance data: open incidents, rows stored, readings scored, seconds."""
    return (
        f"open_incidents={len(summary.open_incidents)};;;0 rows={summary.rows.inserted};;;0 "
        f"scored={summary.scored};;;0 seconds={summary.total_seconds:.3f}s;;;0"
    )


def status_line(summary: OnceSummary) -> str:
    """Line 1 of the plain output, the one a monitoring plugin reads: the status, why
    (for UNKNOWN the error itself), and perfdata after ``|`` when the cycle ran."""
    reason = summary.message
    if summary.error:
        reason = f"{reason}: {summary.error}" if reason else summary.error
    reason = " ".join(reason.replace("|", "/").split())  # one line; '|' would start perfdata
    line = f"ITAP {summary.status} - {reason}"
    if summary.status != "UNKNOWN":
        line += f" | {perfdata(summary)}"
    return line


def _incident_line(a: OpenIncident, passed: bool = False) -> str:
    top = ", ".join(f"{c.signal} {c.share:.0%}" for c in worth_showing(a.contributors))
    when = f"from {a.opened_at} to {a.last_at} (closed)" if passed else f"since {a.opened_at}"
    return (
        f"  {a.severity.upper():8} {a.device_id} {a.family} {when} "
        f"peak {a.peak_score:.3f} (threshold {a.threshold:.3f}){': ' + top if top else ''}"
    )


def _rows_text(summary: OnceSummary, sep: str) -> str:
    rows = summary.rows
    return sep.join(
        (
            f"in {rows.rows_in}",
            f"inserted {rows.inserted}",
            f"duplicates {rows.duplicates}",
            f"conflicts {rows.conflicts}",
            f"quarantined {rows.quarantined}",
        )
    )


def _models_text(summary: OnceSummary) -> str:
    return ", ".join(f"{p} v{v}" for p, v in summary.models.items()) or "none"


def format_plain(summary: OnceSummary) -> str:
    """The summary as plain lines (cron mail, log files)."""
    lines = [status_line(summary)]
    if summary.error:  # line 1 says it all (and stderr says it once more for the log)
        return "\n".join(visible(line) for line in lines)
    iv = summary.interval
    lines.append(
        f"run {summary.run_id}: simulated {iv.start} -> {iv.end} ({iv.simulated_seconds:g} s)"
        + (" after bootstrap" if summary.bootstrapped else "")
    )
    lines.append(f"rows {_rows_text(summary, ', ')}; scored {summary.scored}")
    lines.extend(f"file {s.source}: {s.error}" for s in summary.sources if s.status == "error")
    counts = IncidentCounts(len(summary.open_incidents), sum(1 for a in summary.open_incidents if not a.acknowledged))
    lines.append(f"incidents: {counts.label()} ({summary.opened} opened, {summary.closed} closed this run)")
    lines.extend(_incident_line(a) for a in summary.open_incidents)
    lines.extend(_incident_line(a, passed=True) for a in summary.passed_incidents)
    for v in summary.validation_alerts:
        where = " ".join(x for x in (v.device_id, v.signal) if x)
        lines.append(f"  validation {v.level} {v.check} {where}: {v.message}")
    lines.append(f"models: {_models_text(summary)}; total {summary.total_seconds:.2f} s")
    return "\n".join(visible(line) for line in lines)


def print_rich(summary: OnceSummary) -> None:
    from rich.markup import escape
    from rich.table import Table

    from itap_engine.modes.render.output import SafeConsole

    out = SafeConsole(highlight=False)  # data's control characters shown, not obeyed
    colour = {"OK": "green", "WARNING": "yellow", "CRITICAL": "red", "UNKNOWN": "magenta"}[summary.status]
    out.print(f"[bold {colour}]{summary.status}[/] {escape(summary.message)}")
    if summary.error:
        out.print(f"[red]error:[/] {escape(summary.error)}")
        return
    iv = summary.interval
    figures = Table(show_header=False, box=None, pad_edge=False)
    figures.add_row("run", str(summary.run_id) + (" (bootstrapped)" if summary.bootstrapped else ""))
    figures.add_row("simulated", f"{iv.start} -> {iv.end} ({iv.simulated_seconds:g} s)")
    figures.add_row("rows", f"{_rows_text(summary, '  ')}  scored {summary.scored}")
    figures.add_row("models", escape(_models_text(summary)))
    figures.add_row("time", f"{summary.total_seconds:.2f} s")
    out.print(figures)
    if summary.open_incidents:
        table = Table(title="Open alerts", title_justify="left")
        for column in ("severity", "device", "family", "since", "peak", "threshold", "top signals"):
            table.add_column(column)
        for a in summary.open_incidents:
            style = "red" if a.severity == "critical" else "yellow"
            table.add_row(
                f"[{style}]{a.severity}[/]",
                escape(a.device_id),
                escape(a.family),
                escape(str(a.opened_at)),
                f"{a.peak_score:.3f}",
                f"{a.threshold:.3f}",
                escape(", ".join(f"{c.signal} {c.share:.0%}" for c in worth_showing(a.contributors))),
            )
        out.print(table)
    if summary.validation_alerts:
        table = Table(title="Validation alerts", title_justify="left")
        for column in ("level", "check", "device", "signal", "message"):
            table.add_column(column)
        for v in summary.validation_alerts:
            table.add_row(*(escape(str(x or "")) for x in (v.level, v.check, v.device_id, v.signal, v.message)))
        out.print(table)
    for source in summary.sources:
        if source.status == "error":
            out.print(f"[red]file {escape(source.source)}:[/] {escape(str(source.error))}")


def run_once(
    settings: Settings, *, json_output: bool = False, report: str | None = None, profile: str | None = None
) -> int:
    """``itap --once``: one cycle, a summary, an exit status 0/1/2/3 (see the module docstring)."""
    now = datetime.now(UTC)
    try:
        if report:  # before the cycle: a report that cannot be written is a failed run
            from itap_engine.modes.cli_values import output_file

            output_file(report, option="--report", force=True)  # the folder exists; a report is rewritten
        _check_folders(settings)
        configure_logging(settings)
        lock = writer_lock(settings, "itap --once")  # a shard's lock with [engine] shard
        lock.acquire()
    except Exception as error:
        return report_unknown(describe_error(error), json_output=json_output, started=now)
    show, done = _progress()
    core: EngineCore | None = None
    try:
        try:
            summary, core, _result = run_cycle(settings, progress=show, now=now, profile=profile)
        finally:
            done()
        if report:
            try:
                write_report(core, summary, Path(report))
            except OSError as error:  # the cycle ran and is stored: its status stands
                log.exception("--once report failed")
                print(f"itap: error: cannot write the report {report}: {error.strerror or error}", file=sys.stderr)
    except Exception as error:
        log.exception("--once failed")
        summary = OnceSummary.failed(describe_error(error), now, datetime.now(UTC))
    finally:
        if core is not None:
            core.close()
        lock.release()
    log.info("--once %s (exit %s): %s", summary.status, summary.exit_code, summary.message or summary.error)
    emit(summary, json_output=json_output)
    return summary.exit_code


def _check_folders(settings: Settings) -> None:
    """A configured folder that exists as a file is named in one line (not ``File exists``)."""
    from itap_engine.errors import ItapError

    for key in ("data_dir", "inbox_dir", "artifacts_dir"):
        path = settings.resolve(getattr(settings.paths, key))
        if path.exists() and not path.is_dir():
            raise ItapError(
                f"[paths].{key} {path} is a file, not a folder; move it or change {key} in {settings.source}"
            )


def describe_error(error: BaseException) -> str:
    """One line for an error that stopped a run: an ItapError's own sentence, a file
    error with its file, anything else with its type."""
    from itap_engine.errors import ItapError

    if isinstance(error, ItapError):
        return str(error)
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}"
    return f"{type(error).__name__}: {error}".strip()


def report_unknown(error: str, *, json_output: bool, started: datetime | None = None) -> int:
    """A run that could not start (bad config, lock held) or finish: UNKNOWN, exit 3."""
    summary = OnceSummary.failed(error, started or datetime.now(UTC), datetime.now(UTC))
    emit(summary, json_output=json_output)
    return summary.exit_code


def emit(summary: OnceSummary, *, json_output: bool) -> None:
    """Print a run's summary: with ``json_output`` one JSON object on one line (a cron
    job appends them to a JSON Lines file), else a table on a terminal and plain lines
    otherwise. An UNKNOWN run also says what went wrong in one line on stderr."""
    if summary.status == "UNKNOWN":
        print(f"itap: error: {visible(summary.error or summary.message)}", file=sys.stderr)
    if json_output:
        sys.stdout.write(json.dumps(visible_tree(summary.to_dict()), default=str) + "\n")
    elif not sys.stdout.isatty():
        print(format_plain(summary))  # the status line a monitoring plugin reads
    else:
        print_rich(summary)


def write_report(core: EngineCore | None, summary: OnceSummary, path: Path) -> None:
    """The HTML page of this run (see :mod:`itap_engine.modes.render.report_html`)."""
    from itap_engine.modes.render.report_html import render_report, report_data

    snapshot = None
    extras: dict[str, Any] = {}
    if core is not None:
        stats = EngineStats(
            sim_time=core.sim_time,
            tick_ms=summary.total_seconds * 1000,
            rows_per_s=None,
            ticks=1,
            model_versions=core.model_versions(),
            paused=False,
            mode="once",
        )
        snapshot = core.snapshot(1, stats)
        extras = report_data(core.store, summary.to_dict(), core.sim_time)  # sparklines, recently closed
    path.write_text(
        render_report(summary.to_dict(), snapshot, **extras), encoding="utf-8"
    )  # its folder was checked, not created
