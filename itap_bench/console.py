"""Console benchmark stages for ``itap bench``.

Two fixed workloads on the deterministic :class:`~itap_bench.fake_facade.FakeFacade`, so the
figures measure the console, not the engine:

* ``first frame``: from constructing the app to the first painted frame that shows
  the full fleet table (1000 devices). Targets: under 1.5 s.
* ``key to repaint``: 1000 devices, a new snapshot every second (built on the engine
  thread, so it competes for the GIL as the real engine does); cursor keys pressed
  every 120 ms for ~12 s. Latency is from posting the key to the first frame painted
  after the key moved the cursor. Target: p95 under 100 ms.
* ``snapshot render``: applying one 1000-device snapshot to the fleet table
  (cells updated in place), for context.

The app runs headless (``run_test``); a frame counts when the compositor has
rendered it and hands it to the driver (``App._display``), which is the work a real
terminal frame costs minus the terminal's own write.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from itap_engine.config import Settings

DEVICES = 1000


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _instrument(app: Any) -> list[float]:
    frames: list[float] = []
    original = app._display

    def display(screen: Any, renderable: Any) -> None:
        if renderable is not None:
            frames.append(time.perf_counter())
        original(screen, renderable)

    app._display = display
    return frames


async def _first_frame() -> float:
    from itap_bench.fake_facade import FakeFacade
    from itap_tui.app import ItapApp
    from itap_tui.screens import FleetScreen
    from itap_tui.widgets import DeviceTable

    started = time.perf_counter()
    app = ItapApp(FakeFacade(devices=DEVICES))
    painted: list[float] = []
    original = app._display

    def display(screen: Any, renderable: Any) -> None:
        if (
            renderable is not None
            and not painted
            and isinstance(screen, FleetScreen)
            and screen.query_one(DeviceTable).row_count == DEVICES
        ):
            painted.append(time.perf_counter())
        original(screen, renderable)

    app._display = display
    async with app.run_test(size=(120, 40)) as pilot:
        deadline = time.monotonic() + 30
        while not painted and time.monotonic() < deadline:
            await pilot.pause(0.005)
        await pilot.press("q")
    if not painted:
        raise RuntimeError("the console painted no fleet table within 30 s")
    return painted[0] - started


async def _key_latency(duration_s: float = 12.0, interval_s: float = 0.12) -> tuple[list[float], list[float]]:
    from textual.widgets import DataTable

    from itap_bench.fake_facade import FakeFacade
    from itap_tui.app import ItapApp
    from itap_tui.screens import FleetScreen
    from itap_tui.widgets import DeviceTable

    facade = FakeFacade(devices=DEVICES, interval=1.0)
    highlighted: list[float] = []

    def hook(message: Any) -> None:
        if isinstance(message, DataTable.RowHighlighted):
            highlighted.append(time.perf_counter())

    app = ItapApp(facade)
    frames = _instrument(app)
    latencies: list[float] = []
    renders: list[float] = []
    async with app.run_test(size=(120, 40), message_hook=hook) as pilot:
        while not (isinstance(app.screen, FleetScreen) and app.snapshot is not None):
            await pilot.pause(0.01)
        table = app.screen.query_one(DeviceTable)
        original_sync = table.sync

        def timed_sync(*args: Any, **kwargs: Any) -> None:
            began = time.perf_counter()
            original_sync(*args, **kwargs)
            renders.append(time.perf_counter() - began)

        table.sync = timed_sync  # type: ignore[method-assign]
        await pilot.pause(0.5)
        end = time.monotonic() + duration_s
        step = 0
        while time.monotonic() < end:
            key = "down" if (step // 20) % 2 == 0 else "up"
            step += 1
            mark = len(highlighted)
            pressed = time.perf_counter()
            await pilot.press(key)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                if len(highlighted) > mark:
                    moved = highlighted[mark]
                    after = [t for t in frames if t >= moved]
                    if after:
                        latencies.append(after[0] - pressed)
                        break
                await asyncio.sleep(0.001)
            await asyncio.sleep(interval_s)
        await pilot.press("q")
    return latencies, renders


def stages(settings: Settings | None = None) -> list[dict[str, Any]]:
    """Console stages for ``itap bench``: first frame, key-to-repaint latency, snapshot render."""
    first = [asyncio.run(_first_frame()) for _ in range(3)]
    latencies, renders = asyncio.run(_key_latency())
    if not latencies:
        raise RuntimeError("no key press produced a repaint")
    ms = [value * 1000 for value in latencies]
    render_ms = [value * 1000 for value in renders] or [0.0]
    return [
        {
            "stage": "console first frame",
            "workload": f"{DEVICES} devices, fake facade, 120x40 headless",
            "seconds": round(statistics.median(first), 4),
            "p50_ms": round(statistics.median(first) * 1000, 1),
            "p95_ms": round(max(first) * 1000, 1),
            "runs": len(first),
            "target_s": 1.5,
        },
        {
            "stage": "console key to repaint",
            "workload": f"{DEVICES} devices updating every 1 s; cursor keys every 120 ms",
            "seconds": round(sum(latencies), 4),
            "p50_ms": round(_pct(ms, 50), 1),
            "p95_ms": round(_pct(ms, 95), 1),
            "max_ms": round(max(ms), 1),
            "keys": len(ms),
            "target_p95_ms": 100,
        },
        {
            "stage": "console snapshot render",
            "workload": f"{DEVICES} devices, every cell of the fleet table updated in place",
            "seconds": round(sum(renders), 4),
            "p50_ms": round(_pct(render_ms, 50), 1),
            "p95_ms": round(_pct(render_ms, 95), 1),
            "snapshots": len(renders),
        },
    ]


if __name__ == "__main__":
    import json

    print(json.dumps(stages(), indent=2))
