"""Logging: the rotating log file only, never stdout (a console draws there)."""

from __future__ import annotations

import logging
import logging.handlers
import threading
from pathlib import Path

from itap_engine.config import Settings

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------- logging
_LOG_LOCK = threading.Lock()
_LOG_PATH: Path | None = None


def configure_logging(settings: Settings, level: int = logging.INFO) -> Path:
    """Send ITAP's and APScheduler's logs to the rotating file ``paths.log_file``.

    Nothing is printed: the loggers stop propagating (so Python's last-resort
    handler never writes to stderr under a console) and warnings are captured into
    the same file. Idempotent; a later call with another file moves the handler.
    """
    global _LOG_PATH
    path = settings.resolve(settings.paths.log_file)
    with _LOG_LOCK:
        if path == _LOG_PATH:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=3, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"))
        handler.set_name("itap-file")
        logging.captureWarnings(True)
        for name in ("itap_engine", "itap_tui", "apscheduler", "py.warnings"):
            logger = logging.getLogger(name)
            for old in [h for h in logger.handlers if h.get_name() == "itap-file"]:
                logger.removeHandler(old)
                old.close()
            logger.addHandler(handler)
            logger.setLevel(level if name != "apscheduler" else logging.WARNING)
            logger.propagate = False
        _LOG_PATH = path
    return path
