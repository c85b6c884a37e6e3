"""Navigation that stays put: stable row order while moving, table keys, sort
direction and column, and a filter language that explains itself."""

from __future__ import annotations

import pytest
from test_tui import ready, table_devices, tick, wait_for
from textual.widgets import Input, Static

from itap_bench.fake_facade import FakeFacade
from itap_tui.app import ItapApp
from itap_tui.filtering import ANOMALY_KEYS, DEVICE_KEYS, Filter, FilterError
from itap_tui.screens import AnomaliesScreen, BootstrapScreen, FaultModal, FleetScreen, HelpScreen
from itap_tui.screens.anomalies import ANOMALY_FILTER_EXAMPLES
from itap_tui.screens.fleet import FLEET_FILTER_EXAMPLES
from itap_tui.widgets import AnomalyTable, DeviceTable, FilterBar
from itap_tui.widgets.device_table import SORTS, sort_key


# ---------------------------------------------------------------------- the language
def _fleet(ticks: int = 6):  # type: ignore[no-untyped-def]
    facade = FakeFacade(devices=25)
    return facade.advance(ticks)


@pytest.mark.parametrize(
    ("text", "predicate"),
    [
        ("!ok", lambda r: r.status != "ok"),
        ("crit|warn", lambda r: r.status in ("critical", "warning")),
        ("crit or warn", lambda r: r.status in ("critical", "warning")),
        ("!profile:aircraft", lambda r: r.profile != "aircraft"),
        ("profile:industrial !north", lambda r: r.profile == "industrial" and r.site != "north"),
        ("score>0.35", lambda r: r.score is not None and r.score > 0.35),
        ("score<0.35", lambda r: r.score is not None and r.score < 0.35),
    ],
)
def test_negation_or_and_comparisons(text: str, predicate) -> None:  # type: ignore[no-untyped-def]
    snapshot = _fleet()
    flt = Filter.parse(text, DEVICE_KEYS, {"score"})
    got = [r.device_id for r in snapshot.devices if flt.matches_device(r)]
    want = [r.device_id for r in snapshot.devices if predicate(r)]
    assert got == want and 0 < len(want) < len(snapshot.devices), (text, got)


def test_a_signal_compares_by_its_latest_value() -> None:
    snapshot = _fleet()
    pumps = [r for r in snapshot.devices if r.profile == "industrial" and r.values.get("temp_c") is not None]
    limit = sorted(r.values["temp_c"] for r in pumps)[len(pumps) // 2]
    flt = Filter.parse(f"temp_c>{limit}", DEVICE_KEYS, {"score", "temp_c"})
    assert {r.device_id for r in snapshot.devices if flt.matches_device(r)} == {
        r.device_id for r in pumps if r.values["temp_c"] > limit
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour:red", "unknown key 'colour'"),
        ("tmp_c>80", "unknown signal 'tmp_c'"),
        ("profile:", "needs a value"),
    ],
)
def test_an_unknown_key_or_signal_is_an_error(text: str, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        Filter.parse(text, DEVICE_KEYS, {"score", "temp_c"})


def test_the_placeholder_examples_match_something() -> None:
    snapshot = _fleet(12)
    for example in FLEET_FILTER_EXAMPLES:
        flt = Filter.parse(example, DEVICE_KEYS, {"score"})
        assert any(flt.matches_device(r) for r in snapshot.devices), example
    for example in ANOMALY_FILTER_EXAMPLES:
        flt = Filter.parse(example, ANOMALY_KEYS, {"score"})
        assert any(flt.matches_anomaly(r) for r in snapshot.anomalies), example


# ---------------------------------------------------------------------- in the console
async def test_the_row_order_holds_still_while_the_operator_moves() -> None:
    facade = FakeFacade(devices=20)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        fleet = app.screen
        assert isinstance(fleet, FleetScreen)
        table = fleet.query_one(DeviceTable)
        await pilot.press("s")  # by score: the order changes every tick
        await pilot.press("down", "down", "down")
        under = table.cursor_device
        order = table_devices(table)
        changed = False
        for _ in range(4):
            await tick(pilot, facade)
            wanted = [r.device_id for r in sorted(app.snapshot.devices, key=sort_key("score"))]
            changed |= wanted != order
            assert table_devices(table) == order  # held still
            assert table.cursor_device == under
        assert changed, "the scores did not reorder the fleet: the test shows nothing"
        # idle: the next tick re-sorts, and the cursor stays on its device
        fleet.resort_idle_s = 0.0
        await tick(pilot, facade)
        wanted = [r.device_id for r in sorted(app.snapshot.devices, key=sort_key("score"))]
        assert table_devices(table) == wanted
        assert table.cursor_device == under


async def test_o_re_sorts_on_demand() -> None:
    facade = FakeFacade(devices=20)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        table = app.screen.query_one(DeviceTable)
        await pilot.press("s", "down")
        await tick(pilot, facade, 3)
        await pilot.press("o")
        await pilot.pause()
        wanted = [r.device_id for r in sorted(app.snapshot.devices, key=sort_key("score"))]
        assert table_devices(table) == wanted


async def test_home_end_g_G_j_k_move_the_cursor() -> None:
    app = ItapApp(FakeFacade(devices=12))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        table = app.screen.query_one(DeviceTable)
        last = table.row_count - 1
        await pilot.press("G")
        assert table.cursor_row == last
        await pilot.press("g")
        assert table.cursor_row == 0
        await pilot.press("end")
        assert table.cursor_row == last
        await pilot.press("home")
        assert table.cursor_row == 0
        await pilot.press("j", "j")
        assert table.cursor_row == 2
        await pilot.press("k")
        assert table.cursor_row == 1
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, AnomaliesScreen))
        anomalies = app.screen.query_one(AnomalyTable)
        await pilot.press("G")
        assert anomalies.cursor_row == anomalies.row_count - 1 > 0
        await pilot.press("g")
        assert anomalies.cursor_row == 0


async def test_S_reverses_the_sort_and_a_column_can_be_chosen_directly() -> None:
    app = ItapApp(FakeFacade(devices=12))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        fleet = app.screen
        table = fleet.query_one(DeviceTable)
        summary = fleet.query_one("#fleet-summary", Static)
        fleet.sort_by("device")
        await pilot.pause()
        assert table_devices(table) == sorted(table_devices(table))
        await pilot.press("S")
        await pilot.pause()
        assert "sort: device ↓" in str(summary.render())
        assert table_devices(table) == sorted(table_devices(table), reverse=True)
        await pilot.press("S")
        await pilot.pause()
        assert table_devices(table) == sorted(table_devices(table))
        commands = [c.title for c in app.get_system_commands(fleet)]
        assert {f"Sort by {key}" for key, _ in SORTS} <= set(commands) and "Reverse sort" in commands


async def test_an_unknown_key_is_shown_as_an_error_and_an_empty_result_says_why() -> None:
    app = ItapApp(FakeFacade(devices=12))
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        fleet = app.screen
        table = fleet.query_one(DeviceTable)
        bar = fleet.query_one(FilterBar)
        rows = table.row_count
        await pilot.press("slash", *"colour:red", "enter")
        await pilot.pause()
        assert "unknown key 'colour'" in bar.error and bar.editing  # enter did not apply it
        assert fleet.filter.describe() != "colour:red" and bar.has_class("-error")
        assert "unknown key" in str(bar.query_one(".filter-error").render())
        await pilot.press("escape")
        await pilot.pause()
        assert table.row_count == rows and not bar.has_class("-error")
        await pilot.press("slash", *"zzz", "enter")
        await pilot.pause()
        assert table.row_count == 0
        why = fleet.query_one("#fleet-empty", Static)
        assert why.has_class("-shown") and "No device matches “zzz”: 12 devices" in str(why.render())
        await pilot.press("slash")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert table.row_count == rows and not why.has_class("-shown")


async def test_the_bootstrap_leaves_even_when_help_was_open_over_it() -> None:
    facade = FakeFacade(devices=6, bootstrap_steps=20, bootstrap_delay=0.2)
    app = ItapApp(facade)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BootstrapScreen))
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await wait_for(pilot, lambda: app.engine_started)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, FleetScreen))


async def test_f_opens_on_the_highlighted_row_which_is_the_top_row_until_the_operator_moves() -> None:
    """At start the cursor sat on the first device added (ac-001 in the real fleet), and
    followed it down the status sort: f opened on a device that was not the top row."""
    facade = FakeFacade(devices=25)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        table = app.screen.query_one(DeviceTable)
        first = table_devices(table)[0]
        last = table_devices(table)[-1]
        await facade.inject_fault([last], "overheat_drift", 5.0, 3600)
        for _ in range(60):  # until the fault makes the last device the most urgent one
            await tick(pilot, facade, 1)
            if table_devices(table)[0] != first:
                break
        top = table_devices(table)[0]
        assert top != first  # the status sort moved the first device down
        assert table.cursor_row == 0 and table.cursor_device == top
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, FaultModal))
        assert app.screen.query_one("#fault-devices", Input).value == top
        await pilot.press("escape")
        await pilot.press("down")  # the operator moves: the cursor follows the device from now on
        second = table.cursor_device
        await tick(pilot, facade, 2)
        assert table.cursor_device == second


async def test_the_start_screen_says_first_start_only_when_history_is_simulated() -> None:
    from textual.widgets import Label, ProgressBar

    from itap_engine.snapshot import Progress

    app = ItapApp(FakeFacade(devices=5))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        for simulated in (False, True):
            screen = BootstrapScreen()
            await app.push_screen(screen)
            intro, bar = screen.query_one("#bootstrap-intro", Label), screen.query_one(ProgressBar)
            steps = [
                Progress("training", 0.5, "training the industrial model"),
                Progress("training", 1.0, "models ready"),
            ]
            if simulated:
                steps = [
                    Progress("history", 0.0, "simulating 24 h of normal operation"),
                    Progress("history", 0.5, "simulated 24 h for 50% of the fleet"),
                    Progress("history", 1.0, "simulated 24 h of normal operation"),
                    *steps,
                ]
            else:
                steps.insert(0, Progress("history", 1.0, "history found in the database"))
            seen = []
            for step in steps:
                screen.progress(step)
                await pilot.pause()
                seen.append(bar.progress)
                if step.message == "training the industrial model":  # its stage is said once
                    assert str(screen.query_one("#bootstrap-stage").render()).startswith("training the industrial")
            text = str(intro.render()).lower()
            assert ("first start" in text and "24 h" in text) if simulated else "first start" not in text
            assert seen == sorted(seen) and len(set(seen)) == len(seen) and seen[-1] == 1.0  # it moves, forwards
            await app.pop_screen()
