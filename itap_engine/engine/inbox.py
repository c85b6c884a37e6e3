"""Inbox files: CSV files dropped into ``paths.inbox_dir`` are imported by the tick.

Each file is imported as the CSV import does it (:func:`itap_engine.ingest.csv_source.import_csv`)
and moved to ``inbox/done``; a file that fails is moved to ``inbox/failed`` and its
error reported in the tick's result, never raised (a bad file must not stop the engine).
"""

from __future__ import annotations

import logging
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from itap_engine.config import Settings
from itap_engine.engine.results import SourceResult, TickResult, short_error, source_result, validation_rows
from itap_engine.ingest import csv_source as csv_import
from itap_engine.store.sql import Store

__all__ = ["import_inbox", "inbox_files"]

log = logging.getLogger("itap_engine.engine.core")


def inbox_files(settings: Settings) -> list[Path]:
    """The CSV files waiting in the inbox, by name."""
    inbox = settings.resolve(settings.paths.inbox_dir)
    if not inbox.is_dir():
        return []
    return sorted(p for p in inbox.iterdir() if p.is_file() and p.suffix.lower() == ".csv")


def import_inbox(store: Store, settings: Settings, result: TickResult, clock: datetime | None) -> None:
    """Import every inbox file into ``result``'s sources (``clock``: the simulated time)."""
    files = inbox_files(settings)
    if not files:
        return
    inbox = files[0].parent
    for path in files:
        try:
            wall = datetime.now(UTC).replace(tzinfo=None)
            report = csv_import.import_csv(store, settings, path, now=max(wall, clock or wall))
        except Exception as error:  # a bad file must not stop the engine
            message = f"{path.name}: {short_error(error)}"
            log.exception("inbox file %s failed", path)
            result.errors.append(message)
            result.sources.append(SourceResult(str(path.name), None, None, status="error", error=message))
            _move(path, inbox / "failed")
            continue
        result.sources.append(source_result(report, path.name, report.profile))
        result.validation_alerts.extend(validation_rows(report, path.name))
        _move(path, inbox / "done")


def _move(path: Path, folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    if target.exists():
        target = folder / f"{path.stem}.{int(time.time() * 1000)}{path.suffix}"
    shutil.move(str(path), target)
