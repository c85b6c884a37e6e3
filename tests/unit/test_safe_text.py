"""Terminal escape sequences in data are shown, never sent raw to the operator's terminal."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from itap_bench.engine import derived_config
from itap_engine.config import load_settings
from itap_engine.ingest.validate.values import device_problem as _device_problem
from itap_engine.modes.render.report_html import render_report
from itap_engine.safe_text import html_text, markup, visible, visible_tree

REPO = Path(__file__).resolve().parents[2]
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200b-\u200d\ufeff]")
"""Characters that must never reach a terminal from data (newline and tab excepted:
output has lines)."""
TITLE = "\x1b]0;pwned\x07"
RED = "\x1b[31m"


def test_visible_escapes_controls_bidi_and_zero_width_and_leaves_the_rest() -> None:
    assert visible(f"a{TITLE}b") == "a\\x1b]0;pwned\\x07b"
    assert visible(f"pump{RED}-1") == "pump\\x1b[31m-1"
    assert visible("pump\u202e1\u200b\ufeff") == "pump\\u202e1\\u200b\\ufeff"
    assert visible("evil\udcff.csv") == "evil\\udcff.csv"  # an undecodable byte of a file name
    assert visible("a\nb\tc\x85") == "a\\x0ab\\x09c\\x85"
    assert visible("pompe-été 温度 ✓ [bold]") == "pompe-été 温度 ✓ [bold]"
    assert visible(None) == "" and visible(3) == "3"
    assert visible(visible(TITLE)) == visible(TITLE)  # idempotent
    assert visible_tree({"k\x1b": [TITLE, 1, None, (RED,)], "p": Path("/x\x1b")}) == {
        "k\\x1b": ["\\x1b]0;pwned\\x07", 1, None, ["\\x1b[31m"]],
        "p": "/x\\x1b",
    }
    assert markup(f"[red]{RED}") == "\\[red]\\x1b[31m"
    assert html_text(f"<b>{RED}</b>") == "&lt;b&gt;\\x1b[31m&lt;/b&gt;"


@pytest.mark.parametrize("device", ["pump\u202e-1", "pump\u2066-1", "pu\u200bmp", "pump\ufeff", "pump\u200d"])
def test_device_ids_with_bidi_or_zero_width_characters_are_refused(device: str) -> None:
    problem = _device_problem(device)
    assert problem is not None and "bidirectional or zero-width" in problem


@pytest.fixture
def evil_site(tmp_path: Path) -> tuple[Path, Path]:
    derived_config(
        load_settings(REPO / "config.toml"),
        tmp_path,
        fleet=[{"profile": "industrial", "devices": 2, "prefix": "pump", "sites": ["n"]}],
    )
    lines = [f"device_id,ts,rpm,temp_c,vibration_g,current_a,voltage_v,{TITLE}"]
    lines += [f"pump-001,2026-01-01T00:00:{i * 10:02d},1500,60,0.2,10,400,x" for i in range(5)]
    lines.append(f"pump{RED}-002,2026-01-01T00:01:00,1500,60,0.2,10,400,x")
    lines.append("pump\u202e-003,2026-01-01T00:01:00,1500,60,0.2,10,400,x")
    path = tmp_path / "evil\x1b[2Jname.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path / "config.toml", path


def _itap(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from itap_tui.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_ingest_and_status_show_escape_sequences_instead_of_sending_them(evil_site, capsys) -> None:
    config, path = evil_site
    code, out, err = _itap(capsys, "ingest", "--config", str(config), "--profile", "industrial", str(path))
    assert code == 1  # rows quarantined: a warning
    assert not RAW.search(out + err), out + err
    assert "\\x1b[2Jname.csv" in out and "\\x1b]0;pwned" in out  # file name and header, visible
    assert "pump\\x1b[31m-002" in out and "pump\\u202e-003" in out and "bidirectional" in out
    code, out, err = _itap(capsys, "ingest", "--config", str(config), "--profile", "industrial", "--json", str(path))
    assert not RAW.search(out + err)
    [report] = json.loads(out)
    assert not RAW.search(json.dumps(report, ensure_ascii=False))  # no control character in any JSON string
    assert report["source"].endswith("evil\\x1b[2Jname.csv")
    for argv in (("status",), ("status", "--json")):
        code, out, err = _itap(capsys, *argv, "--config", str(config))
        assert code == 0 and not RAW.search(out + err), out
    assert "\\x1b[2Jname.csv" in out  # the JSON (the table may cut the source short)


def test_a_one_line_error_naming_a_file_shows_its_control_characters(tmp_path, capsys) -> None:
    code, out, err = _itap(capsys, "--config", str(tmp_path / f"no{TITLE}.toml"), "status")
    assert code == 2 and not RAW.search(out + err) and "no\\x1b]0;pwned\\x07.toml" in err


def test_html_report_escapes_html_and_shows_control_characters() -> None:
    summary = {
        "status": "WARNING",
        "message": f"1 warning alert(s) on pump{RED}-1",
        "error": None,
        "run_id": 1,
        "rows": {},
        "interval": {},
        "timings_s": {},
        "alerts": {
            "open": [
                {
                    "id": 1,
                    "device_id": f"<script>{RED}",
                    "profile": "industrial",
                    "severity": "warning",
                    "family": "thermal",
                    "opened_at": None,
                    "last_at": None,
                    "peak_score": 1.0,
                    "threshold": 0.5,
                    "acknowledged": False,
                    "contributors": [{"signal": f"temp{TITLE}", "family": "thermal", "share": 1.0}],
                }
            ]
        },
        "validation_alerts": [
            {
                "level": "warning",
                "check": "device_id",
                "device_id": None,
                "signal": None,
                "message": f"ignored columns: {TITLE}",
            }
        ],
    }
    page = render_report(summary)
    assert not RAW.search(page)
    assert "<script>" not in page and "&lt;script&gt;\\x1b[31m" in page and "\\x1b]0;pwned" in page


def test_console_text_shows_control_characters() -> None:
    from itap_engine.snapshot import ContributorView
    from itap_tui.format import contributors_text, plain

    assert plain(f"pump{RED}").plain == "pump\\x1b[31m"
    assert plain("[bold]x[/]").plain == "[bold]x[/]"  # literal, never markup
    text = contributors_text([ContributorView(signal=f"t{TITLE}", family="thermal", share=0.9)])
    assert not RAW.search(text.plain)


async def test_the_console_shows_escape_sequences_in_device_ids_and_quarantined_rows() -> None:
    from itap_bench.fake_facade import FakeFacade
    from itap_tui.app import ItapApp
    from itap_tui.screens import DeviceScreen
    from itap_tui.widgets import DeviceTable, ValidationPanel
    from itap_tui.widgets.keyed_table import KeyedTable

    evil = f"pump{RED}-9"
    shown = "pump\\x1b[31m-9"
    app = ItapApp(FakeFacade(devices=6, extra_devices=(evil,)))
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(100):
            if app.snapshot is not None and app.screen.query(DeviceTable):
                break
            await pilot.pause(0.05)
        table = app.screen.query_one(DeviceTable)
        cell = table.get_cell(evil, "device")
        assert cell.plain == shown
        panel = app.screen.query_one(ValidationPanel)
        text = "\n".join(
            " ".join(getattr(cell, "plain", str(cell)) for cell in panel.get_row_at(i)) for i in range(panel.row_count)
        )
        assert shown in text and not RAW.search(text)
        table.move_cursor(row=table.get_row_index(evil))
        await pilot.press("enter")
        for _ in range(100):
            if isinstance(app.screen, DeviceScreen) and app.screen.detail is not None:
                break
            await pilot.pause(0.05)
        await pilot.pause()
        assert shown in str(app.screen.query_one("#device-header").render())
        raw = app.screen.query_one("#quarantine", KeyedTable).get_cell_at((0, 3))
        assert raw.plain.startswith(shown) and not RAW.search(raw.plain)
