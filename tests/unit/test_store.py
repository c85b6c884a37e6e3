"""Storage: schema from profiles, idempotent batched inserts, NaN as NULL, WAL."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from itap_engine.config import load_settings
from itap_engine.ingest.simulator import Simulator, device_ids_for
from itap_engine.store.sql import Store, StoreError, from_epoch_ms, to_epoch_ms

REPO = Path(__file__).resolve().parents[2]
SETTINGS = load_settings(REPO / "config.toml")
START = SETTINGS.simulation.start


def frame(devices: int = 3, hours: float = 1.0) -> pd.DataFrame:
    return Simulator(SETTINGS, "industrial", device_ids_for("s", devices)).generate(
        START, START + timedelta(hours=hours)
    )


def test_schema_has_one_wide_table_per_profile(tmp_path: Path) -> None:
    store = Store(SETTINGS, url=f"sqlite:///{tmp_path / 'a.db'}")
    conn = sqlite3.connect(tmp_path / "a.db")
    columns = [row[1] for row in conn.execute("PRAGMA table_info(readings_industrial)")]
    assert columns == [
        "device_id",
        "ts",
        "state",
        "rpm",
        "temp_c",
        "vibration_g",
        "current_a",
        "voltage_v",
        "fault",
        "changepoint",
    ]
    pk = [row[1] for row in conn.execute("PRAGMA table_info(readings_industrial)") if row[5]]
    assert pk == ["device_id", "ts"]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "readings_aircraft",
        "run",
        "quarantine",
        "alert",
        "fault_command",
        "model_version",
        "score",
        "watermark",
    } <= tables
    store.close()


def test_insert_is_idempotent_and_counts_duplicates(tmp_path: Path) -> None:
    store = Store(SETTINGS, url=f"sqlite:///{tmp_path / 'a.db'}")
    data = frame()
    first = store.insert_readings("industrial", data, batch_rows=250)
    assert (first.inserted, first.duplicates) == (len(data), 0)
    again = store.insert_readings("industrial", data, batch_rows=250)
    assert (again.inserted, again.duplicates) == (0, len(data))
    half = store.insert_readings("industrial", pd.concat([data.iloc[::2], frame(hours=2).iloc[-50:]]))
    assert half.inserted == 50 and half.duplicates == len(data.iloc[::2])
    assert store.count_readings("industrial") == len(data) + 50


def test_reads_by_time_find_every_device_even_one_written_before_its_device_row(tmp_path: Path) -> None:
    """Reads by time go through the device table. A database where an ingest was
    killed between its readings and its device row (older versions wrote the device
    after) gets the missing rows once, when a store opens it."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    store = Store(SETTINGS, url=url)
    data = frame(devices=3)
    store.insert_readings("industrial", data)
    mid = int(store.read_readings("industrial")["ts"].median())
    expected = store.read_readings("industrial", since_ms=mid)
    assert set(expected["device_id"]) == {"s-001", "s-002", "s-003"}
    store.close()
    conn = sqlite3.connect(tmp_path / "a.db")
    with conn:
        conn.execute("DELETE FROM device WHERE id = 's-002'")
        conn.execute("DELETE FROM watermark WHERE key = 'store.orphan_devices_checked'")
    conn.close()
    reopened = Store(SETTINGS, url=url)
    again = reopened.read_readings("industrial", since_ms=mid)
    reopened.close()
    pd.testing.assert_frame_equal(again, expected)


@pytest.mark.parametrize(
    "url", ["postgres://u:secret@db.example/itap", "not a url", "sqlite:////proc/itap-nowhere/x.db"]
)
def test_a_database_that_cannot_be_opened_is_one_line(url: str) -> None:
    with pytest.raises(StoreError) as error:
        Store(SETTINGS, url=url)
    message = str(error.value)
    assert message.startswith("cannot open database ") and "\n" not in message and "secret" not in message


def test_round_trip_keeps_values_and_stores_nan_as_null(tmp_path: Path) -> None:
    store = Store(SETTINGS, url=f"sqlite:///{tmp_path / 'a.db'}")
    data = frame(devices=2)
    data.loc[5:9, "temp_c"] = np.nan
    store.insert_readings("industrial", data)
    nulls = (
        sqlite3.connect(tmp_path / "a.db")
        .execute("SELECT count(*) FROM readings_industrial WHERE temp_c IS NULL")
        .fetchone()[0]
    )
    assert nulls == 5
    back = store.read_readings("industrial")
    assert len(back) == len(data)
    np.testing.assert_allclose(back["temp_c"].to_numpy(), data["temp_c"].to_numpy(), equal_nan=True)
    assert (from_epoch_ms(back["ts"]) == data["ts"].reset_index(drop=True)).all()
    later = store.read_readings("industrial", device_ids=["s-001"], since_ms=int(back["ts"].iloc[100]))
    assert later["ts"].min() > back["ts"].iloc[100] and set(later["device_id"]) == {"s-001"}


@hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.integers(min_value=0, max_value=59), min_size=1, max_size=120), batch=st.integers(1, 40))
def test_any_sequence_of_inserts_stores_each_key_once(tmp_path_factory: object, picks: list[int], batch: int) -> None:
    path = tmp_path_factory.mktemp("h") / "h.db"  # type: ignore[attr-defined]
    store = Store(SETTINGS, url=f"sqlite:///{path}")
    data = frame(devices=1, hours=1 / 6)  # 60 rows
    total_inserted = 0
    for start in range(0, len(picks), 7):
        chunk = data.iloc[sorted(set(picks[start : start + 7]))]
        result = store.insert_readings("industrial", chunk, batch_rows=batch)
        assert result.inserted + result.duplicates == len(chunk)
        total_inserted += result.inserted
    assert total_inserted == store.count_readings("industrial") == len(set(picks))
    store.close()


def test_runs_quarantine_watermarks(tmp_path: Path) -> None:
    store = Store(SETTINGS, url=f"sqlite:///{tmp_path / 'a.db'}")
    run_id = store.start_run("ingest", "file.csv", "industrial")
    rejected = pd.DataFrame({"reason": ["bad ts"], "line": [7], "device_id": ["[bold]x[/]"], "raw": ['{"a": 1}']})
    assert store.quarantine(rejected, source="file.csv", run_id=run_id) == 1
    run = store.finish_run(run_id, status="ok", rows_in=3, inserted=2, quarantined=1)
    assert (run.rows_in, run.inserted, run.quarantined, run.status) == (3, 2, 1, "ok")
    stale = store.start_run("ingest", "killed.csv")
    assert store.abort_stale_runs() == 1
    assert [r.status for r in store.iter_runs()] == ["aborted", "ok"]
    assert stale
    store.set_watermark("sim_clock", "2026-01-01T00:00:00")
    store.set_watermark("sim_clock", "2026-01-01T01:00:00")
    assert store.get_watermark("sim_clock") == "2026-01-01T01:00:00"
    assert store.get_watermark("missing") is None


def test_epoch_ms_round_trip() -> None:
    stamps = pd.Series(pd.to_datetime(["2026-01-01 00:00:00.000", "2026-03-09 10:14:33.250"]))
    assert (from_epoch_ms(to_epoch_ms(stamps)) == stamps).all()


def test_engine_package_never_imports_textual() -> None:
    code = (
        "import sys, importlib, pkgutil, itap_engine\n"
        "for m in pkgutil.walk_packages(itap_engine.__path__, 'itap_engine.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'itap_tui')]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_validation_problems_fold_into_one_per_device_signal_and_check(store) -> None:
    """Two 10-minute dropouts used to leave 240 validation rows; now two problems."""
    from datetime import datetime

    from itap_engine.snapshot import ValidationAlertRow
    from itap_engine.store.queries import record_problems, validation_problems

    def alert(device: str = "pump-001", signal: str = "temp_c", level: str = "warning") -> ValidationAlertRow:
        return ValidationAlertRow(
            datetime(2030, 1, 1),
            level,
            "missing_rate",
            device,
            signal,
            f"{signal} missing in 40% of {device}'s readings",
        )

    minute = 60_000
    for t in range(10):  # first dropout: 10 cycles, each raising it
        record_problems(store, [alert(), alert(signal="rpm"), alert(level="info", signal="x")], t * minute)
    record_problems(store, [], 10 * minute)  # it stopped
    for t in range(20, 30):  # second dropout
        record_problems(store, [alert()], t * minute)
    problems = validation_problems(store)
    assert [(p.signal, p.count, p.first_ts, p.last_ts, p.resolved_ts) for p in problems] == [
        ("temp_c", 10, 0, 9 * minute, 10 * minute),
        ("rpm", 10, 0, 9 * minute, 10 * minute),
        ("temp_c", 10, 20 * minute, 29 * minute, None),
    ]
    assert all(p.signal != "x" for p in problems)  # info is not a problem


def test_retention_on_sqlite_deletes_the_named_devices_older_rows(tmp_path: Path) -> None:
    from itap_engine.detection.scoring import insert_scores

    store = Store(SETTINGS, url=f"sqlite:///{tmp_path / 'r.db'}")
    store.insert_readings("industrial", frame(devices=3, hours=2))
    stored = store.read_readings("industrial", columns=["device_id", "ts"])
    insert_scores(store, "industrial", stored.assign(score=0.1, model_version_id=1, contributors=[()] * len(stored)))
    cutoff = int(stored["ts"].median())
    kept_device = "s-003"
    out = store.expire_before(cutoff, {"industrial": ["s-001", "s-002"], "aircraft": []})
    old = (stored["ts"] < cutoff) & (stored["device_id"] != kept_device)
    assert out == {"readings_industrial": int(old.sum()), "scores_industrial": int(old.sum())}
    assert store.count_readings("industrial") == len(stored) - int(old.sum())
    assert store.partitions is None  # SQLite keeps its plain tables
    store.close()


def test_model_numbers_count_each_profiles_own_versions(tmp_path: Path) -> None:
    """The header said "aircraft v2 industrial v1" for each profile's first model: the
    database ids the profiles share. Numbers are per profile."""
    from itap_engine.store.queries import model_numbers
    from itap_engine.store.schema import ModelVersion

    store = Store(SETTINGS, url=f"sqlite:///{tmp_path / 'a.db'}")
    ids: dict[str, list[int]] = {}
    with store.session() as session:
        for profile in ("industrial", "aircraft", "industrial", "industrial", "aircraft"):
            row = ModelVersion(profile=profile, detector="shift", path="x", sha256="0" * 64)
            session.add(row)
            session.commit()
            session.refresh(row)
            ids.setdefault(profile, []).append(int(row.id or 0))
    assert model_numbers(store, {"industrial": ids["industrial"][0], "aircraft": ids["aircraft"][0]}) == {
        "industrial": 1,
        "aircraft": 1,
    }
    assert model_numbers(store, {"industrial": ids["industrial"][2], "aircraft": ids["aircraft"][1]}) == {
        "industrial": 3,
        "aircraft": 2,
    }
