"""Where a tick's time goes: a sampling profiler over one thread, by tick step.

The tick's own laps (:attr:`itap_engine.engine.core.TickResult.timings`) split it into
the steps the engine calls; they cannot look inside one call (the scorer's features
against its detector, the incident tracker's mute test, the store's conflict check).
:class:`StepSampler` does, without touching the code it measures: a thread takes the
stack of the thread running the tick every ``interval_s`` (``sys._current_frames``,
the way py-spy does from outside) and charges the sample to the innermost frame that
one of :data:`STEPS` names (comprehensions and lambdas count as the function around
them).

An in-process sampler needs the GIL to take a sample, so it wakes up more often while
the tick waits in C with the GIL released (SQLite) than while it runs Python or
numpy. Each sample is therefore weighted by the time since the previous one: a late
sample stands for the interval the tick held the GIL, and the tick gave it up at the
frame that was running. Shares are shares of that time.

Bench code: the product never imports it.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from types import FrameType

__all__ = ["STEPS", "StepSampler", "step_of"]

STEPS: tuple[tuple[str, str | None, str], ...] = (
    # (module path suffix, function name or None for any, step); the innermost frame
    # that matches a rule names the step, so a more specific rule wins by being deeper
    ("detection/features.py", None, "features"),
    ("detection/detectors.py", None, "detector"),
    ("detection/charts.py", None, "detector"),
    ("detection/threshold.py", None, "detector"),
    ("sklearn/", None, "detector"),
    ("detection/scoring.py", "insert_scores", "store scores"),
    ("detection/scoring.py", None, "score (other)"),
    ("detection/alerts.py", "_silenced", "mutes/maintenance"),
    ("detection/alerts.py", "silences", "mutes/maintenance"),
    ("detection/alerts.py", None, "incident tracker"),
    ("store/batches.py", "find_conflicts", "conflict check"),
    ("store/batches.py", "replace_rows", "conflict check"),
    ("ingest/validate", None, "validate"),
    ("store/sql.py", "_touch_devices", "device spans"),
    ("store/sql.py", "insert_readings", "ingest write"),
    ("store/sql.py", "read_readings", "read"),
    ("store/sql.py", "checkpoint", "checkpoint"),
    ("store/sql.py", "set_watermark", "watermarks"),
    ("store/sql.py", "get_watermark", "watermarks"),
    ("ingest/pipeline.py", None, "run records"),
    ("store/queries.py", "record_problems", "validation problems"),
    ("store/queries.py", "record_events", "events"),
    ("ingest/simulator.py", None, "simulate"),
    ("engine/commands.py", None, "commands"),
    ("engine/core.py", "apply_commands", "commands"),
    ("engine/core.py", "_remember_latest", "snapshot prep"),
    ("engine/core.py", "_remember_scores", "snapshot prep"),
    ("engine/scoring.py", "_remember_latest", "snapshot prep"),
    ("engine/scoring.py", "_remember_scores", "snapshot prep"),
)


def step_of(frame: FrameType | None) -> str:
    """The step of a stack: the innermost frame a rule of :data:`STEPS` matches."""
    while frame is not None:
        path = frame.f_code.co_filename.replace("\\", "/")
        name = frame.f_code.co_name
        if name.startswith("<") and name != "<module>":  # <genexpr>, <listcomp>, <lambda>: their function's
            frame = frame.f_back
            continue
        for suffix, function, step in STEPS:
            if suffix in path and (function is None or function == name):
                return step
        frame = frame.f_back
    return "other"


class StepSampler:
    """Samples the stack of the threads that call :meth:`watch` (a tick's worker thread).

    Use as a context manager; ``counts`` holds samples per step. ``watch()`` is called
    from inside the measured thread (so a thread pool's worker is found wherever the
    tick lands) and ``unwatch()`` when its work is done.
    """

    def __init__(self, interval_s: float = 0.001) -> None:
        self.interval_s = interval_s
        self.counts: collections.Counter[str] = collections.Counter()
        """Samples per step."""
        self.seconds: collections.Counter[str] = collections.Counter()
        """Seconds per step: each sample weighted by the time since the previous one."""
        self._threads: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="itap-bench-sampler", daemon=True)

    def watch(self) -> None:
        self._threads.add(threading.get_ident())

    def unwatch(self) -> None:
        self._threads.discard(threading.get_ident())

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(self.interval_s):
            now = time.perf_counter()
            elapsed, last = now - last, now
            if not self._threads:
                continue
            frames = sys._current_frames()
            for ident in list(self._threads):
                frame = frames.get(ident)
                if frame is not None:
                    step = step_of(frame)
                    self.counts[step] += 1
                    self.seconds[step] += elapsed

    def __enter__(self) -> StepSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def shares(self) -> dict[str, float]:
        """Each step's share of the sampled time (0..1), largest first."""
        total = sum(self.seconds.values())
        if not total:
            return {}
        return {step: round(n / total, 4) for step, n in self.seconds.most_common()}
