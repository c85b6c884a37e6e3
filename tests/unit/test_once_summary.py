"""The --once summary is typed and frozen; its JSON document keeps the documented shape."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from itap_engine.modes.once import format_plain, status_line
from itap_engine.modes.summary import (
    Interval,
    OnceSummary,
    OpenIncident,
    RowCounts,
    SourceOutcome,
)
from itap_engine.snapshot.dto import ContributorView

T0 = datetime(2026, 1, 1, 6, tzinfo=UTC)


def critical_run() -> OnceSummary:
    incident = OpenIncident(
        7, "pump-003", "industrial", "critical", "thermal", "2026-01-01T06:04:10", "2026-01-01T06:09:50",
        0.71, 0.52, False, (ContributorView("temp_c", "thermal", 0.83), ContributorView("rpm", "mechanical", 0.01)),
    )  # fmt: skip
    rows = RowCounts(10, 7, 1, 1, 1)
    summary = OnceSummary(
        started_at=T0.isoformat(),
        run_id=42,
        interval=Interval("2026-01-01T06:00:00", "2026-01-01T06:10:00", 600.0),
        rows=rows,
        sources=(SourceOutcome("sim:industrial", "industrial", 43, rows, "ok"),),
        scored=7,
        open_incidents=(incident,),
        models={"industrial": 3},
        timings_s={"total": 0.5},
    )
    return summary.with_status("CRITICAL", "1 critical incident(s) on pump-003", T0)


def test_the_summary_is_frozen() -> None:
    summary = critical_run()
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.status = "OK"  # type: ignore[misc]


def test_the_json_document_has_the_documented_keys_and_accounting() -> None:
    doc = critical_run().to_dict()
    assert doc["schema"] == "itap.once/1" and doc["exit_code"] == 2
    assert doc["rows"] == {"in": 10, "inserted": 7, "duplicates": 1, "conflicts": 1, "quarantined": 1}
    assert doc["interval"] == {"from": "2026-01-01T06:00:00", "to": "2026-01-01T06:10:00", "simulated_seconds": 600.0}
    assert doc["alerts"]["open"][0]["contributors"][0] == {"signal": "temp_c", "family": "thermal", "share": 0.83}
    assert doc["sources"][0]["rows_in"] == 10 and doc["models"] == {"industrial": 3}


def test_the_status_line_and_plain_text_read_the_typed_fields() -> None:
    summary = critical_run()
    assert status_line(summary) == (
        "ITAP CRITICAL - 1 critical incident(s) on pump-003 | "
        "open_incidents=1;;;0 rows=7;;;0 scored=7;;;0 seconds=0.500s;;;0"
    )
    text = format_plain(summary)
    assert "rows in 10, inserted 7, duplicates 1, conflicts 1, quarantined 1; scored 7" in text
    assert "temp_c 83%" in text and "rpm" not in text.split("CRITICAL ", 2)[-1]


def test_a_failed_run_is_unknown_with_its_error_on_line_one() -> None:
    failed = OnceSummary.failed("another run holds the lock", T0, T0)
    assert failed.exit_code == 3
    assert status_line(failed) == "ITAP UNKNOWN - the cycle could not run: another run holds the lock"


def test_an_incident_that_came_and_went_during_the_run_is_a_warning() -> None:
    """A fault between two cron runs opens and closes an incident inside one run: the
    run is WARNING and names it (it used to say OK, "no alerts"); JSON lists it under
    alerts.passed, the plain text prints its span."""
    from itap_engine.modes.once import _status

    passed = critical_run().open_incidents[0]
    quiet = dataclasses.replace(
        critical_run(),
        rows=RowCounts(10, 7, 3, 0, 0),
        open_incidents=(),
        passed_incidents=(passed,),
        opened=1,
        closed=1,
    )
    status, message = _status(quiet)
    assert status == "WARNING"
    assert message == "1 incident(s) opened and closed during this run (worst critical) on pump-003"
    summary = quiet.with_status(status, message, T0)
    assert summary.to_dict()["alerts"]["passed"][0]["device_id"] == "pump-003"
    assert "CRITICAL pump-003 thermal from 2026-01-01T06:04:10 to 2026-01-01T06:09:50 (closed)" in format_plain(summary)

    calm = dataclasses.replace(quiet, passed_incidents=(), opened=0, closed=2)
    assert _status(calm) == ("OK", "7 readings stored, 7 scored, no open incidents, 2 incident(s) closed")


def test_a_failed_run_says_its_error_once_on_stdout() -> None:
    """Plain output of an UNKNOWN run is line 1 alone: it repeated the error on an
    'error:' line (and stderr has it too: cron mail showed it three times)."""
    failed = OnceSummary.failed("another ITAP run holds the run lock", T0, T0)
    assert format_plain(failed) == status_line(failed)
