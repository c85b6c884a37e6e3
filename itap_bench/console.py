"""Console benchmark stages for ``itap bench``.

Fixed workloads on the deterministic :class:`~itap_bench.fake_facade.FakeFacade`, so the
figures measure the console, not the engine:

* ``first frame``: from constructing the app to the first painted frame that shows
  the full fleet table (1000 devices). Target: under 1.5 s.
* ``key to repaint``, at 1,000 and 10,000 devices: a new snapshot every second (built
  on the engine thread, so it competes for the GIL as the real engine does); for ~12 s
  a key 120 ms after the previous key's repaint, in rounds of :data:`KEYS` (cursor,
  page, sort, filter), posted to the driver as a terminal sends them, whatever the app
  is doing (:func:`_post_key`). Latency is from posting the key to the first frame
  painted after the key took effect. Target: p95 at most 50 ms at 10,000 devices
  (issue 13).
* ``snapshot on the event loop``: the app's whole handling of one snapshot on the
  loop (for a large fleet the table's view is planned in a worker thread, not here).
* ``fleet table drawing``: the table drawing its lines for one frame (rows on screen).

The app runs headless (``run_test``); a frame counts when the compositor has
rendered it and hands it to the driver (``App._display``), which is the work a real
terminal frame costs minus the terminal's own write. One size on its own:
``python -m itap_bench.console --devices 10000``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import TYPE_CHECKING, Any

import itap_tui  # noqa: F401  (before Textual, as the itap command: it sets the console's frame cap)

if TYPE_CHECKING:
    from itap_engine.config import Settings

DEVICES = 1000


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _max_fps() -> int:
    """The frame cap the app ran with (``itap_tui.MAX_FPS`` unless ``TEXTUAL_FPS``)."""
    import textual.constants

    return textual.constants.MAX_FPS


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


KEYS: tuple[str, ...] = (
    *("down",) * 5,
    "pagedown",
    "s",
    *("up",) * 5,
    "pageup",
    "slash",
    "a",
    "backspace",
    "enter",
)
"""One round of the key-to-repaint workload: cursor keys, a page each way, a sort,
and a filter typed and cleared (``/`` and ``enter`` only open and close the input:
they are pressed but not timed)."""


def _post_key(app: Any, key: str) -> None:
    """Send ``key`` as the terminal driver would, without the pilot's wait for the
    process to go idle: an operator presses keys whether or not a snapshot is being
    drawn, and the pilot's wait (up to a second or two with a live 10k fleet) would
    both time keys only in quiet moments and leave a run with few keys."""
    from textual import events

    event = events.Key(key, key if len(key) == 1 else None)
    event.set_sender(app)
    app._driver.send_message(event)


async def _key_latency(
    devices: int = DEVICES, duration_s: float = 12.0, interval_s: float = 0.12
) -> tuple[dict[str, list[float]], list[float], list[float]]:
    """Latency (s) of each timed key by kind, the event loop's time per snapshot (s),
    and the time the fleet table took to draw its lines, per frame (s).

    A cursor key counts from posting the key to the first frame painted after the
    cursor moved; a sort or filter key to the first frame painted after the table
    showed the new sort or filter. The loop's time per snapshot is the app's whole
    rendering of one snapshot on the event loop (``ItapApp._render_pending``).
    """
    from textual.widgets import DataTable

    from itap_bench.fake_facade import FakeFacade
    from itap_tui.app import ItapApp
    from itap_tui.screens import FleetScreen
    from itap_tui.widgets import DeviceTable

    facade = FakeFacade(devices=devices, interval=1.0)
    highlighted: list[float] = []

    def hook(message: Any) -> None:
        if isinstance(message, DataTable.RowHighlighted):
            highlighted.append(time.perf_counter())

    app = ItapApp(facade)
    frames = _instrument(app)
    latencies: dict[str, list[float]] = {"cursor": [], "page": [], "sort": [], "filter": []}
    renders: list[float] = []
    drawn: list[float] = []
    shown: list[tuple[float, tuple[object, ...]]] = []
    async with app.run_test(size=(120, 40), message_hook=hook) as pilot:
        deadline = time.monotonic() + 120
        while not (isinstance(app.screen, FleetScreen) and app.snapshot is not None):
            if time.monotonic() > deadline:
                raise RuntimeError("the console showed no fleet within 120 s")
            await pilot.pause(0.01)
        fleet = app.screen
        table = fleet.query_one(DeviceTable)
        original_render = app._render_pending

        def timed_render(*args: Any, **kwargs: Any) -> None:
            began = time.perf_counter()
            original_render(*args, **kwargs)
            renders.append(time.perf_counter() - began)

        def state() -> tuple[object, ...]:
            return (fleet.filter.describe(), fleet.sort_index, fleet.sort_reverse)

        def recorded(*args: Any, **kwargs: Any) -> Any:
            result = original_show(*args, **kwargs)
            shown.append((time.perf_counter(), state()))
            return result

        # the moment a view is on the table: a virtual table swaps views in (_show),
        # possibly planned in a worker; an older table rewrites its rows in sync()
        hooked = "_show" if hasattr(table, "_show") else "sync"
        original_show = getattr(table, hooked)
        original_lines = table.render_lines

        def timed_lines(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            result = original_lines(*args, **kwargs)
            drawn.append(time.perf_counter() - began)
            return result

        app._render_pending = timed_render  # type: ignore[method-assign]
        setattr(table, hooked, recorded)
        table.render_lines = timed_lines  # type: ignore[method-assign]
        await pilot.pause(0.5)
        end = time.monotonic() + duration_s
        step = 0
        while time.monotonic() < end:
            key = KEYS[step % len(KEYS)]
            step += 1
            if key in ("slash", "enter"):
                await pilot.press(key)
                await asyncio.sleep(interval_s)
                continue
            mark, synced = len(highlighted), len(shown)
            before = state()
            edge = table.cursor_row >= table.row_count - 1 if key in ("down", "pagedown") else table.cursor_row <= 0
            pressed = time.perf_counter()
            _post_key(app, key)
            kind = "cursor" if key in ("up", "down") else "page" if key.startswith("page") else None
            if kind and edge:  # the cursor cannot move (a filter left it on the last row): nothing to time
                await asyncio.sleep(interval_s)
                continue
            kind = kind or ("sort" if key == "s" else "filter")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                moved: float | None = None
                if kind in ("cursor", "page"):
                    if len(highlighted) > mark:
                        moved = highlighted[mark]
                else:  # the first view shown under the key's new sort or filter
                    moved = next((t for t, s in shown[synced:] if s != before), None)
                if moved is not None:
                    painted = next((t for t in frames if t >= moved), None)
                    if painted is not None:
                        latencies[kind].append(painted - pressed)
                        break
                await asyncio.sleep(0.001)
            await asyncio.sleep(interval_s)
        facade.paused = True  # no snapshot while the app closes
        app._render_pending = original_render  # type: ignore[method-assign]
        await pilot.pause(0.5)
        await pilot.press("escape", "q")
    return latencies, renders, drawn


def _summary(values: list[float]) -> dict[str, Any]:
    ms = [value * 1000 for value in values] or [0.0]
    return {"p50_ms": round(_pct(ms, 50), 1), "p95_ms": round(_pct(ms, 95), 1), "max_ms": round(max(ms), 1)}


def key_stages(devices: int = DEVICES, duration_s: float = 12.0, runs: int = 1) -> list[dict[str, Any]]:
    """Key-to-repaint (all keys together and by kind) and the loop's time per snapshot;
    ``runs`` > 1 pools the keys of that many runs (a p95 over more keys)."""
    latencies: dict[str, list[float]] = {}
    renders: list[float] = []
    drawn: list[float] = []
    loads: list[float] = []
    for _ in range(max(1, runs)):
        more, more_renders, more_drawn = asyncio.run(_key_latency(devices, duration_s))
        for kind, values in more.items():
            latencies.setdefault(kind, []).extend(values)
        renders += more_renders
        drawn += more_drawn
        loads.append(os.getloadavg()[0])
    every = [v for values in latencies.values() for v in values]
    if not every:
        raise RuntimeError("no key press produced a repaint")
    by_kind = {kind: _summary(values) | {"keys": len(values)} for kind, values in latencies.items()}
    return [
        {
            "stage": "console key to repaint",
            "workload": f"{devices} devices updating every 1 s; keys every 120 ms (cursor, page, sort, filter)",
            "seconds": round(sum(every), 4),
            **_summary(every),
            "keys": len(every),
            "by_key": by_kind,
            "runs": max(1, runs),
            "load_1min": [round(load, 1) for load in loads],
            "target_p95_ms": 50 if devices >= 10_000 else 100,
            "max_fps": _max_fps(),
        },
        {
            "stage": "console snapshot on the event loop",
            "workload": f"{devices} devices: the app's rendering of one snapshot (filter, sort, table)",
            "seconds": round(sum(renders), 4),
            **_summary(renders),
            "snapshots": len(renders),
        },
        {
            "stage": "console fleet table drawing",
            "workload": f"{devices} devices: the table's lines drawn for one frame (rows on screen only)",
            "seconds": round(sum(drawn), 4),
            **_summary(drawn),
            "frames": len(drawn),
        },
    ]


def snapshot_cpu(devices: int = 10 * DEVICES, ticks: int = 7) -> dict[str, Any]:
    """CPU (``time.thread_time``, median of ``ticks``) of one snapshot of ``devices``
    devices made by the benchmark's fake engine (``FakeFacade.advance``), against the
    real engine's snapshot path on the same fleet (``build_snapshot`` over per-profile
    frames of new values, as ``FleetView.snapshot`` calls it, then the publisher's
    ``mark_changes``). The fake engine thread shares the GIL with the console, so it
    should cost about what the real one does, not more."""
    import numpy as np
    import pandas as pd

    from itap_bench.fake_facade import FakeFacade
    from itap_engine.config import load_settings
    from itap_engine.snapshot import EngineStats
    from itap_engine.snapshot.assemble import FleetDevice, ProfileState, build_snapshot
    from itap_engine.snapshot.diff import mark_changes

    settings = load_settings(None)
    rng = np.random.default_rng(1)
    aircraft = devices // 5  # as the fake fleet: every fifth device an aircraft
    sizes = {"industrial": devices - aircraft, "aircraft": aircraft}
    profiles: dict[str, ProfileState] = {}
    for profile, n in sizes.items():
        ids = [f"{profile[:3]}-{i:05d}" for i in range(n)]
        frame = pd.DataFrame(
            {"ts": np.full(n, 1_700_000_000_000), "state": rng.choice(["RUN", "IDLE"], n)},
            index=pd.Index(ids, name="device_id"),
        )
        for signal in settings.profiles[profile].signals:
            frame[signal] = rng.normal(size=n)
        profiles[profile] = ProfileState(
            [FleetDevice(d, "north") for d in ids], frame, dict(zip(ids, rng.random(n).tolist(), strict=True)), 0.5
        )
    stats = EngineStats(None, 0.0, 0.0, 0, {}, False, "live")

    def real(seq: int) -> Any:
        for state in profiles.values():
            assert state.latest is not None
            for column in state.latest.columns[2:]:
                state.latest[column] = rng.normal(size=len(state.latest))
        return build_snapshot(
            settings,
            seq=seq,
            profiles=profiles,
            open_alerts=[],
            recent_closed=[],
            reading_anomalies=[],
            injected={},
            validation_alerts=[],
            clock_ms=1_700_000_000_000,
            stats=stats,
        )

    previous = real(0)
    real_s, fake_s = [], []
    for seq in range(1, ticks + 1):
        began = time.thread_time()
        previous = mark_changes(previous, real(seq))
        real_s.append(time.thread_time() - began)
    fake = FakeFacade(devices=devices)
    fake.advance()
    for _ in range(ticks):
        began = time.thread_time()
        fake.advance()
        fake_s.append(time.thread_time() - began)
    return {
        "stage": "snapshot CPU: fake engine against the real snapshot path",
        "devices": devices,
        "real_ms": round(statistics.median(real_s) * 1000, 1),
        "fake_ms": round(statistics.median(fake_s) * 1000, 1),
        "load_1min": round(os.getloadavg()[0], 1),
    }


def plan_cpu(devices: int = 10 * DEVICES, repeat: int = 5) -> dict[str, Any]:
    """CPU (``time.thread_time``, median of ``repeat``) of the fleet table's view plans
    at ``devices`` devices, without the app: a tick's plan of a new snapshot (in the
    worker thread) and a key's re-plan of the snapshot shown (on the event loop, while
    the operator waits): each sort, and filters typed at the ``/`` prompt."""
    from itap_bench.fake_facade import FakeFacade
    from itap_tui.filtering import Filter
    from itap_tui.widgets.device_table import SORTS, ViewRequest, plan_view

    facade = FakeFacade(devices=devices)
    view = plan_view(None, ViewRequest(facade.advance()))

    def median_ms(make: Any) -> float:
        spent = []
        for _ in range(repeat):
            nonlocal view
            request = make()
            began = time.thread_time()
            view = plan_view(view, request)
            spent.append(time.thread_time() - began)
        return round(statistics.median(spent) * 1000, 2)

    out: dict[str, Any] = {"stage": "fleet table view plans", "devices": devices}
    out["tick_ms"] = median_ms(lambda: ViewRequest(facade.advance(), Filter(), "status", False, False))
    snapshot = facade.advance()
    view = plan_view(view, ViewRequest(snapshot))
    for column, _ in SORTS:
        out[f"sort {column}_ms"] = median_ms(lambda column=column: ViewRequest(snapshot, Filter(), column, False, True))
    for text in ("a", "ac-00", "crit|warn", "!ok"):
        out[f"filter '{text}'_ms"] = median_ms(lambda text=text: ViewRequest(snapshot, Filter.parse(text)))
    out["load_1min"] = round(os.getloadavg()[0], 1)
    return out


def stages(settings: Settings | None = None, sizes: tuple[int, ...] = (DEVICES, 10 * DEVICES)) -> list[dict[str, Any]]:
    """Console stages for ``itap bench``: first frame, then key-to-repaint latency and
    the event loop's time per snapshot at each fleet size (1,000 and 10,000 devices)."""
    first = [asyncio.run(_first_frame()) for _ in range(3)]
    out: list[dict[str, Any]] = [
        {
            "stage": "console first frame",
            "workload": f"{DEVICES} devices, fake facade, 120x40 headless",
            "seconds": round(statistics.median(first), 4),
            "p50_ms": round(statistics.median(first) * 1000, 1),
            "p95_ms": round(max(first) * 1000, 1),
            "runs": len(first),
            "target_s": 1.5,
        }
    ]
    for devices in sizes:
        out += key_stages(devices)
    return out


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description="console key-to-repaint at one fleet size")
    parser.add_argument("--devices", type=int, default=DEVICES)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--runs", type=int, default=1, help="pool the keys of this many runs")
    parser.add_argument(
        "--snapshot-cpu", action="store_true", help="only the CPU of one snapshot: fake engine against the real path"
    )
    parser.add_argument("--plan-cpu", action="store_true", help="only the CPU of the fleet table's view plans")
    args = parser.parse_args()
    if args.plan_cpu:
        print(json.dumps(plan_cpu(args.devices), indent=2))
    elif args.snapshot_cpu:
        print(json.dumps(snapshot_cpu(args.devices), indent=2))
    else:
        print(json.dumps(key_stages(args.devices, args.seconds, args.runs), indent=2))
