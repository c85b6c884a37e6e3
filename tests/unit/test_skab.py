"""Tests of the SKAB evaluation protocol, its reference baselines and ITAP's detector."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from itap_engine.evaluation.skab import (
    FEATURE_COLUMNS,
    TRAIN_ROWS,
    SkabResult,
    TrailingShiftDetector,
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
def itap_result(skab_dir: Path) -> SkabResult:
    return evaluate_skab(skab_dir, detector="itap")


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
    result = evaluate_skab(skab_dir, detector="itap", predictions_path=out)
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


# ---------------------------------------------------------------- our detector: sklearn shape


def _synthetic(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(400, 4))
    test = rng.normal(size=(300, 4))
    truth = np.zeros(300, dtype=int)
    test[150:200, 1] -= 2.0  # a collective level shift in one channel
    truth[150:200] = 1
    return train, test, truth


def test_detector_is_sklearn_shaped() -> None:
    det = TrailingShiftDetector()
    with pytest.raises(NotFittedError):
        check_is_fitted(det)
    with pytest.raises(NotFittedError):
        det.score_samples(np.zeros((5, 4)))
    with pytest.raises(TypeError):
        TrailingShiftDetector(20)  # keyword-only parameters
    assert det.get_params() == {
        "window": 20,
        "limit_quantile": 1.0,
        "margin": 2.0,
        "persistence": 0.5,
    }
    before = set(vars(det))
    train, test, _ = _synthetic()
    assert det.fit(train) is det
    learned = set(vars(det)) - before
    assert learned and all(name.endswith("_") for name in learned)
    check_is_fitted(det)
    assert det.n_features_in_ == 4
    np.testing.assert_allclose(det.score_samples(test), det.decision_function(test) + det.offset_)
    labels = det.predict(test)
    assert set(np.unique(labels)) <= {0, 1}
    np.testing.assert_array_equal(labels, (det.decision_function(test) < 0).astype(int))
    with pytest.raises(ValueError):
        det.score_samples(test[:, :3])  # wrong number of features


def test_detector_flags_known_outliers_as_extremes() -> None:
    train, test, truth = _synthetic(seed=1)
    det = TrailingShiftDetector().fit(train)
    scores = det.score_samples(test)
    # The 30 lowest scores lie inside the shifted segment (extended by the
    # trailing window's lag), and the segment is flagged.
    lagged = set(range(150, 200 + det.window - 1))
    assert set(np.argsort(scores)[:30]) <= lagged
    assert np.argmin(scores) in set(np.flatnonzero(truth))
    labels = det.predict(test)
    outside = np.ones(len(test), dtype=bool)
    outside[sorted(lagged)] = False
    assert labels[outside].mean() < 0.01
    assert labels[170:200].mean() > 0.9


def test_detector_point_outliers_with_window_one() -> None:
    rng = np.random.default_rng(2)
    train = rng.normal(size=(400, 3))
    test = rng.normal(size=(200, 3))
    spikes = [17, 80, 151]
    test[spikes, 2] += 12.0
    det = TrailingShiftDetector(window=1).fit(train)
    assert set(np.argsort(det.score_samples(test))[:3]) == set(spikes)
    assert set(np.flatnonzero(det.predict(test))) == set(spikes)


def test_detector_screens_out_drifting_channel() -> None:
    rng = np.random.default_rng(3)
    n = 700
    noisy = rng.normal(size=n)
    drifting = np.cumsum(rng.normal(scale=0.3, size=n))  # random walk
    X = np.column_stack([noisy, drifting])
    det = TrailingShiftDetector().fit(X[:400])
    assert det.monitored_.tolist() == [True, False]
    assert det.variance_ratio_[1] > det.variance_ratio_[0]


def test_detector_is_causal() -> None:
    train, test, _ = _synthetic(seed=4)
    det = TrailingShiftDetector().fit(train)
    full = det.score_samples(test)
    prefix = det.score_samples(test[:170])
    np.testing.assert_allclose(full[:170], prefix)


def test_detector_rejects_bad_parameters() -> None:
    train, _, _ = _synthetic()
    for params in ({"window": 0}, {"limit_quantile": 0.0}, {"margin": -1.0}):
        with pytest.raises(ValueError):
            TrailingShiftDetector(**params).fit(train)


# ---------------------------------------------------------------- our detector on the dev set


def test_itap_beats_t2_with_fewer_false_alarms(
    itap_result: SkabResult, t2_result: SkabResult
) -> None:
    assert itap_result.n_files == t2_result.n_files == 16
    assert itap_result.n_rows == t2_result.n_rows == 11_760
    assert itap_result.f1 > t2_result.f1
    assert itap_result.far < t2_result.far
    # Not a trivial detector: it must beat "always 1" (F1 0.70, FAR 100 %) on F1 too.
    assert itap_result.f1 > 2 * 6309 / (2 * 6309 + 5451)
