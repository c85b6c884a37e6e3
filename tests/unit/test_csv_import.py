"""CSV import end to end: real files, real SQLite databases, the real command line."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from itap_engine.ingest.csv_source import CsvImportError, CsvOptions, import_csv, plan_csv, validate_csv
from itap_engine.ingest.simulator import Simulator, device_ids_for
from itap_engine.store.sql import Store

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config.toml"
SKAB = Path(__file__).resolve().parents[3] / "shared" / "data" / "skab"
NOW = datetime(2026, 6, 1)
needs_skab = pytest.mark.skipif(not SKAB.is_dir(), reason="SKAB data not present")


def write_config(tmp_path: Path, db: str = "t.db", batch_rows: int = 50000, chunk_rows: int = 50000) -> Path:
    text = CONFIG.read_text(encoding="utf-8")
    text = text.replace('url = "sqlite:///data/itap.db"', f'url = "sqlite:///{tmp_path / db}"', 1)
    text = text.replace("batch_rows = 50000", f"batch_rows = {batch_rows}", 1)
    text = text.replace("chunk_rows = 50000", f"chunk_rows = {chunk_rows}", 1)
    path = tmp_path / f"{db}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def itap(config: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "itap_engine.modes.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kw,
    )


def query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


# ---------------------------------------------------------------------- SKAB
@needs_skab
def test_skab_file_imports_once_with_labels_as_labels(settings, store, tmp_path):
    path = SKAB / "valve1" / "0.csv"
    raw = pd.read_csv(path, sep=";")
    first = import_csv(store, settings, path)
    second = import_csv(store, settings, path)
    assert first.profile == "skab_pump"
    assert (first.rows_in, first.inserted, first.quarantined) == (len(raw), len(raw), 0)
    assert (second.inserted, second.duplicates) == (0, len(raw))
    stored = store.read_readings("skab_pump")
    assert len(stored) == len(raw) and set(stored["device_id"]) == {"skab-valve1-0"}
    assert "anomaly" not in stored.columns
    assert (stored["fault"] == "anomaly").sum() == int(raw["anomaly"].sum())
    assert stored["changepoint"].sum() == int(raw["changepoint"].sum())
    assert stored["flow_rate_lpm"].tolist() == raw["Volume Flow RateRMS"].tolist()
    # naive local wall-clock times stored as given (taken as UTC)
    assert stored["ts"].iloc[0] == int(pd.Timestamp(raw["datetime"].iloc[0]).value // 1_000_000)


@needs_skab
def test_every_skab_file_validates_clean(settings):
    for path in sorted(SKAB.glob("*/*.csv")):
        plan, report = validate_csv(settings, path)
        assert plan.profile == "skab_pump"
        assert report.rejected == 0 and not report.warnings, (path, report.examples[:2])


# ---------------------------------------------------------------------- bad rows
MIXED = (
    "device_id,ts,rpm,temp_c,vibration_g,current_a,voltage_v\r\n"
    "p1,2026-01-01T00:00:00,1480,68,0.3,42,400\r\n"
    "p1,2026-01-01T00:00:10,1480,68,0.3,42,400,99\r\n"  # line 3: too many fields
    "p1,not-a-time,1480,68,0.3,42,400\r\n"  # line 4: bad timestamp
    "p1,2026-01-01T00:00:20,1480,999.0,0.3,42,400\r\n"  # line 5: out of range
    "[bold red]x[/],2026-01-01T00:00:20,1480,68,0.3,42,400\r\n"  # line 6: markup is just text
    "\r\n"  # line 7: blank, skipped
    "p1,2026-01-01T00:00:30,1480,68\r\n"  # line 8: too few fields
    "p1,2026-01-01T00:00:40,1480,,0.3,42,400\r\n"  # line 9: a dropout (stored as NULL)
)


def test_bad_lines_are_quarantined_with_line_and_field(settings, store, tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_bytes(MIXED.encode())
    report = import_csv(store, settings, path, CsvOptions(chunk_rows=3), now=NOW)
    assert (report.rows_in, report.inserted, report.quarantined) == (7, 3, 4)
    rows = query(tmp_path / "t.db", "select line, reason, raw from quarantine order by line")
    assert [r[0] for r in rows] == [3, 4, 5, 8]
    assert "expected 7 fields, found 8" in rows[0][1]
    assert "ts='not-a-time'" in rows[1][1]
    assert rows[2][1] == "temp_c=999.0 outside valid range [-40, 200]"
    assert "expected 7 fields, found 4" in rows[3][1]
    assert json.loads(rows[0][2]) == {"line": "p1,2026-01-01T00:00:10,1480,68,0.3,42,400,99"}
    assert json.loads(rows[2][2])["temp_c"] == "999.0"
    stored = store.read_readings("industrial")
    assert set(stored["device_id"]) == {"p1", "[bold red]x[/]"}
    assert stored["temp_c"].isna().sum() == 1


def test_cli_ingest_prints_accounting_and_escapes_markup(tmp_path):
    config = write_config(tmp_path)
    path = tmp_path / "mixed.csv"
    path.write_bytes(MIXED.replace("999.0", "[red]999[/red]").encode())
    result = itap(config, "ingest", str(path))
    assert result.returncode == 1, result.stderr
    assert "7 rows in = 3 inserted + 0 duplicates + 0 conflicts + 4 quarantined" in result.stdout
    assert "temp_c='[red]999[/red]' is not a number" in result.stdout
    again = itap(config, "ingest", str(path), "--json")
    data = json.loads(again.stdout)
    assert data[0]["inserted"] == 0 and data[0]["duplicates"] == 3 and data[0]["quarantined"] == 4


def test_cli_ingest_problems_reach_the_consoles_panel_naming_the_file(settings, tmp_path):
    """``itap ingest``'s validation warnings were printed and stored as alerts, but the
    console's problems panel (and ``itap status``) only showed the engine's. Now each
    file's warnings are problems there, their message starting with the file's name, and
    an ingest resolves none of the engine's open problems."""
    from itap_engine.facade.attached import snapshot_from_db
    from itap_engine.snapshot import ValidationAlertRow
    from itap_engine.store.queries import record_problems

    config = write_config(tmp_path)
    store = Store(settings, url=f"sqlite:///{tmp_path / 't.db'}")
    try:  # an open problem of the engine's, which an ingest must leave open
        record_problems(store, [ValidationAlertRow(NOW, "warning", "missing_rate", "p9", "rpm", "rpm missing")], 1000)
    finally:
        store.close()
    path = tmp_path / "mixed.csv"
    path.write_bytes(MIXED.encode())
    result = itap(config, "ingest", str(path))
    assert result.returncode == 1 and "rows rejected" in result.stdout, result.stdout + result.stderr
    store = Store(settings, url=f"sqlite:///{tmp_path / 't.db'}")
    try:
        problems = snapshot_from_db(store, settings.with_overrides(database={"url": store.url}), 1).validation_problems
    finally:
        store.close()
    by_check = {p.check: p for p in problems}
    assert by_check["missing_rate"].resolved_ts is None  # still open
    from_file = [p for p in problems if p.message.startswith("mixed.csv: ")]
    assert from_file and any("rows rejected" in p.message for p in from_file), problems


def test_a_files_problems_are_stamped_with_a_sharded_fleets_clock(settings, store, tmp_path):
    """A sharded fleet keeps only per-shard clocks (``sim.clock@shard:i/N``): a file's
    problems got the wall clock there, a year away from the fleet's data time."""
    from itap_engine.modes.commands.ingest import record_file_problems
    from itap_engine.store.queries import validation_problems
    from itap_engine.store.sql import datetime_to_ms

    store.set_watermark("sim.clock@shard:0/2", "2026-01-02T06:00:00")
    store.set_watermark("sim.clock@shard:1/2", "2026-01-02T05:59:50")  # the one behind
    path = tmp_path / "mixed.csv"
    path.write_bytes(MIXED.encode())
    report = import_csv(store, settings, path, CsvOptions(), now=NOW)
    record_file_problems(store, report, str(path))
    problems = validation_problems(store)
    assert problems and {p.first_ts for p in problems} == {datetime_to_ms(datetime(2026, 1, 2, 5, 59, 50))}


# ---------------------------------------------------------------------- formats and mapping
def test_long_format_straddling_chunks_equals_wide(settings, tmp_path):
    sim = Simulator(settings, "industrial", device_ids_for("m", 3), fault_rate_per_device_day=4)
    wide = sim.generate("2026-01-01", "2026-01-01 00:10")
    signals = settings.profile("industrial").signal_names
    long = wide.melt(id_vars=["device_id", "ts"], value_vars=signals, var_name="signal", value_name="value")
    long = long.sort_values(["ts", "device_id", "signal"], kind="stable")
    long_path, wide_path = tmp_path / "long.csv", tmp_path / "wide.csv"
    long.to_csv(long_path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    wide[["device_id", "ts", *signals]].to_csv(wide_path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    results = []
    for name, path, chunk in (("long", long_path, 29), ("wide", wide_path, 50)):
        store = Store(settings, url=f"sqlite:///{tmp_path}/{name}.db")
        try:
            report = import_csv(store, settings, path, CsvOptions(chunk_rows=chunk), now=NOW)
            assert report.quarantined == 0, report.validation.examples[:3]
            results.append(store.read_readings("industrial"))
        finally:
            store.close()
    assert plan_csv(settings, long_path).long
    pd.testing.assert_frame_equal(results[0], results[1])
    assert len(results[0]) == len(wide)


def test_mapping_separator_and_device_options(settings, store, tmp_path):
    path = tmp_path / "plant.csv"
    path.write_text(
        "time|Temp C|speed|amps|volts|vib\n2026-01-01 00:00:00|70|1500|40|400|0.3\n"
        "2026-01-01 00:00:10|71|1500|41|401|0.3\n",
        encoding="utf-8",
    )
    report = import_csv(
        store,
        settings,
        path,
        CsvOptions(
            device="press-7",
            ts_column="time",
            sep="|",
            mapping={"speed": "rpm", "amps": "current_a", "volts": "voltage_v", "vib": "vibration_g"},
        ),
        now=NOW,
    )
    assert report.profile == "industrial" and report.inserted == 2
    stored = store.read_readings("industrial")
    assert stored["device_id"].tolist() == ["press-7", "press-7"] and stored["temp_c"].tolist() == [70.0, 71.0]


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"Temp C": "nosuch"}, r"--map Temp C=nosuch: 'nosuch' is not a signal of profile industrial \(rpm, "),
        ({"Nope": "temp_c"}, r"--map Nope=temp_c: no column 'Nope' in the header \(time, Temp C, speed\)"),
    ],
)
def test_a_mapping_mistake_is_refused_before_any_row_is_stored(settings, store, tmp_path, mapping, message):
    """The review's ``--map Temperature=nosuch`` stored every row with temp_c empty, and
    ``--map Nope=temp_c`` was ignored; each is now one line naming the file and the pair."""
    path = tmp_path / "plant.csv"
    path.write_text("time,Temp C,speed\n2026-01-01 00:00:00,70,1500\n", encoding="utf-8")
    options = CsvOptions(device="press-7", ts_column="time", profile="industrial", mapping=mapping)
    with pytest.raises(CsvImportError, match=message) as refused:
        import_csv(store, settings, path, options, now=NOW)
    assert str(refused.value).startswith(str(path)) and "\n" not in str(refused.value)
    assert store.count_readings("industrial") == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        (b"\n1,2\n", "no header"),
        (b"1,2026-01-01,3\n", "no header"),
        (b"device_id;ts;rpm;temp_c\np;2026-01-01;1;2\n", "use --sep ';'"),
        (b"device_id,ts,colour,size\np,2026-01-01,red,3\n", "no profile fits the columns"),
        (b"device_id,when,rpm\np,2026-01-01,3\n", "no timestamp column"),
        (
            b"device_id,ts,rpm,Temp C,vibration_g,current_a,voltage_v,temp_c\np,2026-01-01,1,2,3,4,5,6\n",
            "both stand for 'temp_c'",
        ),
    ],
)
def test_unusable_files_fail_with_one_clear_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    config = write_config(tmp_path)
    args = ["ingest", str(path)] + (["--sep", ","] if b";" in content else [])
    result = itap(config, *args)
    assert result.returncode == 2
    assert result.stderr.startswith(f"itap: error: {path}: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_an_unclosed_quote_quarantines_its_line_and_keeps_the_rest(settings, store, tmp_path):
    path = tmp_path / "quote.csv"
    lines = MIXED.splitlines()[:3]
    path.write_text(
        "device_id,ts,rpm,temp_c,vibration_g,current_a,voltage_v\n"
        'p1,2026-01-01T00:00:00,1480,68,0.3,42,"400\n'  # line 2: the quote never closes
        + "".join(f"p1,2026-01-01T00:00:{s:02d},1480,68,0.3,42,400\n" for s in (10, 20, 30)),
        encoding="utf-8",
    )
    del lines
    report = import_csv(store, settings, path, CsvOptions(chunk_rows=2), now=NOW)
    assert (report.rows_in, report.inserted, report.quarantined) == (4, 3, 1)
    [(line, reason)] = query(tmp_path / "t.db", "select line, reason from quarantine")
    assert line == 2 and "unclosed quote" in reason


def test_a_truncated_gzip_file_is_one_line(tmp_path):
    import gzip

    path = tmp_path / "cut.csv.gz"
    body = (
        MIXED.splitlines()[0] + "\n" + "".join(f"p1,2026-01-01T00:{m:02d}:00,1480,68,0.3,42,400\n" for m in range(60))
    )
    whole = gzip.compress(body.encode())
    path.write_bytes(whole[: len(whole) // 2])
    result = itap(write_config(tmp_path), "ingest", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"itap: error: {path}: ") and len(result.stderr.strip().splitlines()) == 1


def test_missing_file_is_one_line(tmp_path):
    result = itap(write_config(tmp_path), "ingest", str(tmp_path / "nope.csv"))
    assert result.returncode == 2 and result.stderr.strip() == f"itap: error: {tmp_path / 'nope.csv'}: no such file"


def test_profile_detection_message_lists_found_and_expected(settings, tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("device_id,ts,foo,bar\nx,2026-01-01,1,2\n", encoding="utf-8")
    with pytest.raises(CsvImportError) as error:
        plan_csv(settings, path)
    text = str(error.value)
    assert "foo, bar" in text and "industrial: rpm, temp_c" in text and "skab_pump:" in text


# ---------------------------------------------------------------------- itap validate
def test_validate_report_json_shape_and_exit_codes(tmp_path):
    config = write_config(tmp_path)
    path = tmp_path / "mixed.csv"
    path.write_bytes(MIXED.encode())
    out = tmp_path / "report.json"
    result = itap(config, "validate", str(path), "--report", str(out))
    assert result.returncode == 1, result.stderr
    assert "Validation" in result.stdout and "[bold red]x[/]" not in result.stdout  # not rejected, not shown
    data = json.loads(out.read_text())
    assert {"rows", "accepted", "rejected", "checks", "missing_rate", "examples", "alerts"} <= set(data)
    assert (data["rows"], data["accepted"], data["rejected"]) == (7, 3, 4)
    assert data["checks"]["malformed"] == 2 and data["checks"]["range"] == 1 and data["checks"]["timestamp"] == 1
    assert data["profile"] == "industrial"
    assert data["missing_rate"]["temp_c"]["p1"] == pytest.approx(1 / 2)
    example = data["examples"][0]
    assert {"line", "device_id", "reason", "raw"} <= set(example) and example["line"] == 3
    assert {"level", "check", "device_id", "signal", "value", "message"} <= set(data["alerts"][0])
    assert not (tmp_path / "t.db").exists() or query(tmp_path / "t.db", "select count(*) from quarantine") == [(0,)]
    clean = tmp_path / "clean.csv"
    clean.write_text(
        "device_id,ts,rpm,temp_c,vibration_g,current_a,voltage_v\np1,2026-01-01T00:00:00,1480,68,0.3,42,400\n",
        encoding="utf-8",
    )
    assert itap(config, "validate", str(clean)).returncode == 0


# ---------------------------------------------------------------------- SIGKILL mid-ingest
@pytest.mark.slow
def test_killed_ingest_rerun_matches_one_clean_run(settings, tmp_path):
    """SIGKILL mid-ingest, then a rerun: the readings equal one clean run's, the
    quarantine holds each bad row once, and the accounting (with conflicts: rows
    already stored with other values) holds."""
    sim = Simulator(settings, "industrial", device_ids_for("k", 20), fault_rate_per_device_day=2)
    frame = sim.generate("2026-01-01", "2026-01-01 14:00")  # 100,800 rows
    frame["temp_c"] = frame["temp_c"].astype(float)
    frame.loc[frame.index[::997], "temp_c"] = 999.0  # out of range: quarantined
    bad = int((frame["temp_c"] == 999.0).sum())
    big = tmp_path / "big.csv"
    frame.to_csv(big, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    total = len(frame)
    seed = frame.iloc[1::3331].copy()  # 31 rows stored before, with other values: conflicts
    seed = seed[seed["temp_c"] != 999.0]
    seed["temp_c"] = seed["temp_c"] + 1.5
    seed_path = tmp_path / "seed.csv"
    seed.to_csv(seed_path, index=False, date_format="%Y-%m-%dT%H:%M:%S")

    killed_cfg = write_config(tmp_path, "killed.db", batch_rows=500, chunk_rows=5000)
    db = tmp_path / "killed.db"
    assert itap(killed_cfg, "ingest", str(seed_path)).returncode in (0, 1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "itap_engine.modes.cli", "--config", str(killed_cfg), "ingest", str(big)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    count = 0
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                count = query(db, "select count(*) from readings_industrial")[0][0]
                quarantined = query(db, "select count(*) from quarantine")[0][0]
            except sqlite3.OperationalError:
                count = quarantined = 0
            if len(seed) + 10_000 < count < total and quarantined:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "ingest finished before it could be killed; use a bigger file"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    partial = query(db, "select count(*) from readings_industrial")[0][0]
    assert len(seed) < partial < total
    assert query(db, "select status from run order by id") == [("ok",), ("running",)]
    assert 0 < query(db, "select count(*) from quarantine")[0][0] < bad + len(seed)

    for attempt in range(2):  # the rerun, then once more: nothing new anywhere
        rerun = itap(killed_cfg, "ingest", str(big), "--json")
        assert rerun.returncode in (0, 1), rerun.stderr
        report = json.loads(rerun.stdout)[0]
        assert (
            report["rows_in"]
            == total
            == (report["inserted"] + report["duplicates"] + report["conflicts"] + report["quarantined"])
        )
        assert (report["conflicts"], report["quarantined"]) == (len(seed), bad)
        assert report["duplicates"] == (partial - len(seed) if attempt == 0 else total - bad - len(seed))
        # each bad row and each conflict quarantined once, whatever the number of runs
        assert query(
            db, "select count(*), count(distinct line) from quarantine where source = ?".replace("?", repr(str(big)))
        ) == [(bad + len(seed), bad + len(seed))]
    assert query(db, "select id, status from run order by id") == [
        (1, "ok"),
        (2, "aborted"),
        (3, report["status"]),
        (4, report["status"]),
    ]
    assert query(
        db, "select rows_in, inserted + duplicates + conflicts + quarantined, conflicts from run where id = 3"
    ) == [(total, total, len(seed))]

    clean_cfg = write_config(tmp_path, "clean.db")
    assert itap(clean_cfg, "ingest", str(seed_path)).returncode in (0, 1)
    assert itap(clean_cfg, "ingest", str(big)).returncode in (0, 1)
    columns = "device_id, ts, state, rpm, temp_c, vibration_g, current_a, voltage_v, fault, changepoint"
    killed_rows = query(db, f"select {columns} from readings_industrial order by device_id, ts")
    clean_rows = query(tmp_path / "clean.db", f"select {columns} from readings_industrial order by device_id, ts")
    assert len(killed_rows) == total - bad
    assert killed_rows == clean_rows
    quarantine = "select line, reason, raw from quarantine order by source, line"
    assert query(db, quarantine) == query(tmp_path / "clean.db", quarantine)
