"""The console and the command line in a shell: no terminal, pipes, flags that need
--once, unknown names, NO_COLOR and the mouse."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from rich.table import Table

from itap_bench.fake_facade import FakeFacade
from itap_engine.config import load_settings
from itap_engine.modes.render import output
from itap_engine.store.schema import Device
from itap_engine.store.sql import Store
from itap_tui import cli
from itap_tui.app import ItapApp
from itap_tui.screens import BootstrapScreen, HelpScreen

REPO = Path(__file__).resolve().parents[2]


def _itap(*args: str, cwd: Path, stdin: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "ITAP_CONFIG": str(REPO / "config.toml")}
    return subprocess.run(
        [sys.executable, "-m", "itap_tui.cli", *args],
        env=env,
        cwd=cwd,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The repository's config with its database in tmp_path."""
    text = (REPO / "config.toml").read_text()
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


# ---------------------------------------------------------------------- no terminal
@pytest.mark.parametrize("args", [(), ("console",), ("console", "--attach")], ids=["itap", "console", "attach"])
def test_the_console_without_a_terminal_refuses_at_once_with_a_hint(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = _itap(*args, cwd=tmp_path)
    assert result.returncode == 2  # at once: no bootstrap, no lock, no data folder (below)
    assert "needs a terminal" in result.stderr and "--once" in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("args", [("--json",), ("--report", "r.html"), ("--profile", "industrial")])
def test_once_flags_without_once_are_refused(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = _itap(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert "only go with --once" in result.stderr
    assert not (tmp_path / "r.html").exists()


def test_a_subcommands_own_json_still_works(config: Path) -> None:
    assert cli.main(["--config", str(config), "status", "--json"]) == 0


# ---------------------------------------------------------------------- unknown device
def test_anomalies_for_an_unknown_device_is_an_error(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--config", str(config), "anomalies", "--device", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown device 'nope'" in err and "no devices yet" in err
    store = Store(load_settings(config))
    with store.session() as session:
        session.add(Device(id="pump-001", profile="industrial"))
        session.commit()
    store.close()
    assert cli.main(["--config", str(config), "anomalies", "--device", "nope"]) == 2
    assert "known devices include pump-001" in capsys.readouterr().err
    assert cli.main(["--config", str(config), "anomalies", "--device", "pump-001"]) == 0


# ---------------------------------------------------------------------- pipes
def test_piped_tables_are_not_cut_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stream)
    table = Table("device", "message")
    long = "a validation message that is much longer than eighty columns of a terminal, " * 2
    table.add_row("pump-001", long.strip())
    output.console().print(table)
    text = stream.getvalue()
    assert long.strip() in text and "…" not in text
    assert max(len(line) for line in text.splitlines()) > 80


def test_itap_status_into_a_pipe_is_not_cut(config: Path) -> None:
    folder = config.parent / ("a-folder-name-long-enough-to-push-the-database-url-past-eighty-columns" * 2)
    folder.mkdir()
    (folder / "config.toml").write_text(config.read_text())
    result = _itap("--config", str(folder / "config.toml"), "status", cwd=config.parent)
    assert result.returncode == 0, result.stderr
    [line] = [x for x in result.stdout.splitlines() if x.startswith("database:")]
    assert str(folder) in line


# ---------------------------------------------------------------------- colour and mouse
def test_no_color_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    assert output.console().no_color
    app = ItapApp(FakeFacade(devices=4))
    assert app.no_color


@pytest.mark.parametrize(
    ("argv", "config_mouse", "expected"),
    [
        (["console"], True, True),
        (["console", "--no-mouse"], True, False),
        (["--no-mouse"], True, False),
        ([], False, False),
    ],
)
def test_no_mouse_flag_and_config_key(
    config: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], config_mouse: bool, expected: bool
) -> None:
    if not config_mouse:
        config.write_text(config.read_text() + "\n[console]\nmouse = false\n")
    seen: dict[str, object] = {}

    def fake_run_console(settings: object, attach: bool = False, mouse: bool = True, at: str | None = None) -> int:
        seen["mouse"] = mouse
        return 0

    monkeypatch.setattr("itap_tui.app.run_console", fake_run_console)
    monkeypatch.setattr(cli, "has_terminal", lambda: True)
    assert cli.main(["--config", str(config), *argv]) == 0
    assert seen["mouse"] is expected


async def test_an_attached_consoles_pause_says_it_pauses_the_view_only() -> None:
    app = ItapApp(FakeFacade(devices=4, mode="attached"))
    async with app.run_test(size=(120, 40)) as pilot:
        while app.snapshot is None or isinstance(app.screen, BootstrapScreen):
            await pilot.pause(0.02)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        [pause] = [text for _, keys, text in app.screen.entries() if keys == "p"]
        assert "view only" in pause and "keeps running" in pause
        await pilot.press("escape")
        await pilot.press("p")
        await pilot.pause()
        assert app.ui_paused
        assert any("engine keeps running" in str(n.message) for n in app._notifications)


async def test_a_local_consoles_pause_says_it_pauses_the_engine() -> None:
    app = ItapApp(FakeFacade(devices=4))
    async with app.run_test(size=(120, 40)) as pilot:
        while app.snapshot is None or isinstance(app.screen, BootstrapScreen):
            await pilot.pause(0.02)
        await pilot.press("question_mark")
        [pause] = [text for _, keys, text in app.screen.entries() if keys == "p"]
        assert "engine's ticks" in pause


def test_anomalies_as_csv(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import csv as csv_module

    from itap_engine.store.schema import Alert

    store = Store(load_settings(config))
    with store.session() as session:
        session.add(Device(id="pump-001", profile="industrial"))
        session.add(
            Alert(
                profile="industrial",
                device_id="pump-001",
                family="thermal",
                opened_ts=0,
                last_ts=60_000,
                peak_score=2.0,
                threshold=1.0,
                severity="critical",
                contributors='[{"signal": "temp_c", "family": "thermal", "share": 0.93}]',
            )
        )
        session.commit()
    store.close()
    assert cli.main(["--config", str(config), "anomalies", "--csv"]) == 0
    [row] = list(csv_module.DictReader(io.StringIO(capsys.readouterr().out)))
    assert row["device_id"] == "pump-001" and row["kind"] == "alerts" and row["contributors"] == "temp_c 0.93"
    assert row["severity"] == "critical" and row["time"] == "1970-01-01T00:01:00"
    assert cli.main(["--config", str(config), "anomalies", "--csv", "--json"]) == 2
