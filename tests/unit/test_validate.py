"""Validation before storage: each check, the report, and properties over arbitrary inputs."""

from __future__ import annotations

import json
import math
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from rich.console import Console

from itap_engine.config import Settings
from itap_engine.ingest.simulator import Simulator, device_ids_for
from itap_engine.ingest.validate import (
    ValidationAlert,
    ValidationError,
    ValidationReport,
    Validator,
    render_report,
    validate_frame,
)

NOW = datetime(2026, 6, 1)
SIGNALS = ["rpm", "temp_c", "vibration_g", "current_a", "voltage_v"]


def row(device="p1", ts="2026-01-01T00:00:00", **values):
    base = {
        "device_id": device,
        "ts": ts,
        "rpm": "1480",
        "temp_c": "68",
        "vibration_g": "0.3",
        "current_a": "42",
        "voltage_v": "400",
    }
    base.update(values)
    return base


def run(settings: Settings, rows: list[dict], **kw):
    frame = pd.DataFrame(rows, dtype=object)
    return validate_frame(frame, settings.profile("industrial"), settings.validation, now=NOW, **kw)


# ---------------------------------------------------------------------- each check
@pytest.mark.parametrize(
    ("bad", "check", "needle"),
    [
        (row(ts="2026-13-45T00:00:00"), "timestamp", "ts='2026-13-45T00:00:00' is not a valid timestamp"),
        (row(ts=""), "timestamp", "ts is empty"),
        (row(ts="2030-01-01T00:00:00"), "future", "ahead of now"),
        (row(device=""), "device_id", "device_id is empty"),
        (row(device=" p1"), "device_id", "leading or trailing whitespace"),
        (row(device="p\x001"), "device_id", "control characters"),
        (row(device="d" * 129), "device_id", "longer than 128"),
        (row(temp_c="999.0"), "range", "temp_c=999.0 outside valid range [-40, 200]"),
        (row(rpm="-1"), "range", "rpm=-1.0 outside valid range [0, 4000]"),
        (row(temp_c="inf"), "non_finite", "temp_c=inf is not finite"),
        (row(current_a="-inf"), "non_finite", "current_a=-inf is not finite"),
        (row(voltage_v="abc"), "numeric", "voltage_v='abc' is not a number"),
        (row(state="RUNNING"), "state", "state='RUNNING' is not a state"),
        (row(changepoint="2"), "label", "changepoint='2' is not 0 or 1"),
    ],
)
def test_each_check_rejects_with_a_reason_naming_field(settings, bad, check, needle):
    good = row(ts="2026-01-01T00:00:10")
    result = run(settings, [bad, good])
    assert len(result.accepted) == 1
    assert result.rejected["check"].tolist() == [check]
    assert needle in result.rejected["reason"].iloc[0]
    assert result.report.checks[check] == 1
    assert json.loads(result.rejected["raw"].iloc[0])["device_id"] == bad["device_id"]


def test_duplicates_and_order_are_per_device(settings):
    rows = [
        row("a", "2026-01-01T00:00:10"),
        row("b", "2026-01-01T00:00:00"),  # other device: earlier is fine
        row("a", "2026-01-01T00:00:10", temp_c="70"),  # duplicate key
        row("a", "2026-01-01T00:00:05"),  # out of order
        row("a", "2026-01-01T00:00:20"),
    ]
    result = run(settings, rows)
    assert result.accepted["device_id"].tolist() == ["a", "b", "a"]
    assert result.rejected["check"].tolist() == ["duplicate", "order"]


def test_a_rejected_row_does_not_claim_its_key(settings):
    rows = [row(ts="2026-01-01T00:00:10", temp_c="999"), row(ts="2026-01-01T00:00:10")]
    result = run(settings, rows)
    assert len(result.accepted) == 1 and result.accepted["temp_c"].iloc[0] == 68.0
    assert result.rejected["check"].tolist() == ["range"]


def test_several_failures_are_all_named(settings):
    result = run(settings, [row(rpm="x", temp_c="inf", state="NOPE")])
    reason = result.rejected["reason"].iloc[0]
    assert "rpm='x'" in reason and "temp_c=inf" in reason and "state='NOPE'" in reason


def test_missing_values_are_data_not_errors(settings):
    rows = [row(ts=f"2026-01-01T00:00:{i:02d}", temp_c=v) for i, v in enumerate(["", "nan", "NaN", None, "68"])]
    result = run(settings, rows)
    assert result.report.rejected == 0
    assert result.accepted["temp_c"].isna().tolist() == [True, True, True, True, False]
    assert result.report.missing_rate["temp_c"]["p1"] == pytest.approx(0.8)
    alerts = [a for a in result.report.alerts if a.check == "missing_rate"]
    assert len(alerts) == 1 and alerts[0].device_id == "p1" and alerts[0].signal == "temp_c"
    assert alerts[0].level == "warning" and alerts[0].value == pytest.approx(0.8)


def test_timestamps_accepted_forms(settings):
    rows = [
        row(ts="2026-01-01 00:00:00"),
        row(ts="2026-01-01T00:00:01Z"),
        row(ts="2026-01-01T02:00:02+02:00"),  # = 00:00:02 UTC
        row(ts="1767225603"),  # epoch seconds = 2026-01-01T00:00:03
        row(ts="1767225604000"),  # epoch ms
    ]
    result = run(settings, rows)
    assert result.report.rejected == 0, result.rejected["reason"].tolist()
    assert str(result.accepted["ts"].dtype) == "datetime64[ns]"
    assert (result.accepted["ts"].diff().dropna() == pd.Timedelta(seconds=1)).all()


def test_labels_are_kept_as_labels(settings):
    rows = [
        row(ts="2026-01-01T00:00:00", anomaly="1.0", changepoint="1.0"),
        row(ts="2026-01-01T00:00:01", anomaly="0.0", changepoint="0.0"),
    ]
    result = run(settings, rows)
    assert result.accepted["fault"].tolist()[0] == "anomaly" and pd.isna(result.accepted["fault"].iloc[1])
    assert result.accepted["changepoint"].tolist() == [1, 0]
    assert "anomaly" not in result.accepted.columns


def test_missing_required_column_is_an_error(settings):
    frame = pd.DataFrame([row()]).drop(columns=["ts"])
    with pytest.raises(ValidationError, match="required column"):
        validate_frame(frame, settings.profile("industrial"), settings.validation, source="x.csv")


def test_absent_signal_and_extra_columns_are_alerts(settings):
    frame = pd.DataFrame([row(extra="1")]).drop(columns=["voltage_v"])
    report = validate_frame(frame, settings.profile("industrial"), settings.validation, now=NOW).report
    assert {(a.check, a.level, a.signal) for a in report.alerts} >= {
        ("columns", "warning", "voltage_v"),
        ("columns", "info", None),
    }
    assert not any(a.check == "missing_rate" and a.signal == "voltage_v" for a in report.alerts)


def test_high_rejection_rate_is_an_alert(settings):
    rows = [row(ts=f"2026-01-01T00:00:{i:02d}", temp_c="999" if i % 2 else "60") for i in range(20)]
    report = run(settings, rows).report
    assert any(a.check == "rejection_rate" for a in report.alerts)


def test_report_dict_shape(settings):
    report = run(settings, [row(), row(temp_c="999")]).report
    data = report.to_dict()
    assert {"rows", "accepted", "rejected", "checks", "missing_rate", "examples", "alerts"} <= set(data)
    assert data["rows"] == 2 and data["accepted"] == 1 and data["rejected"] == 1
    assert set(data["examples"][0]) >= {"line", "device_id", "reason", "raw"}
    json.dumps(data)


def test_reports_merge(settings):
    a = run(settings, [row()]).report
    b = run(settings, [row(device="p2", temp_c="")]).report
    merged = ValidationReport(max_examples=5).merge(a).merge(b)
    assert merged.rows == 2 and merged.missing_rate["temp_c"] == {"p1": 0.0, "p2": 1.0}


def test_render_report_shows_markup_as_text(settings):
    result = run(settings, [row(device="[bold red]x[/]", temp_c="999")])
    console = Console(record=True, width=200)
    console.print(render_report(result.report))
    assert "[bold red]x[/]" in console.export_text()


def test_alert_is_frozen():
    alert = ValidationAlert("warning", "missing_rate", "d", "s", 0.5, "m")
    with pytest.raises(AttributeError):
        alert.level = "info"  # type: ignore[misc]


def test_simulated_data_is_clean_and_typed(settings):
    sim = Simulator(settings, "industrial", device_ids_for("pump", 5), fault_rate_per_device_day=0)
    frame = sim.generate("2026-01-01", "2026-01-01 02:00")
    result = validate_frame(frame, settings.profile("industrial"), settings.validation, now=NOW)
    assert result.report.rejected == 0 and len(result.accepted) == len(frame)
    pd.testing.assert_series_equal(result.accepted["ts"], frame["ts"].astype("datetime64[ns]"), check_names=False)
    np.testing.assert_array_equal(result.accepted[SIGNALS].to_numpy(), frame[SIGNALS].to_numpy())


# ---------------------------------------------------------------------- properties
KINDS = ["good", "good", "good", "dup", "bad_ts", "range", "nan", "inf", "bad_device", "text", "late"]


@st.composite
def messy_rows(draw):
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=60))
    rows, truth = [], []
    for i, kind in enumerate(kinds):
        device = draw(st.sampled_from(["a", "b", "c"]))
        step = draw(st.integers(0, 400))
        r = row(device, (pd.Timestamp("2026-01-01") + pd.Timedelta(seconds=10 * step)).isoformat())
        signal = draw(st.sampled_from(SIGNALS))
        if kind == "dup" and rows:
            r = dict(draw(st.sampled_from(rows)))
        elif kind == "bad_ts":
            r["ts"] = draw(st.sampled_from(["", "yesterday", "2026-02-30T00:00:00", "12:00"]))
        elif kind == "range":
            r[signal] = draw(st.sampled_from(["1e9", "-1e9", "99999"]))
        elif kind == "nan":
            r[signal] = draw(st.sampled_from(["", "nan", None]))
        elif kind == "inf":
            r[signal] = draw(st.sampled_from(["inf", "-inf", "1e400"]))
        elif kind == "bad_device":
            r["device_id"] = draw(st.sampled_from(["", " a", "a\n", "x\x07", "z" * 200]))
        elif kind == "text":
            r[signal] = draw(st.sampled_from(["abc", "1,5", "--"]))
        elif kind == "late":
            r["ts"] = "2025-12-31T00:00:00"
        r["_line"] = i + 2
        rows.append(r)
        truth.append((kind, signal))
    return rows, truth


def _check_accepted(settings: Settings, accepted: pd.DataFrame) -> None:
    profile = settings.profile("industrial")
    assert accepted["device_id"].map(lambda d: d == d.strip() and 0 < len(d) <= 128 and d.isprintable()).all()
    assert not accepted.duplicated(["device_id", "ts"]).any()
    for _, group in accepted.groupby("device_id"):
        assert group["ts"].is_monotonic_increasing
    for name, spec in profile.signals.items():
        values = accepted[name].to_numpy(dtype=float)
        finite = values[~np.isnan(values)]
        assert np.isfinite(finite).all()
        assert ((finite >= spec.range[0]) & (finite <= spec.range[1])).all()


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=messy_rows(), chunk=st.integers(1, 25))
def test_property_every_row_has_one_outcome_and_chunks_agree(settings, data, chunk):
    rows, truth = data
    frame = pd.DataFrame(rows, dtype=object)
    profile = settings.profile("industrial")
    whole = validate_frame(frame, profile, settings.validation, now=NOW)
    assert len(whole.accepted) + len(whole.rejected) == len(frame)
    assert whole.report.rows == len(frame) == whole.report.accepted + whole.report.rejected
    _check_accepted(settings, whole.accepted)
    # rows that must be rejected whatever else happens
    must = {i for i, (kind, _) in enumerate(truth) if kind in ("bad_ts", "range", "inf", "bad_device", "text")}
    rejected_lines = set(whole.rejected["line"].astype(int) - 2)
    assert must <= rejected_lines
    # NaN stays NaN
    accepted_lines = sorted(set(range(len(frame))) - rejected_lines)
    by_line = dict(zip(accepted_lines, whole.accepted.to_dict("records")))
    for i, (kind, signal) in enumerate(truth):
        if kind == "nan" and i in by_line:
            assert math.isnan(by_line[i][signal])
    # chunked == whole
    validator = Validator(profile, settings.validation, now=NOW)
    parts = [validator.validate(frame.iloc[s : s + chunk]) for s in range(0, len(frame), chunk)]
    accepted = pd.concat([p.accepted for p in parts], ignore_index=True)
    rejected = pd.concat([p.rejected for p in parts], ignore_index=True)
    pd.testing.assert_frame_equal(accepted, whole.accepted)
    assert rejected["reason"].tolist() == whole.rejected["reason"].tolist()
    assert rejected["line"].tolist() == whole.rejected["line"].tolist()
    final = validator.finish()
    assert final.to_dict() == whole.report.to_dict()
