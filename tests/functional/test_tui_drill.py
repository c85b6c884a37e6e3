"""Drill-down that shows the reason: the driving signal first, readable time, the
incident's interval, simulated faults listed, the score plot at 80x24, no noise."""

from __future__ import annotations

from dataclasses import replace

from test_tui import ready, wait_for

from itap_bench.fake_facade import FakeFacade
from itap_engine.snapshot import ContributorView, DeviceDetail
from itap_tui.app import ItapApp
from itap_tui.format import Palette
from itap_tui.screens import DeviceScreen
from itap_tui.screens.device import simulated_faults
from itap_tui.widgets import ContributorsPanel, SignalPlot
from itap_tui.widgets.keyed_table import KeyedTable
from itap_tui.widgets.signal_plot import time_ticks

MIN = 60_000
T0 = 1_767_247_200_000  # 2026-01-01 06:00 UTC


def _detail(labels: list[str | None], faults=()) -> DeviceDetail:  # type: ignore[no-untyped-def]
    ts = tuple(T0 + i * MIN for i in range(len(labels)))
    return DeviceDetail(
        device_id="pump-001",
        profile="industrial",
        ts=ts,
        series={"temp_c": tuple(1.0 for _ in ts)},
        scores=tuple(0.5 for _ in ts),
        threshold=1.0,
        fault_labels=tuple(labels),
        alerts=(),
        faults=tuple(faults),
        quarantined=(),
        contributors=(),
    )


def test_the_time_axis_is_clock_time_not_minutes() -> None:
    positions, labels = time_ticks(T0, T0 + 60 * MIN, ticks=5)
    assert labels == ["06:00", "06:15", "06:30", "06:45", "07:00"]
    assert positions == [-60.0, -45.0, -30.0, -15.0, 0.0]
    assert time_ticks(T0, T0 + 2 * 86_400_000, ticks=2)[1] == ["01-01 06:00", "01-03 06:00"]


def test_simulated_faults_are_runs_of_the_ground_truth_labels() -> None:
    detail = _detail([None, "overheat_drift", "overheat_drift", None, "sensor_dropout", "sensor_dropout"])
    assert simulated_faults(detail) == [
        ("overheat_drift", T0 + MIN, T0 + 2 * MIN),
        ("sensor_dropout", T0 + 4 * MIN, T0 + 5 * MIN),
    ]


def test_the_plots_draw_the_incident_interval_and_the_threshold(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    plot = SignalPlot()
    calls: list[tuple[str, tuple]] = []
    for name in ("vline", "hline", "xticks"):
        original = getattr(plot.plt, name)
        monkeypatch.setattr(plot.plt, name, lambda *a, _n=name, _o=original, **k: calls.append((_n, a)) or _o(*a, **k))
    detail = _detail([None] * 30)
    plot.show(detail, None, interval=(T0 + 10 * MIN, T0 + 20 * MIN))
    assert ("hline", (1.0, "red")) in calls
    assert [a[0] for n, a in calls if n == "vline"] == [-19.0, -9.0]
    [(_, (_positions, labels))] = [c for c in calls if c[0] == "xticks"]
    assert labels[0] == "06:00" and labels[-1] == "06:29"


def test_contributors_under_the_cut_off_are_left_out() -> None:
    panel = ContributorsPanel()
    shown: list[object] = []
    panel.update = shown.append  # type: ignore[method-assign]
    items = (
        ContributorView("temp_c", "thermal", 0.9),
        ContributorView("rpm", "mechanical", 0.08),
        ContributorView("voltage_v", "electrical", 0.02),
    )
    panel.show(items, Palette(), "")
    text = str(shown[-1])
    assert "temp_c" in text and "rpm" in text and "voltage_v" not in text


async def test_the_device_opens_on_the_signal_driving_its_incident() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade, detail_refresh_s=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        contributors = (ContributorView("vibration_g", "mechanical", 0.7), ContributorView("temp_c", "thermal", 0.3))
        facade.alerts[1] = replace(facade.alerts[1], contributors=contributors)
        app.open_device("pump-007")
        await wait_for(pilot, lambda: isinstance(app.screen, DeviceScreen) and app.screen.detail is not None)
        await pilot.pause()
        assert app.screen.signal == "vibration_g"


async def test_s_reaches_the_score_plot_at_80x24() -> None:
    app = ItapApp(FakeFacade(devices=10), detail_refresh_s=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        app.open_device("pump-007")
        await wait_for(pilot, lambda: isinstance(app.screen, DeviceScreen) and app.screen.detail is not None)
        await pilot.pause()
        screen = app.screen
        score, signal = screen.query_one("#score-plot"), screen.query_one("#signal-plot")
        assert not score.display and signal.display
        await pilot.press("s")
        await pilot.pause()
        assert score.display and not signal.display and score.size.height >= 4
        await pilot.press("s")
        await pilot.pause()
        assert not score.display and signal.display


async def test_the_faults_tab_lists_simulated_faults_too() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade, detail_refresh_s=3600)
    original = facade.device_detail

    async def with_simulated(device_id: str, window_s: float = 3600, at=None) -> DeviceDetail:  # type: ignore[no-untyped-def]
        detail = await original(device_id, window_s, at)
        labels = tuple("bearing_wear" if 2 <= i < 5 else None for i in range(len(detail.ts)))
        return replace(detail, fault_labels=labels)

    facade.device_detail = with_simulated  # type: ignore[method-assign]
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        app.open_device("pump-002")
        await wait_for(pilot, lambda: isinstance(app.screen, DeviceScreen) and app.screen.detail is not None)
        await pilot.pause()
        faults = app.screen.query_one("#fault-history", KeyedTable)
        [key] = [k.value for k in faults.rows if k.value.startswith("sim-")]
        assert faults.get_cell(key, "fault").plain == "bearing_wear"
        assert faults.get_cell(key, "status").plain.startswith("SIMULATED")


async def test_c_picks_a_signal_from_a_list_and_o_overlays_a_second_one() -> None:
    from itap_tui.screens import SignalPicker

    app = ItapApp(FakeFacade(devices=10), detail_refresh_s=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        app.open_device("pump-007")
        await wait_for(pilot, lambda: isinstance(app.screen, DeviceScreen) and app.screen.detail is not None)
        await pilot.pause()
        screen = app.screen
        signals = list(screen.detail.series)
        assert len(signals) >= 3
        target = signals[2] if screen.signal != signals[2] else signals[1]
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, SignalPicker))
        picker_names = [str(o.prompt) for o in app.screen.query_one("OptionList")._options]
        assert picker_names == signals
        for _ in range((signals.index(target) - signals.index(screen.signal)) % len(signals)):
            await pilot.press("down")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is screen)
        assert screen.signal == target
        # o: a second signal on the right axis, named in the header and the plot's legend
        other = next(s for s in signals if s != target)
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, SignalPicker))
        for _ in range(signals.index(other) + 1):  # "(none)" comes first
            await pilot.press("down")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is screen)
        assert screen.overlay == other
        await pilot.pause()
        assert f"+ {other}" in str(screen.query_one("#device-header").render())
        plot = screen.query_one("#signal-plot", SignalPlot)
        assert f"{other}" in plot.plt.build()
        # escape in the picker changes nothing; "(none)" removes the overlay
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, SignalPicker))
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
        assert screen.overlay == other
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, SignalPicker))
        await pilot.press("home", "enter")
        await wait_for(pilot, lambda: app.screen is screen)
        assert screen.overlay is None
