"""itap ingest --label COL: ground truth from an operator's own column."""

from __future__ import annotations

from _detection_helpers import CONFIG, load_settings

from itap_engine.modes.cli import main
from itap_engine.store.sql import Store


def test_label_column_blank_whitespace_normal_and_zero_mean_normal(tmp_path, monkeypatch, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'itap.db'}"
    monkeypatch.setenv("ITAP_DB_URL", url)
    csv = tmp_path / "pump.csv"
    rows = ["ts,device_id,rpm,temp_c,vibration_g,current_a,voltage_v,status"]
    values = ["", "  ", "normal", "0", "leak", "Normal"]
    for i, label in enumerate(values):
        rows.append(f"2026-01-01T00:00:{i * 10:02d},p1,1480,68,0.35,42,400,{label}")
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert main(["ingest", str(csv), "--config", str(CONFIG), "--profile", "industrial", "--label", "status"]) == 0
    store = Store(load_settings(CONFIG), url=url)
    try:
        stored = store.read_readings("industrial").sort_values("ts")
    finally:
        store.close()
    assert [None if v is None or v != v else v for v in stored["fault"].tolist()] == [
        None,
        None,
        None,
        None,
        "leak",
        None,
    ]
    # a label column that is not there is named
    assert main(["ingest", str(csv), "--config", str(CONFIG), "--profile", "industrial", "--label", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_ingest_help_documents_label() -> None:
    import argparse

    from itap_engine.modes.commands import ingest

    parser = argparse.ArgumentParser()
    ingest.add_arguments(parser)
    text = parser.format_help()
    assert "--label COL" in text and "'normal'" in text and "--exclude-labelled" in text
