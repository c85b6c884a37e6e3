"""Scenario files: strict checking, a run through the engine, and ``itap scenario``."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from _sites import REPO, itap, site_fixtures
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlmodel import select

from itap_engine.config import Settings, load_settings
from itap_engine.engine.core import EngineCore
from itap_engine.engine.drill import run_scenario
from itap_engine.scenario import ScenarioError, load_scenario, parse_scenario
from itap_engine.store import schema as models
from itap_engine.store.sql import Store

GOOD = """
name = "drill"
[[fault]]
device = "pump-002"
fault = "overheat_drift"
start = "0m"
duration = "20m"
severity = 4.0

[[fault]]
device = "pump-003"
fault = "power_spike"
start = "5m"
duration = 180
severity = 3
"""


@pytest.fixture(scope="module")
def repo_settings() -> Settings:
    return load_settings(REPO / "config.toml")


@pytest.mark.parametrize("name", ["bearing_then_spike.toml", "overheat_drift.toml"])
def test_the_shipped_examples_are_valid(name: str, repo_settings: Settings) -> None:
    scenario = load_scenario(REPO / "scenarios" / name, repo_settings)
    assert scenario.faults and scenario.run_for_s >= max(f.end_s for f in scenario.faults)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[[fault]]\ndevice='pump-001'\nfault='overheat_drift'\nstart=0\nduration='5m'\nspeed=2",
            "fault 1 (pump-001): unknown key 'speed'",
        ),
        ("nme='x'\n[[fault]]\ndevice='pump-001'\nfault='overheat_drift'\nstart=0\nduration=60", "unknown key 'nme'"),
        (
            "[[fault]]\ndevice='pump-099'\nfault='overheat_drift'\nstart=0\nduration=60",
            "fault 1 (pump-099): unknown device 'pump-099'",
        ),
        ("[[fault]]\ndevice='pump-001'\nfault='melt'\nstart=0\nduration=60", "profile industrial has no fault 'melt'"),
        (
            "[[fault]]\ndevice='pump-001'\nfault='overheat_drift'\nstart=0\nduration='5 minutes'",
            "duration '5 minutes' is not",
        ),
        ("[[fault]]\ndevice='pump-001'\nfault='overheat_drift'\nstart=0\nduration=0", "duration 0 is not"),
        ("[[fault]]\ndevice='pump-001'\nfault='overheat_drift'\nstart=0\nduration=inf", "duration inf is not"),
        ("[[fault]]\ndevice='pump-001'\nfault='overheat_drift'\nstart=-5\nduration=60", "start -5 is not"),
        ("[[fault]]\ndevice='pump-001'\nfault='overheat_drift'\nstart=0\nduration='9000h'", "duration '9000h' is not"),
        (
            "[[fault]]\ndevice='pump-001'\nfault='overheat_drift'\nstart=0\nduration=60\nseverity=true",
            "severity True must",
        ),
        (
            "[[fault]]\ndevice='pump-001'\nfault='overheat_drift'\nstart=0\nduration=60\nseverity=nan",
            "severity nan must",
        ),
        ("[[fault]]\ndevice='pump-001'\nfault='overheat_drift'\nstart=0", "fault 1 (pump-001): missing duration"),
        ("name='empty'", "no faults"),
        (
            "run_for='1m'\n[[fault]]\ndevice='pump-001'\nfault='overheat_drift'\nstart=0\nduration='5m'",
            "run_for 1m ends before",
        ),
        ("[[fault]\ndevice=1", "not valid TOML"),
        (
            "[[fault]]\ndevice='pump-001'\nfault='overheat_drift'\nstart=0\nduration=60\n[[fault]]\ndevice=3",
            "fault 2: missing fault",
        ),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_the_entry(
    text: str, message: str, tmp_path: Path, repo_settings: Settings
) -> None:
    path = tmp_path / "drill.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path, repo_settings)
    line = str(caught.value)
    assert line.startswith(f"{path}: ") and message in line and "\n" not in line, line


def test_a_file_that_is_not_text_or_missing_is_one_line(tmp_path: Path, repo_settings: Settings) -> None:
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00name")
    for path, message in ((tmp_path / "bin.toml", "not UTF-8"), (tmp_path / "none.toml", "cannot read")):
        with pytest.raises(ScenarioError, match=message):
            load_scenario(path, repo_settings)


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["pump-001", "ac-001", "overheat_drift", "speed_spike", "5m", "1.5h", "0", "-1s"]),
    st.lists(st.integers(), max_size=2),
)
entries = st.dictionaries(
    st.sampled_from(["device", "fault", "start", "duration", "severity", "extra"]), values, max_size=6
)


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(faults=st.lists(st.one_of(entries, values), max_size=4), run_for=st.one_of(st.none(), values))
def test_any_parsed_toml_is_a_scenario_or_one_scenario_error(faults, run_for, repo_settings: Settings) -> None:
    data = {"fault": faults} if run_for is None else {"fault": faults, "run_for": run_for}
    try:
        scenario = parse_scenario(data, repo_settings, Path("x.toml"))
    except ScenarioError as error:
        assert str(error).startswith("x.toml: ") and "\n" not in str(error)
        return
    for fault in scenario.faults:  # what passes is what the engine can carry out
        assert fault.duration_s > 0 and fault.start_s >= 0 and fault.severity > 0
        assert fault.fault in repo_settings.profile(fault.profile).faults
    assert scenario.run_for_s >= max(f.end_s for f in scenario.faults)


template, site = site_fixtures("scenario", files={"drill.toml": GOOD})


@pytest.mark.slow
def test_a_scenario_through_the_engine_produces_one_incident_per_faulty_device(site: Path) -> None:
    settings = load_settings(site / "config.toml")
    scenario = load_scenario(site / "drill.toml", settings)
    core = EngineCore(settings)
    try:
        core.resume()
        t0 = core.sim_time
        result = run_scenario(core, scenario, step_s=120)
    finally:
        core.close()
    assert {(i.device_id, i.family) for i in result.incidents} == {("pump-002", "thermal"), ("pump-003", "electrical")}
    starts = {f.planned.device: (f.start - t0).total_seconds() for f in result.injected}
    assert starts == {"pump-002": 0.0, "pump-003": 300.0}  # at their offsets, whatever the step
    assert all(f.caught_by for f in result.injected) and result.status == "CRITICAL"
    assert result.finished >= t0 + timedelta(seconds=scenario.run_for_s)
    # the drill is in the database as the console's fault dialog leaves a fault: commands, run to the end
    store = Store(settings)
    with store.session() as session:
        commands = session.exec(select(models.FaultCommand).order_by(models.FaultCommand.id)).all()
    store.close()
    assert [(c.device_id, c.fault, c.status) for c in commands] == [
        ("pump-002", "overheat_drift", "done"),
        ("pump-003", "power_spike", "done"),
    ]


@pytest.mark.slow
def test_itap_scenario_run_prints_faults_and_incidents_and_exits_like_once(site: Path) -> None:
    result = itap(site, "scenario", "run", "drill.toml", "--json")
    assert result.returncode == 2, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "CRITICAL"
    assert {(i["device_id"], i["family"]) for i in summary["incidents"]} == {
        ("pump-002", "thermal"),
        ("pump-003", "electrical"),
    }
    (site / "bad.toml").write_text(GOOD.replace("power_spike", "power_surge"))
    bad = itap(site, "scenario", "run", "bad.toml")
    assert bad.returncode == 3
    assert bad.stderr.strip() == (
        "itap: error: bad.toml: fault 2 (pump-003): profile industrial has no fault 'power_surge' "
        "(known: overheat_drift, bearing_wear, power_spike, sensor_dropout)"
    )
    assert bad.stdout.startswith("SCENARIO UNKNOWN - bad.toml: fault 2")
