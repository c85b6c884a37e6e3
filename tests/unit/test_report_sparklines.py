"""Sparklines and recently closed incidents in the --once HTML report: numbers drawn
where they belong, data escaped everywhere."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from itap_engine.modes.render.report_html import SPARK_H, render_report, sparkline
from itap_engine.modes.summary import OnceSummary
from itap_engine.snapshot import ContributorView
from itap_engine.store.history import ClosedIncident, ScoreHistory

HOSTILE = "<script>alert(1)</script>"


def ys(svg: str) -> list[float]:
    points = re.search(r'<polyline points="([^"]+)"', svg)
    assert points is not None
    return [float(p.split(",")[1]) for p in points.group(1).split()]


def test_the_highest_score_is_drawn_highest_and_the_threshold_dashed_between() -> None:
    svg = sparkline(ScoreHistory("d", (0, 1000, 2000, 3000), (0.1, 5.0, 0.2, math.nan)), 1.0, "d")
    heights = ys(svg)
    assert len(heights) == 3 and heights[1] == min(heights) == 1.0  # NaN left out; SVG y grows downwards
    line = re.search(r'<line x1="0" x2="\d+" y1="([\d.]+)"', svg)
    assert line is not None and heights[1] < float(line.group(1)) < heights[0]


def test_too_little_history_is_a_dash() -> None:
    assert "<svg" not in sparkline(None, 1.0)
    assert "<svg" not in sparkline(ScoreHistory("d", (0,), (1.0,)), 1.0)


@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=0, max_size=40),
    st.one_of(st.none(), st.floats()),
)
def test_any_history_draws_inside_the_box(scores: list[float], threshold: float | None) -> None:
    svg = sparkline(ScoreHistory("d", tuple(range(0, 1000 * len(scores), 1000)), tuple(scores)), threshold, "d")
    if "<svg" in svg:
        assert all(0 <= y <= SPARK_H for y in ys(svg))
        assert "nan" not in svg and "inf" not in svg


def test_data_is_escaped_in_every_new_part() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    summary = OnceSummary.failed("", moment, moment).to_dict()
    summary.update(status="CRITICAL", message=f"1 critical incident(s) on {HOSTILE}", run_id=1)
    summary["alerts"]["open"] = [
        {
            "id": 1,
            "device_id": HOSTILE,
            "profile": "industrial",
            "severity": "critical",
            "family": "thermal",
            "opened_at": "2026-01-01T06:00:00",
            "last_at": "2026-01-01T06:05:00",
            "peak_score": 9.0,
            "threshold": 1.0,
            "acknowledged": False,
            "contributors": [{"signal": "temp_c", "family": "thermal", "share": 0.9}],
        }
    ]
    history = ScoreHistory(HOSTILE, (0, 1000, 2000), (0.2, 3.0, 9.0))
    closed = ClosedIncident(
        id=7,
        device_id=HOSTILE,
        profile="industrial",
        family="<b>fam</b>",
        severity="warning",
        opened_ts=0,
        closed_ts=600_000,
        peak_score=2.0,
        threshold=1.0,
        contributors=(ContributorView(signal="<img src=x onerror=alert(1)>", family="thermal", share=0.8),),
    )
    page = render_report(summary, None, histories={HOSTILE: history}, closed=[closed], closed_histories={7: history})
    assert "<script" not in page and "<img" not in page and "<b>fam</b>" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5  # message, 2 rows, 2 sparkline titles
    assert page.count('<svg class="spark"') == 2 and "10.0</td>" in page  # the closed one lasted 10 minutes
