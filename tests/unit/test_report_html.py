"""The --once HTML report leaves out contributors under the shown cut-off, as the console does."""

from __future__ import annotations

from datetime import UTC, datetime

from itap_engine.modes.render.report_html import render_report
from itap_engine.modes.summary import OnceSummary


def test_contributors_under_the_cut_off_are_left_out_of_the_report() -> None:
    summary = OnceSummary.failed("", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)).to_dict()
    summary.update(status="CRITICAL", message="1 critical", run_id=1)
    summary["alerts"]["open"] = [
        {
            "id": 1,
            "device_id": "pump-001",
            "profile": "industrial",
            "severity": "critical",
            "family": "thermal",
            "opened_at": "2026-01-01T06:00:00",
            "last_at": "2026-01-01T06:05:00",
            "peak_score": 2.0,
            "threshold": 1.0,
            "acknowledged": False,
            "contributors": [
                {"signal": "temp_c", "family": "thermal", "share": 0.9},
                {"signal": "noise_sig", "family": "other", "share": 0.01},
            ],
        }
    ]
    page = render_report(summary, None)
    assert "temp_c" in page and "noise_sig" not in page
