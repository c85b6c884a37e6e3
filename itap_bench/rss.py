"""Peak resident memory of a process (and its descendants), sampled in a thread: the
one sampler the bench stages (:mod:`itap_bench.runner`) and the scale commands
(:mod:`itap_bench.scale`) share."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import psutil

__all__ = ["PeakRss"]


class PeakRss:
    """Samples RSS every ``interval_s`` while in its ``with`` block.

    * ``peak``: the highest RSS of the process ``pid`` (default: this one).
    * ``tree``: the highest sum over the process and its descendants (a
      LocalCluster's workers), with ``descendants=True``.
    * ``driver``: the highest RSS of a process of that tree that ``driver`` accepts
      (the command under ``/usr/bin/time``, not the wrapper).
    """

    def __init__(
        self,
        pid: int | None = None,
        interval_s: float = 0.02,
        *,
        descendants: bool = False,
        driver: Callable[[psutil.Process], bool] | None = None,
    ) -> None:
        self._process = psutil.Process(os.getpid() if pid is None else pid)
        self._interval = interval_s
        self._descendants = descendants or driver is not None
        self._driver = driver
        self._stop = threading.Event()
        self.peak = 0
        self.tree = 0
        self.driver = 0
        self._sample()
        self._thread = threading.Thread(target=self._run, name="itap-bench-rss", daemon=True)

    def _sample(self) -> bool:
        """One sample; False once the process is gone."""
        try:
            own = self._process.memory_info().rss
            procs = self._process.children(recursive=True) if self._descendants else []
        except psutil.NoSuchProcess:
            return False
        except psutil.Error:
            return True
        self.peak = max(self.peak, own)
        total = own
        for proc in [self._process, *procs]:
            try:
                rss = own if proc is self._process else proc.memory_info().rss
                if self._driver is not None and self._driver(proc):
                    self.driver = max(self.driver, rss)
            except psutil.Error:
                continue
            if proc is not self._process:
                total += rss
        self.tree = max(self.tree, total)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            if not self._sample():
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20
