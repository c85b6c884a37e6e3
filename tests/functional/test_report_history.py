"""The --once HTML report: score sparklines per open incident, recently closed
incidents with theirs, and a hostile device id escaped all the way from ingest."""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from _sites import itap, small_config

from itap_engine.config import load_settings
from itap_engine.engine.core import EngineCore
from itap_engine.engine.drill import run_scenario
from itap_engine.scenario import parse_scenario

HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"

pytestmark = pytest.mark.slow


def hostile_csv(path: Path) -> None:
    """Four hours of one imported pump named HOSTILE, overheating in its last 20 minutes."""
    rng = random.Random(1)
    lines = ["device,ts,rpm,temp_c,vibration_g,current_a,voltage_v"]
    start = datetime(2026, 1, 1, 4, 0)
    for i in range(1440):
        hot = i > 1300
        lines.append(
            f"{HOSTILE},{start + timedelta(seconds=10 * i):%Y-%m-%dT%H:%M:%S},{1480 + rng.gauss(0, 10):.1f},"
            f"{(140 if hot else 68) + rng.gauss(0, 0.5):.2f},{0.35 + rng.gauss(0, 0.01):.3f},"
            f"{42 + rng.gauss(0, 0.5):.2f},{400 + rng.gauss(0, 1):.1f}"
        )
    path.write_text("\n".join(lines) + "\n")


def test_sparklines_closed_incidents_and_a_hostile_device_id(tmp_path: Path) -> None:
    settings = load_settings(small_config(tmp_path))
    core = EngineCore(settings)
    try:  # an incident that opens and closes: pump-002 overheats for 10 minutes
        core.bootstrap()
        core.resume()
        drill = {
            "run_for": "40m",
            "fault": [{"device": "pump-002", "fault": "overheat_drift", "start": 0, "duration": "10m", "severity": 4}],
        }
        result = run_scenario(core, parse_scenario(drill, settings, Path("d.toml")), step_s=300)
    finally:
        core.close()
    [closed] = [i for i in result.incidents if i.device_id == "pump-002" and i.status == "closed"]
    hostile_csv(tmp_path / "hostile.csv")
    ingested = itap(tmp_path, "ingest", "hostile.csv", "--profile", "industrial")
    assert ingested.returncode == 0, ingested.stderr
    report = tmp_path / "report.html"
    once = itap(tmp_path, "--once", "--report", str(report))
    assert once.returncode == 2, once.stdout + once.stderr
    page = report.read_text()
    assert "<script" not in page and "javascript:" not in page and "http" not in page.split("</style>", 1)[1]
    # the open incident of the hostile device: its row and its sparkline, both escaped
    row = re.search(r'<tr class="critical"><td>critical</td><td><b>' + re.escape(ESCAPED) + r"</b>.*?</tr>", page)
    assert row is not None, page
    spark = re.search(
        r'<svg class="spark"[^>]*><title>' + re.escape(ESCAPED) + r": score [^<]*</title>(.*?)</svg>", row.group(0)
    )
    assert spark is not None and "<polyline" in spark.group(1)
    # the recently closed section lists the drill's incident with a sparkline of its own
    section = page.split("<h2>Recently closed incidents</h2>", 1)[1].split("<h2>", 1)[0]
    closed_row = re.search(rf'<td class="num">{closed.id}</td><td>\w+</td><td><b>pump-002</b>.*?</tr>', section)
    assert closed_row is not None and "<polyline" in closed_row.group(0) and "thermal" in closed_row.group(0)
