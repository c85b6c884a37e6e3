"""Quitting the console while a tick is running (a 10,000 device tick under load takes
tens of seconds): the console exits at once, the tick ends on its own thread, and the
database and its run lock are left clean."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from test_tui import small_console_config, wait_for

from itap_engine.config import load_settings
from itap_engine.engine.core import EngineCore
from itap_engine.facade.local import LocalFacade
from itap_engine.store.run_lock import RunLock
from itap_tui.app import ItapApp
from itap_tui.screens import FleetScreen


async def until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_quit_during_a_long_tick_exits_and_the_lock_frees_when_it_ends(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(small_console_config(tmp_path / "site"))
    armed, entered, release, finished = (threading.Event() for _ in range(4))
    score = EngineCore._score

    def slow_score(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        """A tick's scoring step (inside EngineCore.tick) that takes as long as the test says."""
        if armed.is_set() and not entered.is_set():
            entered.set()
            release.wait(120)
            try:
                return score(self, *args, **kwargs)
            finally:
                finished.set()
        return score(self, *args, **kwargs)

    monkeypatch.setattr(EngineCore, "_score", slow_score)
    facade = LocalFacade(settings)
    facade.engine.stop_grace_s = 0.2
    app = ItapApp(facade)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(
                pilot,
                lambda: (
                    app.start_error is not None or (app.snapshot is not None and isinstance(app.screen, FleetScreen))
                ),
                timeout=180,
            )
            assert app.start_error is None
            before = facade.engine.core.sim_time  # type: ignore[union-attr]
            armed.set()
            await wait_for(pilot, entered.is_set, timeout=60)  # the next tick is in its scoring step
            await pilot.press("q")
            await wait_for(pilot, lambda: app.return_code is not None, timeout=60)
            # the console is done, cleanly (not "the engine did not stop cleanly: TimeoutError"
            # after 30 s), while the tick still runs on its thread
            assert app.return_code == 0 and app.engine_stopped
            assert not finished.is_set()
            assert facade.engine.left_running and facade.engine.core is None
        assert not app.engine.alive  # the engine's loop has stopped too
        lock = RunLock(settings, "test")
        assert lock.held is False
        release.set()
        assert finished.wait(60)
        # the tick ran to its end and its thread closed the store and freed the run lock
        await until(lambda: not facade.engine._lock.held)  # type: ignore[union-attr]
        lock.acquire()
        lock.release()
        core = EngineCore(settings)
        try:
            core.resume()  # the tick left running wrote its whole interval, clock last
            assert core.sim_time is not None and before is not None and core.sim_time > before
        finally:
            core.close()
    finally:
        release.set()
