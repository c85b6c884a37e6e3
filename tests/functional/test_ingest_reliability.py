"""Ingestion under hostile input: line endings, oversized lines, pipes, encodings, a
full disk, re-deliveries. Each test names the defect it guards against; every input
either lands, is counted as a duplicate or a conflict, or is quarantined once, and the
command line answers with one line, never a traceback."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import tracemalloc
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from itap_engine.config import Settings
from itap_engine.errors import ItapError
from itap_engine.ingest.csv_source import CsvOptions, import_csv
from itap_engine.ingest.pipeline import IngestReport
from itap_engine.store.sql import Store

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config.toml"
NOW = datetime(2026, 6, 1)
HEADER = "device_id,ts,state,rpm,temp_c,vibration_g,current_a,voltage_v"


def good(i: int, device: str = "pump-001", temp: float = 68.0) -> str:
    return f"{device},2026-01-01T{i // 360:02d}:{i // 6 % 60:02d}:{i % 6 * 10:02d},RUN,1480,{temp},0.3,42,400"


def with_import(settings: Settings, **values: object) -> Settings:
    """The settings with some ``[import]`` values replaced."""
    return settings.model_copy(update={"import_": settings.import_.model_copy(update=values)})


def write_config(tmp_path: Path, db: Path | None = None, batch_rows: int = 50000, extra: str = "") -> Path:
    text = CONFIG.read_text(encoding="utf-8")
    text = text.replace('url = "sqlite:///data/itap.db"', f'url = "sqlite:///{db or tmp_path / "t.db"}"', 1)
    text = text.replace("batch_rows = 50000", f"batch_rows = {batch_rows}", 1)
    if extra:
        text = text.replace("chunk_rows = 50000", "chunk_rows = 50000\n" + extra, 1)
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def itap(config: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("timeout", 120)
    return subprocess.run(
        [sys.executable, "-m", "itap_engine.modes.cli", "--config", str(config), *args], text=True, **kw
    )


def query(db: Path, sql: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


def accounted(report: IngestReport) -> bool:
    return report.rows_in == report.inserted + report.duplicates + report.conflicts + report.quarantined


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# ---------------------------------------------------------------------- line endings
@pytest.mark.parametrize("ending", ["\r", "\r\r\n"])
def test_cr_only_line_endings_import(settings, store, tmp_path, ending):
    """Defect: a file with old-Mac CR line endings gave a traceback (and CRCRLF, a CRLF
    file converted once more, has no CR inside its lines)."""
    path = tmp_path / "cr.csv"
    path.write_bytes((ending.join([HEADER, *(good(i) for i in range(5))]) + ending).encode())
    report = import_csv(store, settings, path, now=NOW)
    assert (report.rows_in, report.inserted, report.quarantined) == (5, 5, 0)


def test_a_bare_cr_inside_a_line_costs_that_line_only(settings, store, tmp_path):
    """Defect: a bare CR inside a line (outside quotes) gave a traceback and lost the
    50 good rows read before it in the same chunk."""
    bad = 'pump-001,2026-01-01T00:09:30,"RUN",1\r5,68,0.3,42,400'
    lines = [HEADER, *(good(i) for i in range(50)), bad, *(good(i) for i in range(60, 70))]
    path = tmp_path / "cr-inside.csv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    report = import_csv(store, settings, path, now=NOW)
    assert (report.rows_in, report.inserted, report.quarantined) == (61, 60, 1)
    [(line, reason)] = query(tmp_path / "t.db", "select line, reason from quarantine")
    assert line == 52 and "carriage return" in reason


# ---------------------------------------------------------------------- oversized input
def test_a_field_over_128_kib_is_quarantined_not_a_traceback(settings, store, tmp_path):
    """Defect: a field beyond Python's csv field limit (128 KiB) gave a traceback."""
    huge = '"' + "x" * 200_000 + '"'
    lines = [HEADER, good(0), f"pump-001,2026-01-01T00:00:10,RUN,1480,{huge},0.3,42,400", good(2)]
    path = tmp_path / "field.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = import_csv(store, settings, path, now=NOW)
    assert (report.rows_in, report.inserted, report.quarantined) == (3, 2, 1)
    [(line, reason, raw)] = query(tmp_path / "t.db", "select line, reason, raw from quarantine")
    assert line == 3 and "field" in reason and "65536" in reason
    assert len(raw) < 20_000  # the stored raw text is capped too


def test_a_line_without_newline_is_read_in_bounded_pieces(settings, store, tmp_path):
    """Defect: a line with no newline was read whole (a 4 GiB line from a 4 MB gzip:
    MemoryError). It is quarantined with its first bytes, its length and its sha256,
    and never held whole."""
    size = 48 * 1024 * 1024
    line = b"pump-001,2026-01-01T00:00:20,RUN," + b"7" * (size - 33)
    path = tmp_path / "long.csv.gz"
    path.write_bytes(gzip.compress((HEADER + "\n" + good(0) + "\n" + good(1) + "\n").encode() + line, 1))
    tracemalloc.start()
    try:
        report = import_csv(store, settings, path, now=NOW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (report.rows_in, report.inserted, report.quarantined) == (3, 2, 1)
    assert peak < 24 * 1024 * 1024, peak  # well under the line's 48 MiB
    [(number, reason, raw)] = query(tmp_path / "t.db", "select line, reason, raw from quarantine")
    assert number == 4 and f"{size} bytes" in reason
    stored = json.loads(raw)
    assert stored["length"] == size and stored["sha256"] == hashlib.sha256(line).hexdigest()
    assert stored["head"].startswith("pump-001,2026-01-01T00:00:20") and len(stored["head"]) <= 1024


def test_quarantined_raw_text_is_capped(settings, store, tmp_path):
    """Defect: a quarantined line was stored whole, however long (200 MB lines too)."""
    settings = with_import(settings, quarantine_raw_bytes=4096)
    long_line = "pump-001,2026-01-01T00:00:10," + ",".join(["9"] * 60_000)  # 120 kB, wrong field count
    path = tmp_path / "wide-bad.csv"
    path.write_text("\n".join([HEADER, good(0), long_line, good(2)]) + "\n", encoding="utf-8")
    report = import_csv(store, settings, path, now=NOW)
    assert (report.inserted, report.quarantined) == (2, 1)
    [(raw,)] = query(tmp_path / "t.db", "select raw from quarantine")
    assert len(raw) <= 4096 + 512
    stored = json.loads(raw)
    assert stored["length"] == len(long_line)
    assert stored["sha256"] == hashlib.sha256(long_line.encode()).hexdigest()


# ---------------------------------------------------------------------- pipes
@pytest.fixture
def small_csv(tmp_path: Path) -> Path:
    path = tmp_path / "small.csv"
    path.write_text("\n".join([HEADER, *(good(i) for i in range(20))]) + "\n", encoding="utf-8")
    return path


def test_ingest_from_stdin(tmp_path, small_csv):
    """Defect: `cat f.csv | itap ingest -` failed."""
    config = write_config(tmp_path)
    with small_csv.open("rb") as fh:
        result = itap(config, "ingest", "-", "--json", stdin=fh)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["inserted"] == 20


def test_ingest_gzip_from_stdin(tmp_path, small_csv):
    """gzip is told by its magic bytes, not by a file name, read from the same stream."""
    config = write_config(tmp_path)
    packed = gzip.compress(small_csv.read_bytes())
    result = subprocess.run(
        [sys.executable, "-m", "itap_engine.modes.cli", "--config", str(config), "ingest", "-", "--json"],
        input=packed,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["inserted"] == 20


def test_ingest_process_substitution(tmp_path, small_csv):
    """Defect: `itap ingest <(cat f.csv)` failed (each probe reopened the pipe)."""
    if shutil.which("bash") is None:
        pytest.skip("bash not available")
    config = write_config(tmp_path)
    command = f"{sys.executable} -m itap_engine.modes.cli --config {config} ingest --json <(cat {small_csv})"
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["inserted"] == 20


def test_ingest_from_a_fifo_does_not_hang(tmp_path, small_csv):
    """Defect: a named pipe hung the import (opened and read several times)."""
    config = write_config(tmp_path)
    fifo = tmp_path / "feed.csv"
    os.mkfifo(fifo)

    def feed() -> None:
        with fifo.open("wb") as out:
            out.write(small_csv.read_bytes())

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        result = itap(config, "ingest", str(fifo), "--json", timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("ingest from a FIFO hung")
    finally:
        if writer.is_alive():  # unblock the writer if the reader never opened
            with open(fifo, "rb") as fh:
                fh.read()
        writer.join(5)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["inserted"] == 20


def test_long_format_from_stdin_peeks_without_eating_input(tmp_path):
    """Long-format detection peeks at the signal names from a buffered first block."""
    config = write_config(tmp_path)
    rows = ["device_id,ts,signal,value"]
    for i in range(10):
        for signal, value in (
            ("rpm", 1480),
            ("temp_c", 68),
            ("vibration_g", 0.3),
            ("current_a", 42),
            ("voltage_v", 400),
        ):
            rows.append(f"pump-001,2026-01-01T00:00:{i * 5:02d},{signal},{value}")
    result = itap(config, "ingest", "-", "--json", input="\n".join(rows) + "\n")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)[0]
    assert (report["rows_in"], report["inserted"]) == (10, 10)


# ---------------------------------------------------------------------- encodings
LATIN = ("\n".join([HEADER, good(0, "pompé-1"), good(0, "pompè-1")]) + "\n").encode("latin-1")


def test_latin1_is_refused_with_one_line_naming_encoding(tmp_path):
    """Defect: Latin-1 'pompé-1' and 'pompè-1' silently became one device 'pomp\ufffd-1'."""
    path = tmp_path / "latin.csv"
    path.write_bytes(LATIN)
    config = write_config(tmp_path)
    line = one_line_error(itap(config, "ingest", str(path)))
    assert str(path) in line and "--encoding" in line and "UTF-8" in line
    result = itap(config, "ingest", str(path), "--encoding", "latin-1", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["inserted"] == 2
    assert sorted(r[0] for r in query(tmp_path / "t.db", "select id from device")) == ["pompè-1", "pompé-1"]


def test_utf16_is_detected_by_its_bom(settings, store, tmp_path):
    path = tmp_path / "utf16.csv"
    path.write_bytes(("\r\n".join([HEADER, good(0, "pompé-1"), good(1, "pompè-1")]) + "\r\n").encode("utf-16"))
    report = import_csv(store, settings, path, now=NOW)
    assert report.inserted == 2
    assert set(store.read_readings("industrial")["device_id"]) == {"pompé-1", "pompè-1"}


def test_utf16_without_bom_names_encoding(tmp_path):
    path = tmp_path / "utf16le.csv"
    path.write_bytes(("\n".join([HEADER, good(0)]) + "\n").encode("utf-16-le"))
    config = write_config(tmp_path)
    line = one_line_error(itap(config, "ingest", str(path)))
    assert "NUL" in line and "--encoding" in line
    result = itap(config, "ingest", str(path), "--encoding", "utf-16-le", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)[0]["inserted"] == 1


def test_an_error_quoting_the_header_stays_one_line(tmp_path):
    """Found by the fuzz: a header with a vertical tab or U+2028 broke the one-line error
    (and passed raw control characters to the terminal)."""
    path = tmp_path / "vt.csv"
    path.write_bytes("device\x0bid,wh\u2028en,rpm\x1b[31m\np,1,2\n".encode())
    line = one_line_error(itap(write_config(tmp_path), "ingest", str(path)))
    assert "\\x0b" in line and "\\u2028" in line and "\x1b" not in line


# ---------------------------------------------------------------------- full disk
FULL = sqlite3.OperationalError("database or disk is full")


def test_full_disk_is_one_line_and_marks_the_run_failed(tmp_path, monkeypatch, capsys):
    """Defect: a full disk gave a traceback and left the run 'running'. Batches
    committed before it stay."""
    from itap_engine.modes import cli

    path = tmp_path / "many.csv"
    path.write_text("\n".join([HEADER, *(good(i) for i in range(300))]) + "\n", encoding="utf-8")
    config = write_config(tmp_path, batch_rows=100)
    inserts = []

    def fail_third_batch(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO readings_industrial"):
            inserts.append(1)
            if len(inserts) == 3:
                raise FULL

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", fail_third_batch)
    try:
        code = cli.main(["--config", str(config), "ingest", str(path)])
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", fail_third_batch)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "full" in err
    db = tmp_path / "t.db"
    assert query(db, "select status from run") == [("error",)]
    assert query(db, "select count(*) from readings_industrial") == [(200,)]


@pytest.mark.slow
def test_a_real_full_filesystem(tmp_path):
    """The same on a 2 MiB tmpfs (root only; skipped elsewhere)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        path = tmp_path / "big.csv"
        path.write_text("\n".join([HEADER, *(good(i, f"pump-{i % 7:03d}") for i in range(60_000))]) + "\n")
        config = write_config(tmp_path, db=mnt / "t.db", batch_rows=2000)
        line = one_line_error(itap(config, "ingest", str(path)))
        assert "full" in line
        status = query(mnt / "t.db", "select status from run")
        assert status == [("error",)]
        assert query(mnt / "t.db", "pragma integrity_check") == [("ok",)]
        assert query(mnt / "t.db", "select count(*) from readings_industrial")[0][0] > 0
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


# ---------------------------------------------------------------------- batch failures
def test_a_row_the_database_refuses_is_bisected_out(settings, store):
    """A batch that fails is split until the bad rows are alone: the good rows land and
    the bad ones come back with the database's error."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "device_id": ["a"] * 10,
            "ts": pd.date_range("2026-01-01", periods=10, freq="10s"),
            "state": ["RUN"] * 3 + [object()] + ["RUN"] * 6,  # a value the driver cannot bind
            "rpm": 1480.0,
        }
    )
    result = store.insert_readings("industrial", frame, batch_rows=4)
    assert (result.rows, result.inserted) == (10, 9)
    assert len(result.failed) == 1 and result.failed["ts"].iloc[0] == int(frame["ts"].iloc[3].value // 1_000_000)
    assert store.count_readings("industrial") == 9


def test_a_row_the_database_refuses_is_quarantined_with_its_line(settings, store, tmp_path):
    """Through the pipeline: the refused row is quarantined (with the database's error
    and its source line), the rest of its batch lands, the accounting holds."""
    path = tmp_path / "refused.csv"
    path.write_text("\n".join([HEADER, *(good(i, temp=66.6 if i == 6 else 68.0) for i in range(12))]) + "\n")

    def refuse(conn, cursor, statement, parameters, context, executemany):
        rows = parameters if executemany else [parameters]
        if statement.startswith("INSERT INTO readings_industrial") and any(66.6 in p for p in rows):
            raise sqlite3.IntegrityError("CHECK constraint failed: temp_c")

    sa.event.listen(store.engine, "before_cursor_execute", refuse)
    report = import_csv(store, settings, path, now=NOW)
    assert (report.rows_in, report.inserted, report.quarantined) == (12, 11, 1) and accounted(report)
    [(line, reason)] = query(tmp_path / "t.db", "select line, reason from quarantine")
    assert line == 8 and reason == "refused by the database: CHECK constraint failed: temp_c"
    assert store.count_readings("industrial") == 11


def test_a_text_label_with_nul_is_quarantined(settings, store, tmp_path):
    """NUL is never valid in a device id, state or label (PostgreSQL refuses it)."""
    path = tmp_path / "nul.csv"
    header = HEADER + ",fault"
    lines = [good(0) + ",", good(1) + ",over\x00heat", good(2) + ","]
    path.write_bytes(("\n".join([header, *lines]) + "\n").encode())
    report = import_csv(store, settings, path, now=NOW)
    assert (report.inserted, report.quarantined) == (2, 1)
    [(line, reason)] = query(tmp_path / "t.db", "select line, reason from quarantine")
    assert line == 3 and "control characters" in reason


# ---------------------------------------------------------------------- idempotent quarantine
MIXED = "\n".join([HEADER, good(0), "pump-001,not-a-time,RUN,1,2,3,4,5", good(1, temp=999.0), "x,y", good(2)]) + "\n"


def test_quarantine_is_idempotent_across_reruns(settings, tmp_path):
    """Defect: ingesting the same file again added its quarantined rows again."""
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED, encoding="utf-8")
    for _ in range(3):
        store = Store(settings, url=f"sqlite:///{tmp_path}/t.db")  # a new process, as after a crash
        try:
            report = import_csv(store, settings, path, now=NOW)
        finally:
            store.close()
        assert report.quarantined == 3 and accounted(report)
    assert query(tmp_path / "t.db", "select count(*), count(distinct line) from quarantine") == [(3, 3)]
    # a different file with the same bad line is a different row
    other = tmp_path / "other.csv"
    other.write_text(MIXED, encoding="utf-8")
    store = Store(settings, url=f"sqlite:///{tmp_path}/t.db")
    try:
        import_csv(store, settings, other, now=NOW)
    finally:
        store.close()
    assert query(tmp_path / "t.db", "select count(*) from quarantine") == [(6,)]


# ---------------------------------------------------------------------- conflicts
def redelivery(tmp_path: Path) -> tuple[Path, Path]:
    first = tmp_path / "first.csv"
    first.write_text("\n".join([HEADER, *(good(i) for i in range(10))]) + "\n", encoding="utf-8")
    second = tmp_path / "second.csv"  # rows 3 and 7 corrected, two new rows
    second.write_text(
        "\n".join([HEADER, *(good(i, temp=70.5 if i in (3, 7) else 68.0) for i in range(12))]) + "\n", encoding="utf-8"
    )
    return first, second


@pytest.mark.parametrize("policy", ["quarantine", "keep_first", "replace"])
def test_a_corrected_redelivery_is_counted_as_conflicts(settings, tmp_path, policy):
    """Defect: a row whose key is stored with other values was reported as a plain
    duplicate and its new values silently discarded."""
    first, second = redelivery(tmp_path)
    settings = with_import(settings, on_conflict=policy)
    store = Store(settings, url=f"sqlite:///{tmp_path}/t.db")
    try:
        import_csv(store, settings, first, now=NOW)
        report = import_csv(store, settings, second, now=NOW)
        assert (report.rows_in, report.inserted, report.duplicates, report.conflicts, report.quarantined) == (
            12,
            2,
            8,
            2,
            0,
        )
        assert accounted(report) and report.status == "warning"
        temps = store.read_readings("industrial")["temp_c"].tolist()
    finally:
        store.close()
    run = query(
        tmp_path / "t.db",
        f"select rows_in, inserted, duplicates, conflicts, quarantined from run where id={report.run_id}",
    )
    assert run == [(12, 2, 8, 2, 0)]
    quarantined = query(tmp_path / "t.db", "select line, reason from quarantine order by line")
    if policy == "replace":
        assert temps[3] == temps[7] == 70.5 and not quarantined
    else:
        assert temps[3] == temps[7] == 68.0
    if policy == "quarantine":
        assert [q[0] for q in quarantined] == [5, 9]
        assert "temp_c" in quarantined[0][1] and "68" in quarantined[0][1] and "70.5" in quarantined[0][1]
    if policy == "keep_first":
        assert not quarantined


def test_conflicts_are_found_with_one_query_per_batch(settings, tmp_path):
    first, second = redelivery(tmp_path)
    store = Store(settings, url=f"sqlite:///{tmp_path}/t.db")
    statements: list[str] = []
    try:
        import_csv(store, settings, first, now=NOW)
        store.engine.dispose()  # every statement SQLite runs from here on is traced, whatever runs it
        sa.event.listen(store.engine, "connect", lambda dbapi, _record: dbapi.set_trace_callback(statements.append))
        report = import_csv(store, settings, second, CsvOptions(chunk_rows=4), now=NOW)
    finally:
        store.close()
    assert report.conflicts == 2
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "readings_industrial" in s]
    assert 1 <= len(reads) <= 3, reads  # one per batch (chunks of 4 rows: 3 batches), never one per row


def test_cli_and_json_report_conflicts(tmp_path):
    first, second = redelivery(tmp_path)
    config = write_config(tmp_path)
    assert itap(config, "ingest", str(first)).returncode == 0
    result = itap(config, "ingest", str(second))
    assert "12 rows in = 2 inserted + 8 duplicates + 2 conflicts + 0 quarantined" in result.stdout, result.stdout
    again = json.loads(itap(config, "ingest", str(second), "--json").stdout)[0]
    assert (again["conflicts"], again["duplicates"], again["inserted"]) == (2, 10, 0)


def test_an_old_database_gains_the_new_columns(settings, tmp_path):
    """A database made before conflicts and quarantine keys opens and works."""
    store = Store(settings, url=f"sqlite:///{tmp_path}/t.db")
    store.close()
    with sqlite3.connect(tmp_path / "t.db") as conn:
        for (name,) in conn.execute(
            "select name from sqlite_master where type='index' and tbl_name='quarantine'"
        ).fetchall():
            if "key" in name:
                conn.execute(f"drop index {name}")
        conn.execute("alter table run drop column conflicts")
        conn.execute("alter table quarantine drop column row_key")
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED, encoding="utf-8")
    for _ in range(2):
        store = Store(settings, url=f"sqlite:///{tmp_path}/t.db")
        try:
            report = import_csv(store, settings, path, now=NOW)
        finally:
            store.close()
        assert accounted(report)
    assert query(tmp_path / "t.db", "select count(*) from quarantine") == [(3,)]


# ---------------------------------------------------------------------- fuzz
PIECES = [
    good(0).encode(),
    good(1).encode(),
    good(2, "pump-002").encode(),
    good(1, temp=75.0).encode(),
    b"",
    b"\r",
    b"\r\n",
    b"\n",
    b",,,,,,,",
    b'"',
    b'pump-001,"2026-01-01T00:00:40",RUN,1480,"68",0.3,42,400',
    b"pump-001,2026-01-01T00:00:50,RUN,1480,68,0.3,42,400,extra",
    b"\x00",
    b"\xff\xfe",
    b"\xe9",
    b"\xef\xbb\xbf",
    b"pump-\x00,2026-01-01T00:01:00,RUN,1,2,3,4,5",
    b"p,2026-01-01T00:00:00,RUN,nan,inf,-inf,1e400,",
    b";",
    b"\t",
    b"\x0b",
    "\u2028".encode(),
    b"\x1b[31m",
    b"device_id\x0b,ts,rpm",
    # long format rows (for the long header)
    b"pump-001,2026-01-01T00:00:00,rpm,1480",
    b"pump-001,2026-01-01T00:00:00,temp_c,68",
    b"pump-001,2026-01-01T00:00:10,vibration_g,0.3",
    b"pump-001,2026-01-01T00:00:10,current_a,42",
    b"pump-001,2026-01-01T00:00:10,voltage_v,400",
    b"pump-001,2026-01-01T00:00:00,rpm,1500",
    b"p,x,bogus,1",
]
LONG_HEADER = b"device_id,ts,signal,value"


@st.composite
def csv_bytes(draw) -> bytes:
    head = draw(
        st.sampled_from(
            [HEADER.encode() + b"\n", HEADER.encode() + b"\r\n", HEADER.encode() + b"\r", b"", LONG_HEADER + b"\n"]
        )
    )
    parts = draw(st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=40)), max_size=40))
    joins = draw(st.lists(st.sampled_from([b"\n", b"\r\n", b"\r", b""]), min_size=len(parts), max_size=len(parts)))
    return head + b"".join(p + j for p, j in zip(parts, joins))


@hsettings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(data=csv_bytes(), gz=st.booleans(), chunk=st.sampled_from([1, 3, 50000]))
def test_fuzz_csv_bytes_through_ingest(settings, data, gz, chunk):
    folder = Path(tempfile.mkdtemp())
    path = folder / ("in.csv.gz" if gz else "in.csv")
    path.write_bytes(gzip.compress(data) if gz else data)
    store = Store(settings, url=f"sqlite:///{folder}/f.db")
    try:
        reports = []
        for _ in range(2):
            try:
                reports.append(import_csv(store, settings, path, CsvOptions(chunk_rows=chunk), now=NOW))
            except ItapError as error:
                assert len(str(error).splitlines()) == 1 and str(error)
        for report in reports:
            assert accounted(report)
        if len(reports) == 2:
            first, second = reports
            assert second.inserted == 0 and second.duplicates + second.conflicts == first.inserted
            assert store.count_readings("industrial") == first.inserted
            assert (
                store.count(__import__("itap_engine.store.schema", fromlist=["Quarantine"]).Quarantine)
                == first.quarantined
            )
    finally:
        store.close()
    try:
        assert query(folder / "f.db", "pragma integrity_check") == [("ok",)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_long_format_in_small_chunks_with_bad_lines_keeps_every_signal(settings, store, tmp_path):
    """A chunk of a long file that holds only bad lines has no signal column: that is no
    'absent signal' (it was announced, spuriously, before), and no value is lost."""
    rows = ["device_id,ts,signal,value", "p1,2026-01-01T00:00:00,rpm,1\r5"]
    for i in range(3):
        for signal, value in (
            ("rpm", 1480),
            ("temp_c", 68),
            ("vibration_g", 0.3),
            ("current_a", 42),
            ("voltage_v", 400),
        ):
            rows.append(f"p1,2026-01-01T00:00:{i * 10:02d},{signal},{value}")
    path = tmp_path / "long.csv"
    path.write_bytes(("\n".join(rows) + "\n").encode())
    report = import_csv(store, settings, path, CsvOptions(chunk_rows=1), now=NOW)
    assert (report.inserted, report.quarantined) == (3, 1) and accounted(report)
    assert not [a for a in report.validation.alerts if a.check == "columns"]
    stored = store.read_readings("industrial")
    assert stored["rpm"].tolist() == [1480.0] * 3 and stored["voltage_v"].tolist() == [400.0] * 3
