"""The run lock: one writer of the simulated timeline at a time."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import logging.handlers
import os
from datetime import UTC, datetime

import psutil

from itap_engine.config import Settings
from itap_engine.errors import ItapError


def _utcnow() -> datetime:
    return datetime.now(UTC)

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------- run lock
class LockHeld(ItapError):
    """Another ITAP process owns the data directory's run lock."""

    exit_code = 3


class RunLock:
    """One writer of the simulated timeline at a time: a pid file made with ``O_EXCL``.

    ``itap --once`` and the engine (``itap engine``, or the console's in-process
    engine) take it. A lock whose process is gone (or whose pid now belongs to
    another process: the start time is recorded) is stale and taken over; the
    check-and-take-over runs under ``flock`` on a guard file so two processes
    cannot both take over the same stale lock.
    """

    def __init__(self, settings: Settings, purpose: str) -> None:
        self.path = settings.resolve(settings.paths.data_dir) / "itap.lock"
        self.purpose = purpose
        self.held = False

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        guard = self.path.with_name(self.path.name + ".guard")
        with open(guard, "a+") as guard_file:
            fcntl.flock(guard_file, fcntl.LOCK_EX)
            try:
                for _ in range(2):
                    try:
                        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                    except FileExistsError:
                        holder = self._holder()
                        if holder is not None:
                            pid, purpose, since = holder
                            raise LockHeld(
                                f"another ITAP run holds {self.path} (pid {pid}, {purpose}, since {since}); "
                                "try again when it has finished"
                            ) from None
                        log.warning("taking over stale lock %s", self.path)
                        with contextlib.suppress(FileNotFoundError):
                            self.path.unlink()
                        continue
                    me = psutil.Process()
                    payload = {
                        "pid": os.getpid(),
                        "create_time": me.create_time(),
                        "purpose": self.purpose,
                        "since": _utcnow().isoformat(timespec="seconds"),
                    }
                    with os.fdopen(fd, "w") as handle:
                        handle.write(json.dumps(payload) + "\n")
                    self.held = True
                    return self
            finally:
                fcntl.flock(guard_file, fcntl.LOCK_UN)
        raise LockHeld(f"could not take the lock {self.path}")

    def _holder(self) -> tuple[int, str, str] | None:
        """(pid, purpose, since) of a live holder, or None when the lock is stale."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
            pid = int(data["pid"])
        except (ValueError, KeyError, TypeError):
            try:
                pid, data = int(text.split()[0]), {}
            except (ValueError, IndexError):
                return None
        if pid == os.getpid():
            return None
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            created = data.get("create_time")
            if created is not None and abs(process.create_time() - float(created)) > 1.0:
                return None  # the pid was reused by another process
        except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            return None
        return pid, str(data.get("purpose", "?")), str(data.get("since", "?"))

    def release(self) -> None:
        if not self.held:
            return
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
            data = json.loads(self.path.read_text())
            if int(data["pid"]) == os.getpid():
                self.path.unlink()
        self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

