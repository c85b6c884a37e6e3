"""Tests of the SKAB evaluation protocol, its reference baselines and ITAP's detector."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from itap_engine.evaluation.skab import (
    FEATURE_COLUMNS,
    TRAIN_ROWS,
    SkabResult,
    binary_counts,
    evaluate_skab,
    find_skab_files,
    hotelling_t2_ucl,
    rates_from_counts,
    read_skab_file,
)

SKAB_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "skab"


@pytest.fixture(scope="module")
def skab_dir() -> Path:
    if not (SKAB_DIR / "valve1").is_dir():
        pytest.skip(f"SKAB dev set not found at {SKAB_DIR}")
    return SKAB_DIR


@pytest.fixture(scope="module")
def t2_result(skab_dir: Path) -> SkabResult:
    return evaluate_skab(skab_dir, detector="t2")


@pytest.fixture(scope="module")
def engine_metrics(skab_dir: Path) -> dict:
    from itap_engine.config import load_settings
    from itap_engine.evaluation.skab_engine import evaluate_skab_engine

    settings = load_settings(Path(__file__).resolve().parents[2] / "config.toml")
    return evaluate_skab_engine(settings, skab_dir / "valve1")


# ---------------------------------------------------------------- metrics


def test_counts_and_rates_on_hand_made_example() -> None:
    y_true = [1, 1, 1, 1, 0, 0, 0, 0, 0, 1]
    y_pred = [1, 1, 0, 0, 0, 0, 0, 1, 1, 1]
    tp, tn, fp, fn = binary_counts(y_true, y_pred)
    assert (tp, tn, fp, fn) == (3, 3, 2, 2)
    f1, far, mar = rates_from_counts(tp, tn, fp, fn)
    # F1 = TP / (TP + (FP + FN) / 2) = 3 / (3 + 2) = 0.6
    assert f1 == pytest.approx(0.6)
    assert f1 == pytest.approx(tp / (tp + (fp + fn) / 2))
    assert far == pytest.approx(100 * 2 / 5)  # FP / (FP + TN)
    assert mar == pytest.approx(100 * 2 / 5)  # FN / (FN + TP)


def test_rates_edge_cases() -> None:
    assert rates_from_counts(0, 10, 0, 0)[0] == 0.0  # nothing to find, nothing flagged
    assert math.isnan(rates_from_counts(0, 10, 0, 0)[2])  # MAR undefined without positives
    assert math.isnan(rates_from_counts(5, 0, 0, 0)[1])  # FAR undefined without negatives
    assert rates_from_counts(5, 0, 0, 0)[0] == 1.0


def test_pooled_result_adds_counts_not_rates() -> None:
    from itap_engine.evaluation.skab import FileCounts

    files = [FileCounts("a", 1, 0, 0, 9), FileCounts("b", 90, 0, 0, 0)]
    result = SkabResult.from_counts("x", files)
    assert (result.tp, result.tn, result.fp, result.fn) == (91, 0, 0, 9)
    assert result.f1 == pytest.approx(2 * 91 / (2 * 91 + 9))  # not the mean of per-file F1
    assert result.n_files == 2 and result.n_rows == 100


def test_t2_ucl_matches_readme() -> None:
    assert hotelling_t2_ucl(8, 400) == pytest.approx(27.3454, abs=1e-4)
    assert 2 * hotelling_t2_ucl(8, 400) == pytest.approx(54.6908, abs=1e-4)


# ---------------------------------------------------------------- reading


def test_read_accepts_crlf_and_lf(tmp_path: Path) -> None:
    header = "datetime;" + ";".join(FEATURE_COLUMNS) + ";anomaly;changepoint"
    rows = [
        "2020-03-09 10:14:33;" + ";".join(str(0.1 * k) for k in range(8)) + ";0.0;0.0",
        "2020-03-09 10:14:35;" + ";".join(str(0.2 * k) for k in range(8)) + ";1.0;1.0",
    ]
    for name, eol in (("crlf.csv", "\r\n"), ("lf.csv", "\n")):
        path = tmp_path / name
        path.write_bytes((eol.join([header, *rows]) + eol).encode())
        frame = read_skab_file(path)
        assert list(frame.columns) == [*FEATURE_COLUMNS, "anomaly", "changepoint"]
        assert isinstance(frame.index, pd.DatetimeIndex)
        assert frame.index[1] == pd.Timestamp("2020-03-09 10:14:35")
        assert frame["anomaly"].tolist() == [0, 1]
        assert frame["Volume Flow RateRMS"].iloc[1] == pytest.approx(1.4)


def test_read_real_file_and_find_files(skab_dir: Path) -> None:
    files = find_skab_files(skab_dir)
    assert [p.name for p in files] == [f"{k}.csv" for k in range(16)]  # natural order
    assert all("anomaly-free" not in str(p) for p in files)  # unlabelled file not scored
    frame = read_skab_file(files[0])
    assert list(frame.columns[:8]) == list(FEATURE_COLUMNS)
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    free = read_skab_file(skab_dir / "anomaly-free" / "anomaly-free.csv")
    assert list(free.columns) == list(FEATURE_COLUMNS)


# ---------------------------------------------------------------- baselines


def test_isolation_forest_baseline_reproduces_readme(skab_dir: Path) -> None:
    r = evaluate_skab(skab_dir, detector="isolation_forest")
    assert (r.tp, r.tn, r.fp, r.fn) == (733, 5389, 62, 5576)
    assert r.n_files == 16
    assert (round(r.f1, 2), round(r.far, 2), round(r.mar, 2)) == (0.21, 1.14, 88.38)


def test_t2_baseline_reproduces_readme(t2_result: SkabResult) -> None:
    r = t2_result
    assert (r.tp, r.tn, r.fp, r.fn) == (3530, 4364, 1087, 2779)
    assert r.n_files == 16
    assert (round(r.f1, 2), round(r.far, 2), round(r.mar, 2)) == (0.65, 19.94, 44.05)


def test_trivial_detectors_reproduce_readme(skab_dir: Path) -> None:
    ones = evaluate_skab(skab_dir, detector=lambda train, test: np.ones(len(test), dtype=int))
    assert (ones.tp, ones.tn, ones.fp, ones.fn) == (6309, 0, 5451, 0)
    assert (round(ones.f1, 2), round(ones.far, 2), round(ones.mar, 2)) == (0.70, 100.0, 0.0)
    zeros = evaluate_skab(skab_dir, detector=lambda train, test: np.zeros(len(test), dtype=int))
    assert (zeros.tp, zeros.tn, zeros.fp, zeros.fn) == (0, 5451, 0, 6309)
    with pytest.raises(ValueError):
        evaluate_skab(skab_dir, detector=lambda train, test: np.zeros(3, dtype=int))


def test_unknown_detector_and_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        evaluate_skab(tmp_path, detector="nope")
    with pytest.raises(FileNotFoundError):
        evaluate_skab(tmp_path / "absent")


# ---------------------------------------------------------------- predictions file


def test_predictions_file_has_one_row_per_test_row(skab_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "pred.csv"
    result = evaluate_skab(skab_dir, detector="t2", predictions_path=out)
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["file", "datetime", "predicted"]
    assert len(pred) == result.n_rows == 11_760
    assert set(pred["predicted"].unique()) <= {0, 1}
    assert pred.groupby("file", sort=False).size().to_dict() == {
        c.file: c.tp + c.tn + c.fp + c.fn for c in result.per_file
    }
    # Re-check the pooled counts independently from the file and the labels.
    tp = fp = 0
    for name, group in pred.groupby("file"):
        data = read_skab_file(skab_dir / name)
        test = data.iloc[TRAIN_ROWS:]
        assert (pd.to_datetime(group["datetime"]).to_numpy() == test.index.to_numpy()).all()
        truth = test["anomaly"].to_numpy()
        tp += int(((group["predicted"].to_numpy() == 1) & (truth == 1)).sum())
        fp += int(((group["predicted"].to_numpy() == 1) & (truth == 0)).sum())
    assert (tp, fp) == (result.tp, result.fp)


# ---------------------------------------------------------------- the engine path on the dev set


def test_engine_path_beats_t2_with_fewer_false_alarms(engine_metrics: dict, t2_result: SkabResult) -> None:
    """ITAP's configured detection (features, registry detector, per-device
    calibration), run as the engine runs it, against SKAB's T² baseline."""
    points = engine_metrics["points"]
    assert engine_metrics["files"] == 16
    assert points["rows"] == t2_result.n_rows == 11_760
    assert points["f1"] > t2_result.f1
    assert points["far"] < t2_result.far
    # Not a trivial detector: it must beat "always 1" (F1 0.70, FAR 100 %) on F1 too.
    assert points["f1"] > 2 * 6309 / (2 * 6309 + 5451)
    assert engine_metrics["alerts"]["episodes"] == 16
    # 16 episodes over a few hours: the support is reported and warned about
    assert engine_metrics["support"]["events"] == 16 and engine_metrics["support"]["warnings"]
