"""Event-loop lag: the stall a console would feel while the engine ticks."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np


# ---------------------------------------------------------------------- loop lag
class LoopLagMonitor:
    """Measures how late the event loop wakes a sleeper: the stall a console would feel.

    Use as ``async with LoopLagMonitor() as lag: ...`` then read :attr:`samples_ms`.
    """

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.samples_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval_s)
            self.samples_ms.append(max(0.0, (loop.time() - before - self.interval_s) * 1000))

    async def __aenter__(self) -> LoopLagMonitor:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def max_ms(self) -> float:
        return max(self.samples_ms, default=0.0)

    @property
    def p95_ms(self) -> float:
        if not self.samples_ms:
            return 0.0
        return float(np.percentile(self.samples_ms, 95))
