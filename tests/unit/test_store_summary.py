"""``itap status``'s read of the database: the lean SQLite path and the full Store give
the same summary, and the lean path is taken only where opening a Store changes nothing."""

from __future__ import annotations

import sqlite3
from datetime import UTC, timedelta
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from itap_engine.config import Settings, load_settings
from itap_engine.ingest.simulator import Simulator, device_ids_for
from itap_engine.store import schema as models
from itap_engine.store import sql, summary
from itap_engine.store.sql import Store

REPO = Path(__file__).resolve().parents[2]
BASE = load_settings(REPO / "config.toml")


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("ITAP_DB_URL", raising=False)
    return BASE.with_overrides(database={"url": f"sqlite:///{tmp_path / 'status.db'}"})


def _fill(store: Store) -> pd.DataFrame:
    start = BASE.simulation.start
    frame = Simulator(BASE, "industrial", device_ids_for("s", 3)).generate(start, start + timedelta(minutes=30))
    run_id = store.start_run("ingest", "a [bold]file[/].csv", "industrial")
    store.insert_readings("industrial", frame)
    rejected = pd.DataFrame(
        {"reason": ["bad ts", "bad rpm"], "line": [7, 9], "device_id": ["x", "y"], "raw": ["{}"] * 2}
    )
    store.quarantine(rejected, source="a.csv", run_id=run_id)
    store.finish_run(run_id, status="warning", rows_in=len(frame) + 2, inserted=len(frame), quarantined=2)
    store.start_run("generate", "generate:industrial", "industrial")
    with store.session() as session:
        for device, status, acknowledged in (
            ("s-001", "open", False),
            ("s-002", "open", True),
            ("s-003", "closed", False),
        ):
            session.add(
                models.Alert(
                    profile="industrial",
                    device_id=device,
                    family="thermal",
                    status=status,
                    opened_ts=0,
                    last_ts=0,
                    acknowledged=acknowledged,
                )
            )
        session.commit()
    return frame


def test_lean_sqlite_read_gives_what_the_store_gives(settings: Settings) -> None:
    store = Store(settings)
    frame = _fill(store)
    store.close()
    path = settings.database_url.removeprefix("sqlite:///")
    ready = summary._open_ready_sqlite(settings.database_url, settings.profiles, 1000)
    assert ready is not None  # a database a Store has opened is read without SQLAlchemy
    ready.close()

    lean = summary.read_summary(settings, runs=5)
    full = summary._read_through_store(settings, runs=5)
    assert lean == full
    industrial = next(p for p in lean.profiles if p.profile == "industrial")
    assert (industrial.devices, industrial.rows) == (3, len(frame))
    assert industrial.latest == pd.Timestamp(frame["ts"].max()).to_pydatetime()
    assert (lean.quarantined, lean.open_alerts, lean.unacknowledged_alerts) == (2, 2, 1)
    assert [(r.kind, r.status, r.source) for r in lean.runs] == [
        ("generate", "running", "generate:industrial"),
        ("ingest", "warning", "a [bold]file[/].csv"),
    ]
    assert all(r.started_at.tzinfo is UTC for r in lean.runs)
    store = Store(settings)  # the ORM's reading of the same rows
    assert [(r.id, r.started_at) for r in store.iter_runs(5)] == [(r.id, r.started_at) for r in lean.runs]
    assert store.latest_ts("industrial") == sql.datetime_to_ms(industrial.latest)  # type: ignore[arg-type]
    store.close()
    assert lean.database == f"sqlite:///{path}"
    assert [r["id"] for r in lean.as_dict()["runs"]] == [r.id for r in lean.runs]  # type: ignore[index]


def test_a_database_a_store_would_change_is_read_through_the_store(settings: Settings) -> None:
    """A readings row without its device row (an ingest killed between the two) is
    registered by the Store on open: the lean path must not skip that and count less."""
    Store(settings).close()
    path = settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO readings_industrial (device_id, ts) VALUES ('orphan-1', 0)")
        conn.execute("DELETE FROM watermark WHERE key = ?", (summary.ORPHANS_CHECKED_KEY,))
    conn.close()
    assert summary._open_ready_sqlite(settings.database_url, settings.profiles, 1000) is None

    industrial = next(p for p in summary.read_summary(settings, runs=1).profiles if p.profile == "industrial")
    assert (industrial.devices, industrial.rows) == (1, 1)
    ready = summary._open_ready_sqlite(settings.database_url, settings.profiles, 1000)
    assert ready is not None  # the Store registered it; from now on the lean path reads
    ready.close()


def test_a_missing_database_is_created_as_before(settings: Settings) -> None:
    path = Path(settings.database_url.removeprefix("sqlite:///"))
    assert not path.exists()
    info = summary.read_summary(settings, runs=3)
    assert path.is_file() and info.runs == () and {p.rows for p in info.profiles} == {0}


def test_the_lean_schema_check_knows_every_table_a_store_creates() -> None:
    assert {model.__tablename__ for model in sql._FIXED_TABLES} == summary.FIXED_TABLES  # type: ignore[attr-defined]
    assert summary.ORPHANS_CHECKED_KEY == sql._ORPHANS_CHECKED_KEY


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=40))
def test_a_url_read_without_sqlalchemy_is_shown_as_sqlalchemy_shows_it(path: str) -> None:
    """``database:`` in the output is the Store's password-free URL; the lean path prints
    its URL as given, so it takes only URLs that SQLAlchemy prints unchanged."""
    url = f"sqlite:////tmp/{path}"
    if summary._PLAIN_SQLITE.fullmatch(url):
        assert sql._safe(url) == url


def test_status_lists_each_engine_and_flags_a_silent_one(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shards write their status every tick; ``itap status`` shows each, and a running one
    not heard from for a minute stands out (the old status had no word on the engines)."""
    import json
    from datetime import datetime

    from itap_tui import cli

    now = datetime.now(UTC).replace(microsecond=0)  # heartbeats are stored to the second

    def status(ago_s: int, phase: str, **extra: object) -> str:
        heartbeat = (now - timedelta(seconds=ago_s)).isoformat(timespec="seconds")
        return json.dumps({"pid": 4242, "heartbeat": heartbeat, "phase": phase, "ticks": 7, **extra})

    store = Store(settings)
    store.set_watermark("engine.status@shard:0/2", status(3, "running", sim_time="2026-01-01T06:00:00"))
    store.set_watermark("engine.status@shard:1/2", status(600, "running", last_error="[bold]disk[/] full"))
    store.set_watermark("engine.status@shard:2/3", "not json")  # shown as nothing, never an error
    store.close()
    lean = summary.read_summary(settings, runs=1)
    assert lean == summary._read_through_store(settings, runs=1)
    assert [(e.shard, e.phase, e.ticks) for e in lean.engines] == [("0/2", "running", 7), ("1/2", "running", 7)]

    monkeypatch.setenv("ITAP_DB_URL", settings.database_url)
    monkeypatch.setenv("COLUMNS", "200")
    assert cli.main(["--config", str(REPO / "config.toml"), "status", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if "│ shard" in line}
    assert set(lines) == {"shard 0/2", "shard 1/2"}
    assert "silent" not in lines["shard 0/2"] and " s ago " in lines["shard 0/2"]
    assert "10 min ago: silent" in lines["shard 1/2"] and "[bold]disk[/] full" in lines["shard 1/2"]
    document = lean.as_dict(now)
    assert [(e["shard"], e["seconds_since_heartbeat"]) for e in document["engines"]] == [("0/2", 3), ("1/2", 600)]


def test_status_lists_runs_without_the_engines_ok_ticks_unless_asked(settings: Settings) -> None:
    """Two shards write several tick runs a second: an ``itap ingest`` left the eight
    runs listed within a second. A tick with a problem is still listed."""
    store = Store(settings)
    ingest = store.start_run("ingest", "plant.csv", "industrial")
    store.finish_run(ingest, status="ok", rows_in=3, inserted=3)
    warned = store.start_run("tick", "sim:industrial", "industrial")
    store.finish_run(warned, status="warning", rows_in=3, inserted=2, quarantined=1)
    for _ in range(10):
        tick = store.start_run("tick", "sim:industrial", "industrial")
        store.finish_run(tick, status="ok", rows_in=3, inserted=3)
    store.close()
    lean = summary.read_summary(settings, runs=5)
    assert lean == summary._read_through_store(settings, runs=5)
    assert [(r.kind, r.status) for r in lean.runs] == [("tick", "warning"), ("ingest", "ok")]
    every = summary.read_summary(settings, runs=5, ticks=True)
    assert every == summary._read_through_store(settings, runs=5, ticks=True)
    assert [(r.kind, r.status) for r in every.runs] == [("tick", "ok")] * 5
