"""SVG snapshots of every console screen at 80x24 and 120x40.

A deterministic :class:`FakeFacade` (seeded, tick-driven, no wall clock) makes the
screens identical run to run; the cursor does not blink. Update after a deliberate
change with ``pytest tests/test_tui_snapshots.py --snapshot-update`` and review the
SVGs.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from textual.widgets import Input

from itap_bench.fake_facade import FakeFacade
from itap_engine.snapshot import Progress
from itap_tui.app import ItapApp
from itap_tui.screens import BootstrapScreen, DeviceScreen, FaultModal

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


@pytest.fixture(autouse=True)
def _frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """No blinking cursor, no animations (a tab underline sliding changes colours)."""
    monkeypatch.setattr(Input, "cursor_blink", False)
    monkeypatch.setattr("textual.constants.TEXTUAL_ANIMATIONS", "none")


def _app(devices: int = 24) -> ItapApp:
    facade = FakeFacade(devices=devices, extra_devices=("[bold red]x[/]",))
    # detail_refresh_s: the device screen must not refetch while the picture is taken
    return ItapApp(facade, detail_refresh_s=3600, theme="textual-dark")


async def _until(pilot, condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "screen not ready"
        await pilot.pause(0.02)


async def _ready(pilot) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await _until(pilot, lambda: app.snapshot is not None and not isinstance(app.screen, BootstrapScreen))
    await pilot.pause()


async def _ticked(pilot, ticks: int = 3) -> None:  # type: ignore[no-untyped-def]
    await _ready(pilot)
    facade: FakeFacade = pilot.app.facade
    seq = facade.advance(ticks).seq
    await _until(pilot, lambda: pilot.app.snapshot.seq >= seq)
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_fleet(snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(_app(), terminal_size=size, run_before=_ticked)


@pytest.mark.parametrize("size", SIZES)
def test_fleet_filtered(snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await _ticked(pilot)
        await pilot.press("slash", *"aircraft")
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_anomalies(snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await _ticked(pilot)
        await pilot.press("2")
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_device(snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await _ticked(pilot)
        pilot.app.open_device("pump-007")
        await _until(pilot, lambda: isinstance(pilot.app.screen, DeviceScreen) and pilot.app.screen.detail is not None)
        await pilot.pause()
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_fault_modal(snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await _ticked(pilot)
        await pilot.press("f")
        await _until(pilot, lambda: isinstance(pilot.app.screen, FaultModal))
        await pilot.press("down")
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await _ticked(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=size, run_before=run_before)


class _Bootstrapping(FakeFacade):
    """Reports progress, then waits: the screen is caught mid-bootstrap."""

    async def start(self, progress=None) -> None:  # type: ignore[no-untyped-def]
        assert progress is not None
        progress(Progress("history", 0.25, "simulated 1.5 of 6 h"))
        progress(Progress("features", 0.4, "window 12, long window 120"))
        await asyncio.Event().wait()


@pytest.mark.parametrize("size", SIZES)
def test_bootstrap(snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await _until(
            pilot,
            lambda: (
                isinstance(pilot.app.screen, BootstrapScreen)
                and "40%" in str(pilot.app.screen.query_one("#bootstrap-stage").render())
            ),
        )
        await pilot.pause()

    app = ItapApp(_Bootstrapping(devices=4), theme="textual-dark")
    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_fleet_light_theme(snap_compare) -> None:  # type: ignore[no-untyped-def]
    app = ItapApp(FakeFacade(devices=24), theme="textual-light")
    assert snap_compare(app, terminal_size=(120, 40), run_before=_ticked)


@pytest.mark.parametrize("size", SIZES)
def test_incident_history(snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await _ticked(pilot)
        await pilot.press("3")
        for _ in range(200):  # the history loads in a worker
            if getattr(pilot.app.screen, "loaded", False):
                break
            await pilot.pause(0.02)
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=size, run_before=run_before)
