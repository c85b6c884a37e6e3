"""itap generate next to a stored fleet: new rows, or a plain reason why none were."""

from __future__ import annotations

from _detection_helpers import CONFIG

from itap_engine.modes.cli import main


def test_generate_twice_says_plainly_why_every_row_was_a_duplicate(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ITAP_DB_URL", f"sqlite:///{tmp_path / 'itap.db'}")
    args = ["generate", "--config", str(CONFIG), "--devices", "2", "--hours", "0.1"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0  # like the engine's own fleet: same ids, start and seed
    out = capsys.readouterr().out
    assert "0 inserted" in out
    assert "pump-001..pump-002" in out and "--prefix" in out and "seed" in out
    assert main([*args, "--prefix", "extra"]) == 0
    assert "0 inserted" not in capsys.readouterr().out  # new ids: new rows
