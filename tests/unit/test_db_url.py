"""A database URL that cannot work is one line naming what to do, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from itap_engine.store.db_url import DatabaseUrlError, check_database_url
from itap_engine.store.sql import Store, StoreError


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("mysql://itap:s3cret@db/itap", "SQLite or PostgreSQL, not mysql"),
        ("mssql+pyodbc://itap:s3cret@db/itap", "SQLite or PostgreSQL, not mssql"),
        ("postgresql+nosuch://itap:s3cret@db/itap", "unknown driver"),
        ("itap:s3cret@db", "not a URL"),
        ("postgres://itap:s3cret@db/itap", "write postgresql+psycopg://"),
    ],
)
def test_unusable_urls_are_one_line_without_the_password(url: str, needle: str) -> None:
    with pytest.raises(DatabaseUrlError) as error:
        check_database_url(url)
    message = str(error.value)
    assert needle in message and "s3cret" not in message and "\n" not in message


@pytest.mark.parametrize("url", ["postgresql+psycopg://itap:s3cret@db/itap", "postgresql://itap:s3cret@db/itap"])
def test_postgres_without_its_driver_names_the_extra(url: str, settings, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if `pip install 'itap[postgres]'` was not run
    with pytest.raises(StoreError, match=r"pip install 'itap\[postgres\]'") as error:
        Store(settings, url=url)
    assert "s3cret" not in str(error.value) and "***" in str(error.value)


def test_cli_and_once_report_it_in_one_line(settings, monkeypatch, capsys, tmp_path) -> None:
    from itap_tui.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ITAP_DB_URL", "postgresql+psycopg://itap:s3cret@db/itap")
    monkeypatch.setitem(sys.modules, "psycopg", None)
    assert main(["status"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "itap[postgres]" in err and "s3cret" not in err
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ITAP_DB_URL": "mysql://itap:s3cret@db/itap"}
    once = subprocess.run(
        [sys.executable, "-m", "itap_tui.cli", "--once", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert once.returncode == 3 and "Traceback" not in once.stderr
    summary = json.loads(once.stdout)
    assert summary["status"] == "UNKNOWN" and "not mysql" in summary["error"] and "s3cret" not in once.stdout
