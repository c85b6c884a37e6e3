"""The console loads a scenario from the command palette and plays its faults at
their offsets on the live simulated clock; a bad file is one error naming the entry."""

from __future__ import annotations

from pathlib import Path

from test_tui import ready, tick, wait_for

from itap_bench.fake_facade import FakeFacade
from itap_tui.app import ItapApp
from itap_tui.screens import PromptModal

DRILL = """
name = "palette drill"
[[fault]]
device = "pump-001"
fault = "overheat_drift"
start = 0
duration = "10m"
severity = 2

[[fault]]
device = "ac-001"
fault = "speed_spike"
start = "30s"
duration = 60
"""


async def load_from_palette(pilot, path: Path) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await pilot.press("ctrl+p")
    await pilot.pause()
    await pilot.press(*"Load scenario")
    await pilot.pause(0.3)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, PromptModal))
    await pilot.press("ctrl+a", "ctrl+k", *str(path), "enter")
    await wait_for(pilot, lambda: not isinstance(app.screen, PromptModal))


def injected(facade: FakeFacade) -> list[tuple]:
    return [args for name, args in facade.calls if name == "inject_fault"]


async def test_the_palette_loads_a_scenario_and_faults_start_at_their_offsets(tmp_path: Path) -> None:
    path = tmp_path / "drill.toml"
    path.write_text(DRILL)
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await load_from_palette(pilot, path)
        await wait_for(pilot, lambda: len(injected(facade)) == 1)
        assert injected(facade) == [(("pump-001",), "overheat_drift", 2.0, 600.0)]
        assert any("Scenario palette drill: 2 fault(s)" in str(n.message) for n in app._notifications)
        await tick(pilot, facade, 2)  # 20 s of the 30 s offset
        await pilot.pause(0.6)
        assert len(injected(facade)) == 1
        await tick(pilot, facade, 1)  # 30 s: the second fault
        await wait_for(pilot, lambda: len(injected(facade)) == 2)
        assert injected(facade)[1] == (("ac-001",), "speed_spike", 1.0, 60.0)
        await wait_for(pilot, lambda: any("all 2 fault(s) injected" in str(n.message) for n in app._notifications))


async def test_a_bad_scenario_is_one_error_naming_file_and_entry(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(DRILL.replace('device = "ac-001"', 'device = "ac-999"'))
    facade = FakeFacade(devices=10)
    app = ItapApp(facade)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await load_from_palette(pilot, path)
        await wait_for(pilot, lambda: any(n.title == "Scenario refused" for n in app._notifications))
        [message] = [str(n.message) for n in app._notifications if n.title == "Scenario refused"]
        assert message.startswith(f"{path}: fault 2 (ac-999): unknown device 'ac-999'")
        assert injected(facade) == []
