"""The theme picker is in the palette, and the chosen theme is remembered across starts."""

from __future__ import annotations

from pathlib import Path

from test_tui import ready, wait_for

from itap_bench.fake_facade import FakeFacade
from itap_tui.app import ItapApp
from itap_tui.state import load_state


async def test_the_chosen_theme_is_remembered_for_the_next_start(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("ITAP_THEME", raising=False)
    state = tmp_path / "console.json"
    app = ItapApp(FakeFacade(devices=5), state_file=state)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert app.theme == "textual-dark" and not state.exists()  # nothing chosen, nothing written
        assert "Theme" in [c.title for c in app.get_system_commands(app.screen)]
        await pilot.press("ctrl+p")
        await pilot.press(*"Theme")
        await pilot.press("enter")  # the palette's theme picker
        await pilot.pause()
        await pilot.press(*"nord")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.theme == "nord")
    assert load_state(state) == {"theme": "nord"}
    again = ItapApp(FakeFacade(devices=5), state_file=state)
    async with again.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert again.theme == "nord"
        await pilot.press("ctrl+t")  # dark/light is a choice too
        await wait_for(pilot, lambda: again.theme != "nord")
    assert load_state(state) == {"theme": again.theme}


async def test_a_bad_state_file_is_the_same_as_none(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("ITAP_THEME", raising=False)
    for text in ("{not json", '["nord"]', '{"theme": "no-such-theme"}', '{"theme": 3}'):
        state = tmp_path / "console.json"
        state.write_text(text)
        app = ItapApp(FakeFacade(devices=5), state_file=state)
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot)
            assert app.theme == "textual-dark"
