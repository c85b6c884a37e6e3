"""``itap bench --soak MINUTES``: a reliability suite that stays (issue 11).

For ``MINUTES`` wall minutes, on one SQLite database in a temporary folder with a
small derived config (3 industrial devices):

* the engine runs as a subprocess (``itap engine --config C``) and holds the run lock;
* ``itap --once --json --config C`` runs in a loop of subprocesses: each should exit 3
  because the engine holds the run lock (``once_locked``, expected); any other exit 3
  reason is an error (``once_other``), a run that gets the lock is ``once_ok``;
* an attached console reader (:class:`~itap_engine.facade.attached.AttachedFacade`,
  in process, no terminal) refreshes about once a second; its snapshots and refresh
  errors are counted, and so are the engine's own errors its snapshots show;
* CSV files with known row counts (some rows bad) are dropped into the engine's inbox.

At the end the engine is stopped with SIGTERM. Must be zero: lock errors ("database is
locked" anywhere, or a refresh error about a lock), tracebacks (stderr of every
subprocess and the log file), lost rows (rows written to inbox files minus inserted,
duplicates, conflicts and quarantined in the ``run`` table for those files) and errors
(other exit-3 reasons, refresh errors, engine errors, an engine that did not stop cleanly).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from itap_engine.config import Settings, load_settings

__all__ = ["MUST_BE_ZERO", "failed", "render", "soak"]

MUST_BE_ZERO = ("lock_errors", "tracebacks", "lost_rows", "errors")
"""Figures of a soak that fail it (exit 1) when not zero."""

_HEADER = "device_id,ts,state,rpm,temp_c,vibration_g,current_a,voltage_v"
_LOCK_HELD = ("holds the run lock", "could not take the run lock")
_DROPS = 4
_ROWS_PER_FILE = 60


def _config(settings: Settings, folder: Path) -> Path:
    from itap_bench.engine import derived_config

    return derived_config(
        settings,
        folder,
        fleet=[{"profile": "industrial", "devices": 3, "prefix": "pump", "sites": ["north"]}],
        simulation={"fault_rate_per_device_day": 0.0},
        detection={"bootstrap_hours": 1.0, "detector": "robust_z"},
        engine={"tick_seconds": 1.0},
    )


def _inbox_file(inbox: Path, index: int) -> tuple[str, int]:
    """Write ``soak-NN.csv`` (written in a side name, then renamed): rows, a tenth of them bad."""
    start = datetime(2026, 1, 1) + timedelta(hours=index)
    lines = [_HEADER]
    for i in range(_ROWS_PER_FILE):
        ts = (start + timedelta(seconds=10 * i)).isoformat()
        temp = "999" if i % 10 == 0 else "68.0"  # out of range: quarantined
        rpm = "" if i % 17 == 5 else "1480"  # a missing value: stored, counted missing
        lines.append(f"ext-{index:03d},{ts},RUN,{rpm},{temp},0.35,42,400")
    name = f"soak-{index:02d}.csv"
    inbox.mkdir(parents=True, exist_ok=True)
    side = inbox / f".{name}.part"
    side.write_text("\n".join(lines) + "\n", encoding="utf-8")
    side.replace(inbox / name)
    return name, _ROWS_PER_FILE


def _db_path(settings: Settings) -> Path:
    return Path(settings.database_url.split("///", 1)[1])


def _query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.Error:  # no database or no table yet
        return []


class _Soak:
    def __init__(self, settings: Settings, config: Path, minutes: float, report: Callable[[str], None]) -> None:
        self.settings = settings
        self.config = config
        self.minutes = minutes
        self.report = report
        self.db = _db_path(settings)
        self.env = {**os.environ}
        self.env.pop("ITAP_DB_URL", None)
        self.env.pop("ITAP_CONFIG", None)
        self.counts: dict[str, int] = dict.fromkeys(
            (
                "once_ok",
                "once_locked",
                "once_other",
                "snapshots",
                "refresh_errors",
                "engine_errors",
                "lock_errors",
                "tracebacks",
                "errors",
                "rows_written",
                "rows_accounted",
                "max_ticks",
            ),
            0,
        )
        self.files: dict[str, int] = {}
        self.outputs: list[str] = []
        self.notes: list[str] = []
        self.tracebacks: list[str] = []
        self.engine_errors: set[str] = set()
        self.stop = asyncio.Event()

    def _command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "itap_tui.cli", *args, "--config", str(self.config)]

    async def _wait_for(
        self, predicate: Callable[[], bool], timeout: float, engine: asyncio.subprocess.Process
    ) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if engine.returncode is not None or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.2)
        return True

    async def _once_loop(self) -> None:
        while not self.stop.is_set():
            proc = await asyncio.create_subprocess_exec(
                *self._command("--once", "--json"),
                env=self.env,
                cwd=self.config.parent,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await proc.communicate()
            stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
            self.outputs.append(stderr)
            try:
                summary = json.loads(stdout)
            except ValueError:
                summary = {}
            message = str(summary.get("error") or "")
            if proc.returncode == 3 and any(s in message for s in _LOCK_HELD):
                self.counts["once_locked"] += 1
            elif proc.returncode in (0, 1, 2):
                self.counts["once_ok"] += 1
            else:
                self.counts["once_other"] += 1
                self.counts["errors"] += 1
                self.notes.append(f"--once exit {proc.returncode}: {(message or stderr or stdout).strip()[-300:]}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 0.5)

    async def _attached(self) -> None:
        from itap_engine.facade.attached import AttachedFacade

        facade = AttachedFacade(self.settings, interval_s=1.0)

        def delivered(snapshot: Any) -> None:
            self.counts["snapshots"] += 1
            self.counts["max_ticks"] = max(self.counts["max_ticks"], int(snapshot.stats.ticks or 0))
            engine_error = snapshot.stats.last_error
            if engine_error and engine_error != facade.last_error and engine_error not in self.engine_errors:
                self.engine_errors.add(engine_error)  # the engine's own (a tick, retrain...), once each
                self.counts["engine_errors"] += 1
                self.counts["errors"] += 1
                if "locked" in engine_error:
                    self.counts["lock_errors"] += 1
                self.notes.append(f"engine: {engine_error}")
            if facade.last_error:
                self.counts["refresh_errors"] += 1
                self.counts["errors"] += 1
                if "locked" in facade.last_error:
                    self.counts["lock_errors"] += 1
                self.notes.append(f"attached: {facade.last_error}")

        await facade.start()
        unsubscribe = facade.subscribe(delivered)
        try:
            await self.stop.wait()
        finally:
            unsubscribe()
            await facade.stop()

    async def _drops(self, seconds: float) -> None:
        inbox = self.settings.resolve(self.settings.paths.inbox_dir)
        gap = seconds * 0.7 / _DROPS
        for index in range(_DROPS):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), gap)
            if self.stop.is_set():
                return
            name, rows = _inbox_file(inbox, index)
            self.files[name] = rows
            self.counts["rows_written"] += rows

    def _inbox_empty(self) -> bool:
        inbox = self.settings.resolve(self.settings.paths.inbox_dir)
        return not any((inbox / name).exists() for name in self.files)

    async def run(self) -> float:
        engine = await asyncio.create_subprocess_exec(
            *self._command("engine"),
            env=self.env,
            cwd=self.config.parent,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        engine_io = asyncio.gather(engine.stdout.read(), engine.stderr.read())  # type: ignore[union-attr]
        started = time.monotonic()
        seconds = self.minutes * 60
        self.report("starting the engine (bootstrap)")
        ready = await self._wait_for(
            lambda: (
                bool(_query(self.db, "SELECT 1 FROM run WHERE kind = 'tick' LIMIT 1"))
                and bool(_query(self.db, "SELECT 1 FROM run_lease"))
            ),
            120,
            engine,
        )
        tasks: list[asyncio.Task[None]] = []
        if not ready:
            self.counts["errors"] += 1
            self.notes.append(f"engine not ticking with the run lock (exit {engine.returncode})")
        else:
            self.report(f"soaking for {self.minutes:g} min: engine, --once loop, attached reader, inbox files")
            started = time.monotonic()
            tasks = [
                asyncio.create_task(self._once_loop()),
                asyncio.create_task(self._attached()),
                asyncio.create_task(self._drops(seconds)),
            ]
            deadline = started + seconds
            while time.monotonic() < deadline and engine.returncode is None:
                if any(t.done() and t.exception() for t in tasks):
                    break
                await asyncio.sleep(0.5)
            # the last files: give the engine up to a minute to import them (in the duration)
            await self._wait_for(self._inbox_empty, 60, engine)
        self.stop.set()
        for task in tasks:
            try:
                await task
            except Exception as error:
                self.counts["errors"] += 1
                self.notes.append(f"{type(error).__name__}: {error}")
        duration = time.monotonic() - started
        if engine.returncode is None:
            engine.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(engine.wait(), 60)
            except TimeoutError:
                engine.kill()
                await engine.wait()
                self.notes.append("engine did not stop within 60 s of SIGTERM: killed")
        out, err = await engine_io
        self.outputs.extend([out.decode(errors="replace"), err.decode(errors="replace")])
        if engine.returncode != 0:
            self.counts["errors"] += 1
            self.notes.append(f"engine exit {engine.returncode}: {err.decode(errors='replace').strip()[-300:]}")
        return duration

    def ledger(self) -> dict[str, int]:
        """Rows of the inbox files as the ``run`` table accounts for them, and ticks."""
        from sqlmodel import select

        from itap_engine.store.schema import Run
        from itap_engine.store.sql import Store

        store = Store(self.settings)
        accounted = ticks = 0
        try:
            with store.session() as session:
                for run in session.exec(select(Run)):
                    if run.kind == "tick":
                        ticks += 1
                    elif Path(run.source).name in self.files:
                        accounted += run.inserted + run.duplicates + run.conflicts + run.quarantined
        finally:
            store.close()
        return {"rows_accounted": accounted, "tick_runs": ticks}


def soak(settings: Settings, minutes: float, report: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the soak (see the module docstring); a stage result for ``itap bench``."""
    from itap_bench.runner import stage_result

    say = report or (lambda _message: None)
    with tempfile.TemporaryDirectory(prefix="itap-bench-soak-") as tmp:
        config = _config(settings, Path(tmp) / "soak")
        derived = load_settings(config)
        run = _Soak(derived, config, minutes, say)
        duration = asyncio.run(run.run())
        ledger = run.ledger()
        log_file = derived.resolve(derived.paths.log_file)
        texts = [*run.outputs, log_file.read_text(errors="replace") if log_file.exists() else ""]
    counts = run.counts
    counts["tracebacks"] = sum(text.count("Traceback") for text in texts)
    for text in texts:  # where each traceback came from: its last line
        for chunk in text.split("Traceback")[1:]:
            lines = [line for line in chunk.splitlines() if line.strip() and not line.startswith(" ")]
            run.notes.append(f"traceback: {(lines[-1] if lines else chunk.strip()[:200])[:300]}")
            run.tracebacks.append("Traceback" + chunk[:4000])
    counts["lock_errors"] += sum(text.count("database is locked") for text in texts)
    counts["rows_accounted"] = ledger["rows_accounted"]
    lost = counts["rows_written"] - counts["rows_accounted"]
    return stage_result(
        "soak",
        f"{minutes:g} min",
        duration,
        counts["rows_written"],
        None,
        ticks=max(ledger["tick_runs"], counts["max_ticks"]),
        once_ok=counts["once_ok"],
        once_locked=counts["once_locked"],
        once_other=counts["once_other"],
        snapshots=counts["snapshots"],
        refresh_errors=counts["refresh_errors"],
        engine_errors=counts["engine_errors"],
        inbox_files=len(run.files),
        rows_accounted=counts["rows_accounted"],
        lock_errors=counts["lock_errors"],
        tracebacks=counts["tracebacks"],
        lost_rows=lost,
        errors=counts["errors"],
        notes=run.notes[:20],
        traceback_texts=run.tracebacks[:5],
    )


def render(result: dict[str, Any]) -> Any:
    """The soak's figures as a Rich table, one row each; the must-be-zero ones marked."""
    from rich.table import Table

    table = Table("figure", "value", title="itap bench --soak", title_justify="left")
    for key, value in result.items():
        if key in ("stage", "workload", "notes", "traceback_texts", "rows_per_s") or value is None:
            continue
        text = f"{value:,}" if isinstance(value, int) else f"{value:,.1f}" if isinstance(value, float) else str(value)
        if key in MUST_BE_ZERO or key == "lost_rows":
            text = f"[green]{text}[/]" if value == 0 else f"[bold red]{text}[/]"
        table.add_row(key, text)
    for note in result.get("notes", []):
        table.add_row("note", note)
    return table


def failed(result: dict[str, Any]) -> list[str]:
    """The must-be-zero figures that are not."""
    return [key for key in MUST_BE_ZERO if result.get(key)]
