"""A LocalCluster worker's start (Dask's ``distributed.worker.preload``): it ignores
SIGINT. Ctrl+C in a terminal reaches the whole process group; the command stops its
cluster itself, and workers interrupted on their own printed ~70 lines of
``KeyboardInterrupt`` and ``CancelledError`` tracebacks above the one-line error."""

from __future__ import annotations

import contextlib
import signal
from typing import Any


def dask_setup(worker: Any) -> None:
    with contextlib.suppress(ValueError):  # signals are set from the main thread only
        signal.signal(signal.SIGINT, signal.SIG_IGN)
