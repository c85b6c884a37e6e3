"""Keys typed ahead of the filter's focus belong to the filter.

The terminal can deliver ``/pump-002⏎`` before the console has moved the focus from the
table to the filter (a fast typist, or a loaded machine: the tmux test saw the console
paused by the ``p`` of ``/pump-002``). Here the keys are posted to the app all at once,
as a terminal read delivers them, without waiting for the app between keys.
"""

from __future__ import annotations

from datetime import timedelta

from test_tui import ready, table_devices, tick, wait_for
from textual import events
from textual.widgets import Input

from itap_bench.fake_facade import FakeFacade
from itap_tui.app import ItapApp
from itap_tui.screens import AnomaliesScreen, FaultModal, FleetScreen, PromptModal
from itap_tui.widgets import DeviceTable

NAMES = {"/": "slash", "-": "minus", "\r": "enter", " ": "space"}


def burst(app: ItapApp, text: str) -> None:
    """``text`` as one terminal read: every key queued before the app handles the first."""
    for char in text:
        key = NAMES.get(char, char)
        app.post_message(events.Key(key, None if key == "enter" else char))


async def test_keys_typed_right_after_slash_go_to_the_fleet_filter() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        fleet = app.screen
        assert isinstance(fleet, FleetScreen)
        sort = fleet.sort_index
        burst(app, "/pump-002\rs")  # and s, typed right after enter: the table's (sort)
        await wait_for(pilot, lambda: fleet.filter.describe() == "pump-002" and fleet.sort_index != sort)
        await pilot.pause()
        # the p did not pause, the m did not open the mute prompt, u undid nothing
        assert not app.ui_paused and facade.paused is False
        assert app.screen is fleet
        assert fleet.query_one(Input).value == "pump-002"
        await tick(pilot, facade)
        assert table_devices(fleet.query_one(DeviceTable)) == ["pump-002"]


async def test_keys_typed_right_after_slash_go_to_the_anomalies_filter() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, AnomaliesScreen))
        anomalies = app.screen
        burst(app, "/pump-007\r")
        await wait_for(pilot, lambda: anomalies.filter.describe() == "pump-007")
        await pilot.pause()
        assert not app.ui_paused and facade.paused is False and app.screen is anomalies
        assert anomalies.query_one(Input).value == "pump-007"
        _, records = anomalies.export_records()
        assert records and {r["device_id"] for r in records} == {"pump-007"}


async def test_keys_typed_right_after_choosing_a_fault_go_to_the_next_fields() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, FaultModal))
        await pilot.pause()
        for key in ("down", "down", "enter", "3", "tab", "2", "m", "enter"):  # one terminal read
            app.post_message(events.Key(key, None if len(key) > 1 else key))
        await wait_for(pilot, lambda: any(c[0] == "inject_fault" for c in facade.calls))
        [(_, (devices, fault, severity, duration))] = [c for c in facade.calls if c[0] == "inject_fault"]
        assert (severity, duration) == (3.0, 120.0) and fault and len(devices) == 1


async def test_keys_typed_right_after_t_answer_the_time_prompt() -> None:
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await tick(pilot, facade, 30)
        burst(app, "t")
        app.post_message(events.Key("ctrl+u", None))  # clear the suggested -1h
        burst(app, "-2m\r")
        await wait_for(pilot, lambda: app.past is not None)
        [(_, (moment,))] = [c for c in facade.calls if c[0] == "snapshot_at"]
        assert moment == app._live.stats.sim_time - timedelta(minutes=2)
        assert not isinstance(app.screen, PromptModal)


async def test_an_inputs_own_keys_act_in_the_order_typed() -> None:
    """ctrl+u then -20m in one terminal read (ssh delivers a fast typist's keys so): the
    old prompt ran ctrl+u after the - (Textual runs an input's bindings once the key has
    bubbled up to the app, while the input types the next character at once), leaving
    20m. The tmux test failed so under load."""
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await tick(pilot, facade, 30)
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptModal) and app.screen.field.has_focus)
        await pilot.pause()
        prompt = app.screen
        assert isinstance(prompt, PromptModal)
        app.post_message(events.Key("ctrl+u", None))
        burst(app, "-20m")
        app.post_message(events.Key("left", None))
        app.post_message(events.Key("left", None))
        app.post_message(events.Key("backspace", None))
        burst(app, "3")
        await wait_for(pilot, lambda: prompt.field.value != "-1h")
        await pilot.pause(0.3)
        assert prompt.field.value == "-30m"
