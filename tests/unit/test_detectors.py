"""The registry's shift / pca / drift / ensemble detectors and threshold calibration."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from itap_engine.detection.detectors import EnsembleDetector, PcaDetector, ShiftDetector, make_detector
from itap_engine.detection.threshold import calibrate, conformal_threshold, exceedance_probability, pot_threshold

NAMES = [f"s{j}__{k}" for j in range(3) for k in ("level", "mean", "trend")]


def _features(values: np.ndarray, window: int = 12) -> np.ndarray:
    """level, trailing mean and long mean per column, as the feature builder names them."""
    cols = []
    for j in range(values.shape[1]):
        x = values[:, j]
        cs = np.r_[0.0, np.cumsum(x)]
        idx = np.arange(len(x))
        lo = np.maximum(idx + 1 - window, 0)
        mean = (cs[idx + 1] - cs[lo]) / (idx + 1 - lo)
        lo_l = np.maximum(idx + 1 - 10 * window, 0)
        trend = (cs[idx + 1] - cs[lo_l]) / (idx + 1 - lo_l)
        cols += [x, mean, trend]
    return np.column_stack(cols)


def _shifted(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(700, 3))
    values[550:600, 1] -= 2.0  # a collective level shift in one channel
    return _features(values[:400]), _features(values)[400:]


def test_shift_is_sklearn_shaped_and_in_the_registry() -> None:
    det = make_detector("shift", feature_names=NAMES, window=12)
    assert isinstance(det, ShiftDetector)
    with pytest.raises(NotFittedError):
        check_is_fitted(det)
    with pytest.raises(TypeError):
        ShiftDetector(NAMES)  # keyword-only parameters
    train, test = _shifted()
    assert det.fit(train) is det
    check_is_fitted(det)
    np.testing.assert_allclose(det.score_samples(test), det.decision_function(test) + det.offset_)
    score, push = det.score_and_contributions(test)
    assert push.shape == test.shape and (push >= 0).all()
    # the explanation names the shifted signal's trailing mean
    worst = int(np.argmin(score))
    assert NAMES[int(np.argmax(push[worst]))] == "s1__mean"


def test_shift_flags_the_shift_and_little_else() -> None:
    train, test = _shifted(seed=1)
    det = ShiftDetector(feature_names=NAMES).fit(train)
    anomaly = -det.score_samples(test)
    inside = np.zeros(len(test), dtype=bool)
    inside[150 : 200 + 11] = True  # the shift, lengthened by the trailing window
    assert set(np.argsort(-anomaly)[:30]) <= set(np.flatnonzero(inside))
    assert (anomaly[~inside] > 2.0).mean() < 0.01
    assert (anomaly[165:200] > 2.0).mean() > 0.9


def test_shift_screens_out_a_drifting_channel_and_counts_dropouts() -> None:
    rng = np.random.default_rng(3)
    values = np.column_stack([rng.normal(size=700), np.cumsum(rng.normal(scale=0.3, size=700)), rng.normal(size=700)])
    X = _features(values)
    det = ShiftDetector(feature_names=NAMES).fit(X[:400])
    assert det.monitored_.tolist() == [True, False, True]
    gone = X[450:452].copy()
    gone[:, NAMES.index("s0__level")] = np.nan  # a sensor stopped reporting
    assert (-det.score_samples(gone) >= det.missing_ratio).all()


def test_pca_catches_a_correlation_break_no_single_feature_shows() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(size=2000)
    X = np.column_stack([a, a + 0.05 * rng.normal(size=2000), rng.normal(size=2000)])
    det = PcaDetector().fit(X)
    normal = np.array([[1.0, 1.0, 0.0]])
    broken = np.array([[1.0, -1.0, 0.0]])  # each value ordinary, their relation broken
    assert -det.score_samples(broken)[0] > 10 * -det.score_samples(normal)[0]


def test_ensemble_speaks_in_units_of_each_members_normal_tail() -> None:
    train, test = _shifted(seed=2)
    det = make_detector("ensemble", feature_names=NAMES, members=["robust_z", "shift"])
    assert isinstance(det, EnsembleDetector)
    det.fit(train)
    assert np.quantile(-det.score_samples(train), 0.5) < 1.0
    assert -det.score_samples(test)[180] > 1.0


def test_conformal_quantile_and_its_limit() -> None:
    scores = np.arange(1.0, 100.0)  # 99 scores
    assert conformal_threshold(scores, 0.1).threshold == 90.0
    beyond = conformal_threshold(scores, 1e-4, margin=1.5)
    assert beyond.threshold == pytest.approx(99.0 * 1.5) and beyond.detail["beyond_sample"]


def test_pot_extrapolates_an_exponential_tail() -> None:
    """On exponential scores the POT quantile at q is near the true -ln(q)."""
    rng = np.random.default_rng(0)
    for q in (1e-3, 1e-5):
        estimates = [pot_threshold(rng.exponential(size=400), q).threshold for _ in range(20)]
        assert abs(np.median(estimates) - (-np.log(q))) < 0.25 * -np.log(q)


def test_target_rate_becomes_a_per_reading_probability() -> None:
    assert exceedance_probability(0.5, 1000) == pytest.approx(0.5 / 86_400)
    assert exceedance_probability(0.5, 10_000) == pytest.approx(0.5 / 8_640)
    with pytest.raises(ValueError):
        calibrate(np.ones(10), 0.01, "nope")


def test_cusum_feature_accumulates_a_shift_too_small_for_any_single_reading() -> None:
    """A mean shift of one spread: no reading is unusual, the CUSUM grows ~0.5 per reading."""
    import pandas as pd

    from itap_engine.detection.features import FeatureBuilder

    rng = np.random.default_rng(0)
    n = 600
    x = rng.normal(size=n)
    frame = pd.DataFrame({"device_id": "d", "ts": np.arange(n, dtype=np.int64) * 1000, "state": "RUN", "x": x})
    builder = FeatureBuilder(signals=["x"], long_window=120).fit(frame.iloc[:400])
    shifted = frame.copy()
    shifted.loc[450:, "x"] += 1.0 * builder.spreads_[0, 0]
    cusum = builder.transform(shifted)["x__cusum"].to_numpy()
    assert cusum[300:450].max() < 15
    assert cusum[560] > 30  # ~0.5 x 110 readings after the shift
    det = make_detector("drift", feature_names=builder.feature_names_out_)
    det.fit(builder.transform(frame.iloc[:400])[builder.feature_names_out_].to_numpy())
    scores = -det.score_samples(builder.transform(shifted)[builder.feature_names_out_].to_numpy())
    assert scores[560] > 2 * scores[300:450].max()
