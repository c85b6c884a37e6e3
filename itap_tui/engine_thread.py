"""Runs the engine facade on its own event loop in its own thread.

The console's event loop only draws and handles keys. Every facade coroutine is
submitted to the engine loop (:meth:`EngineThread.call`) and awaited through a
future, so even an engine step that blocks its loop (a long SQL query, a model fit)
cannot freeze the terminal. Snapshots come back through the subscriber callback,
which the app turns into a thread-safe ``post_message``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class EngineThread:
    """A daemon thread owning an asyncio loop that the facade lives on."""

    def __init__(self, name: str = "itap-engine") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        # Let cancelled tasks finish their cleanup before the loop closes.
        pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def submit(self, function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``function(*args, **kwargs)`` (a coroutine function) on the engine loop."""
        return asyncio.run_coroutine_threadsafe(function(*args, **kwargs), self.loop)  # type: ignore[arg-type]

    def submit_sync(self, function: Callable[..., T], *args: Any) -> Future[T]:
        """Run a plain function on the engine loop's thread."""

        async def call() -> T:
            return function(*args)

        return self.submit(call)

    async def call(self, function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Await a facade coroutine from another event loop (the console's)."""
        return await asyncio.wrap_future(self.submit(function, *args, **kwargs))

    async def call_sync(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self.submit_sync(function, *args))

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def shutdown(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
