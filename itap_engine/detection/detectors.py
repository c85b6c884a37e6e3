"""Unsupervised detectors in scikit-learn's shape, and how their threshold is chosen.

Why it is built this way:

* **scikit-learn conventions.** ``__init__`` only stores keyword parameters;
  ``fit(X)`` learns attributes ending in ``_`` and returns ``self``;
  ``score_samples`` (lower = more abnormal, as in scikit-learn) feeds
  ``decision_function = score_samples - offset_`` which feeds ``predict`` (+1 / -1).
  Every public method starts with ``check_is_fitted``. The score a user sees is the
  negation of ``score_samples``: higher means more anomalous, and it is positive.
* **Two detectors, chosen by measurement.** :class:`IsolationForestDetector` (a
  robust scaler in front of scikit-learn's IsolationForest) and
  :class:`RobustZDetector` (root-mean-square of robust, tail-calibrated z-scores).
  ``[detection].detector`` picks one; ``benchmarks/RESULTS.md`` records why.
* **Missing data is evidence.** A feature that is NaN (a sensor that stopped
  reporting) is scored as ``missing_z`` robust units from normal, so dropouts raise
  the score instead of silently vanishing.
* **Explanations for free.** Both detectors share the robust scaling, so
  :meth:`contributions` (squared, clipped robust z per feature) says which features
  pushed a reading away from normal; :mod:`itap_engine.detection.scoring` folds them into
  signals and sensor families.
* **Threshold.** :func:`sweep_threshold` walks up a ladder of percentiles of the
  validation window's scores and keeps the lowest one whose k-of-n alert rule would
  raise at most ``budget`` alerts per device-day on that (normal) window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.ensemble import IsolationForest
from sklearn.utils.validation import check_is_fitted

__all__ = [
    "DETECTORS",
    "IsolationForestDetector",
    "RobustZDetector",
    "ThresholdChoice",
    "make_detector",
    "sweep_threshold",
]

_NORMAL_999 = 3.2905
"""Two-sided 99.9 % quantile of the standard normal."""


def _as_matrix(X: Any) -> np.ndarray:
    array = np.asarray(X, dtype=float)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D feature matrix, got shape {array.shape}")
    return array


class OutlierAPI:
    """scikit-learn's outlier API around ``score_samples`` (lower is more abnormal):
    ``decision_function = score_samples - offset_``, ``predict`` gives +1 / -1, and
    ``set_threshold`` moves ``offset_`` to an anomaly-score threshold. Every detector
    in the registry has it."""

    offset_: float

    def score_samples(self, X: Any) -> np.ndarray:
        raise NotImplementedError

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples - offset_``: negative for outliers."""
        check_is_fitted(self)
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """+1 for inliers, -1 for outliers."""
        check_is_fitted(self)
        return np.where(self.decision_function(X) < 0, -1, 1)

    def set_threshold(self, threshold: float) -> None:
        """Move ``offset_`` so that ``predict`` flags anomaly scores above ``threshold``."""
        check_is_fitted(self)
        self.offset_ = -float(threshold)


class _RobustScaling(OutlierAPI):
    """Median / tail-calibrated spread per feature, and the scores of scaled features
    (:meth:`_score_z`); shared by the robust-z and IsolationForest detectors."""

    def _fit_scaling(self, X: np.ndarray) -> None:
        center = np.nanmedian(X, axis=0)
        center = np.where(np.isfinite(center), center, 0.0)
        dev = np.abs(X - center)
        mad = 1.4826 * np.nanmedian(dev, axis=0)
        tail = np.nanquantile(dev, 0.999, axis=0) / _NORMAL_999
        scale = np.fmax(np.nan_to_num(mad), np.nan_to_num(tail))
        self.center_ = center
        self.scale_ = np.maximum(scale, self.min_scale)  # type: ignore[attr-defined]
        self.n_features_in_ = X.shape[1]

    def _z(self, X: np.ndarray) -> np.ndarray:
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the detector was fitted with {self.n_features_in_}")
        z = (X - self.center_) / self.scale_
        z = np.where(np.isnan(z), self.missing_z, z)  # type: ignore[attr-defined]
        return np.clip(z, -self.clip, self.clip)  # type: ignore[attr-defined]

    def _score_z(self, z: np.ndarray) -> np.ndarray:
        """The detector's score of scaled features (lower is more abnormal)."""
        raise NotImplementedError

    def score_samples(self, X: Any) -> np.ndarray:
        """The detector's score: lower is more abnormal (scikit-learn's convention)."""
        check_is_fitted(self)
        return self._score_z(self._z(_as_matrix(X)))

    def score_and_contributions(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(score_samples(X), contributions(X))`` with the scaling done once."""
        check_is_fitted(self)
        z = self._z(_as_matrix(X))
        return self._score_z(z), z * z

    def contributions(self, X: Any) -> np.ndarray:
        """Non-negative push of each feature away from normal: clipped robust z squared.

        Returns an array of shape (n_samples, n_features).
        """
        check_is_fitted(self)
        z = self._z(_as_matrix(X))
        return z * z


class RobustZDetector(_RobustScaling, OutlierMixin, BaseEstimator):
    """Root-mean-square of robust z-scores.

    Each feature is centred on its training median and divided by the larger of
    1.4826 x MAD and its 99.9 % tail width / 3.29, so features that are sparse or
    heavy-tailed in normal operation do not cry wolf.

    Parameters
    ----------
    clip : float, default=30.0
        Absolute z-scores are clipped here so one feature cannot dominate.
    missing_z : float, default=10.0
        z-score given to a missing (NaN) feature.
    min_scale : float, default=0.01
        Floor on each feature's spread.
    contamination : float, default=0.005
        Fraction of training samples left outside ``offset_`` (until a validation
        threshold replaces it, see :meth:`set_threshold`).

    Attributes
    ----------
    center_, scale_ : ndarray of shape (n_features,)
    offset_ : float
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 3))
    >>> det = RobustZDetector().fit(X)
    >>> bool(det.score_samples([[8.0, 0.0, 0.0]])[0] < det.score_samples([[0.0, 0.0, 0.0]])[0])
    True
    """

    def __init__(
        self, *, clip: float = 30.0, missing_z: float = 10.0, min_scale: float = 0.01, contamination: float = 0.005
    ) -> None:
        self.clip = clip
        self.missing_z = missing_z
        self.min_scale = min_scale
        self.contamination = contamination

    def fit(self, X: Any, y: Any = None) -> RobustZDetector:
        X = _as_matrix(X)
        self._fit_scaling(X)
        self.offset_ = float(np.percentile(self.score_samples(X), 100 * self.contamination))
        return self

    def _score_z(self, z: np.ndarray) -> np.ndarray:
        """Opposite of the RMS robust z-score: lower is more abnormal."""
        return -np.sqrt(np.einsum("ij,ij->i", z, z) / z.shape[1])


class IsolationForestDetector(_RobustScaling, OutlierMixin, BaseEstimator):
    """Robust scaling, then scikit-learn's IsolationForest.

    Parameters
    ----------
    n_estimators : int, default=200
    max_samples : int, default=256
    max_train_rows : int, default=100_000
        Training rows are subsampled (seeded) above this; isolation trees only ever
        look at ``max_samples`` rows each.
    clip, missing_z, min_scale, contamination : see :class:`RobustZDetector`.
    random_state : int, default=0
    n_jobs : int or None, default=None

    Attributes
    ----------
    forest_ : IsolationForest
    center_, scale_ : ndarray of shape (n_features,)
    offset_ : float
    n_features_in_ : int
    """

    def __init__(
        self,
        *,
        n_estimators: int = 200,
        max_samples: int = 256,
        max_train_rows: int = 100_000,
        clip: float = 30.0,
        missing_z: float = 10.0,
        min_scale: float = 0.01,
        contamination: float = 0.005,
        random_state: int = 0,
        n_jobs: int | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_train_rows = max_train_rows
        self.clip = clip
        self.missing_z = missing_z
        self.min_scale = min_scale
        self.contamination = contamination
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: Any, y: Any = None) -> IsolationForestDetector:
        X = _as_matrix(X)
        rng = np.random.default_rng(self.random_state)
        if len(X) > self.max_train_rows:
            X = X[np.sort(rng.choice(len(X), self.max_train_rows, replace=False))]
        self._fit_scaling(X)
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(X)),
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        ).fit(self._z(X))
        self.offset_ = float(np.percentile(self.score_samples(X), 100 * self.contamination))
        return self

    def _score_z(self, z: np.ndarray) -> np.ndarray:
        """IsolationForest's score (in [-1, 0]): lower is more abnormal."""
        return self.forest_.score_samples(z)


DETECTORS = {
    "iforest": IsolationForestDetector,
    "robust_z": RobustZDetector,
    "shift": "itap_engine.detection.charts.ShiftDetector",
    "pca": "itap_engine.detection.charts.PcaDetector",
    "drift": "itap_engine.detection.charts.DriftDetector",
    "ensemble": "itap_engine.detection.charts.EnsembleDetector",
}


def make_detector(
    name: str,
    *,
    n_estimators: int = 200,
    random_state: int = 0,
    feature_names: Sequence[str] = (),
    window: int = 12,
    members: Sequence[str] = ("robust_z", "shift", "pca", "drift"),
) -> BaseEstimator:
    """An unfitted detector by its config name.

    ``feature_names`` (the feature builder's columns) and ``window`` (its short
    window) serve the detectors that read particular feature kinds; ``members``
    names the detectors of ``"ensemble"``.
    """
    from itap_engine.detection import charts as detectors

    if name == "iforest":
        return IsolationForestDetector(n_estimators=n_estimators, random_state=random_state)
    if name == "robust_z":
        return RobustZDetector()
    if name == "shift":
        return detectors.ShiftDetector(feature_names=tuple(feature_names), window=window)
    if name == "pca":
        return detectors.PcaDetector()
    if name == "drift":
        return detectors.DriftDetector(feature_names=tuple(feature_names))
    if name == "ensemble":
        parts = [m for m in members if m != "ensemble"]
        if not parts:
            raise ValueError("an ensemble needs at least one member detector")
        return detectors.EnsembleDetector(
            members=[
                make_detector(
                    m, n_estimators=n_estimators, random_state=random_state, feature_names=feature_names, window=window
                )
                for m in parts
            ]
        )
    raise ValueError(f"unknown detector {name!r}; choose from {sorted(DETECTORS)}")


# ---------------------------------------------------------------------- threshold
@dataclass(frozen=True)
class ThresholdChoice:
    """The outcome of a percentile sweep."""

    threshold: float
    percentile: float
    alerts_per_device_day: float
    sweep: tuple[tuple[float, float, float], ...]
    """(percentile, threshold, alerts per device-day) for every rung tried."""


LADDER = (95.0, 97.0, 98.0, 99.0, 99.5, 99.7, 99.8, 99.9, 99.95, 99.98, 99.99)


def count_k_of_n_alerts(above: np.ndarray, device_codes: np.ndarray, k: int, n: int, quiet: int) -> int:
    """Alerts the k-of-n / quiet-period rule would open over per-device sorted flags."""
    total = 0
    for code in np.unique(device_codes):
        flags = above[device_codes == code]
        if not flags.any():
            continue
        csum = np.concatenate([[0], np.cumsum(flags)])
        idx = np.arange(len(flags))
        hits = csum[idx + 1] - csum[np.maximum(idx + 1 - n, 0)]
        last_above = -(10**9)
        open_ = False
        for i in np.flatnonzero(flags | (hits >= k)):
            if open_ and i - last_above > quiet:
                open_ = False
            if not open_ and hits[i] >= k:
                open_ = True
                total += 1
            if flags[i]:
                last_above = i  # type: ignore[assignment]
    return total


def sweep_threshold(
    scores: np.ndarray,
    device_codes: np.ndarray,
    device_days: float,
    *,
    k: int,
    n: int,
    quiet: int,
    min_percentile: float,
    budget: float = 0.25,
    ladder: Sequence[float] = LADDER,
) -> ThresholdChoice:
    """The lowest percentile (>= ``min_percentile``) of validation anomaly scores whose
    alert rule stays within ``budget`` alerts per device-day on that normal window.

    ``scores`` are anomaly scores (higher = more anomalous) of a normal validation
    window, ordered by device then time, with ``device_codes`` alongside.
    """
    rungs = sorted({min_percentile, *(p for p in ladder if p >= min_percentile)})
    tried: list[tuple[float, float, float]] = []
    chosen: tuple[float, float, float] | None = None
    for pct in rungs:
        thr = float(np.percentile(scores, pct))
        rate = count_k_of_n_alerts(scores > thr, device_codes, k, n, quiet) / max(device_days, 1e-9)
        tried.append((pct, thr, rate))
        if rate <= budget:
            chosen = (pct, thr, rate)
            break
    if chosen is None:
        pct, thr, rate = tried[-1]
        thr = float(np.max(scores)) if len(scores) else thr
        chosen = (100.0, thr, 0.0)
    return ThresholdChoice(
        threshold=chosen[1], percentile=chosen[0], alerts_per_device_day=chosen[2], sweep=tuple(tried)
    )
