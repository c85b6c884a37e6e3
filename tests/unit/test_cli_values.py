"""Command-line values are checked before any work: one line on stderr, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from itap_bench.engine import derived_config
from itap_engine.config import load_settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    derived_config(
        load_settings(REPO / "config.toml"),
        tmp_path,
        fleet=[{"profile": "industrial", "devices": 2, "prefix": "pump", "sites": ["n"]}],
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ITAP_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("ITAP_DB_URL", raising=False)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from itap_tui.cli import main

    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["generate", "--freq", "0"], "argument --freq: 0 is out of range"),
        (["generate", "--freq", "-10"], "argument --freq: -10 is out of range"),
        (["generate", "--hours", "nan"], "argument --hours: 'nan' is not a finite number"),
        (["generate", "--hours", "inf"], "argument --hours: 'inf' is not a finite number"),
        (["generate", "--hours", "0"], "argument --hours: 0 is out of range: use more than 0"),
        (["generate", "--devices", "1000000000"], "argument --devices: 1000000000 is out of range"),
        (["generate", "--seed", "-1"], "argument --seed: -1 is out of range"),
        (["generate", "--fault-rate=-inf"], "argument --fault-rate: '-inf' is not a finite number"),
        (["generate", "--devices", "100000", "--hours", "8000"], "at most 50,000,000 per run"),
        (["anomalies", "--limit", "99999999999999999999"], "argument --limit: 99999999999999999999 is out of range"),
        (["anomalies", "--limit", "0"], "argument --limit: 0 is out of range"),
        (["ingest", "--chunk-rows", "99999999999", "x.csv"], "argument --chunk-rows: 99999999999 is out of range"),
        (["validate", "--chunk-rows", "1e9", "x.csv"], "argument --chunk-rows: '1e9' is not a whole number"),
        (["status", "--runs", "-5"], "argument --runs: -5 is out of range"),
        (["evaluate", "--simulate", "--hours", "nan"], "argument --hours: 'nan' is not a finite number"),
        (["generate", "--out", "/nonexistent-itap/x.csv"], "the folder /nonexistent-itap does not exist"),
        (["validate", "--report", "/nonexistent-itap/r.json", "x.csv"], "the folder /nonexistent-itap does not exist"),
        (["bench", "--out", "/nonexistent-itap/b.json"], "the folder /nonexistent-itap does not exist"),
        (["evaluate", "--skab", "/tmp", "--predictions", "/nonexistent-itap/p.csv"], "the folder /nonexistent-itap"),
    ],
)
def test_bad_values_are_one_line_and_exit_2(site: Path, capsys, argv: list[str], needle: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    assert out == "" and err.count("\n") == 1 and needle in err, err
    assert not (site / "itap.db").exists()  # refused before any work
    assert not Path("/nonexistent-itap").exists()


def test_generate_out_refuses_an_existing_file_unless_forced(site: Path, capsys) -> None:
    target = site / "out.csv"
    target.write_text("keep me\n")
    code, _, err = run(capsys, "generate", "--devices", "1", "--hours", "0.1", "--out", str(target))
    assert code == 2 and "already exists; add --force" in err and target.read_text() == "keep me\n"
    code, _out, err = run(capsys, "generate", "--devices", "1", "--hours", "0.1", "--out", str(target), "--force")
    assert code == 0, err
    assert target.read_text().startswith("device_id,") and len(target.read_text().splitlines()) == 37
    code, _, err = run(capsys, "generate", "--devices", "1", "--hours", "0.1", "--out", str(site))
    assert code == 2 and "is a folder" in err


def test_once_report_into_a_missing_folder_is_unknown_and_creates_nothing(site: Path, capsys) -> None:
    code, out, _err = run(capsys, "--once", "--report", "/nonexistent-itap/x.html")
    assert code == 3
    assert out.startswith("ITAP UNKNOWN - ") and "the folder /nonexistent-itap does not exist" in out
    assert not Path("/nonexistent-itap").exists() and not (site / "itap.db").exists()
