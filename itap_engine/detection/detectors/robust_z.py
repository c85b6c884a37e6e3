"""Root-mean-square of robust, tail-calibrated z-scores of every feature (``robust_z``).

Each feature is centred on its known-good median and scaled by the larger of 1.4826 x
MAD and its 99.9 % tail width / 3.29, so sparse or heavy-tailed features do not cry
wolf. A missing feature (a sensor that stopped reporting) scores ``missing_z``: a
dropout is evidence. :meth:`contributions` (squared clipped z per feature) explains.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted

from itap_engine.detection.detectors.base import OutlierAPI, as_matrix

__all__ = ["RobustScaling", "RobustZDetector"]

_NORMAL_999 = 3.2905
"""Two-sided 99.9 % quantile of the standard normal."""


class RobustScaling(OutlierAPI):
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
        return self._score_z(self._z(as_matrix(X)))

    def score_and_contributions(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(score_samples(X), contributions(X))`` with the scaling done once."""
        check_is_fitted(self)
        z = self._z(as_matrix(X))
        return self._score_z(z), z * z

    def contributions(self, X: Any) -> np.ndarray:
        """Non-negative push of each feature away from normal: clipped robust z squared.

        Returns an array of shape (n_samples, n_features).
        """
        check_is_fitted(self)
        z = self._z(as_matrix(X))
        return z * z


class RobustZDetector(RobustScaling, OutlierMixin, BaseEstimator):
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
        X = as_matrix(X)
        self._fit_scaling(X)
        self.offset_ = float(np.percentile(self.score_samples(X), 100 * self.contamination))
        return self

    def _score_z(self, z: np.ndarray) -> np.ndarray:
        """Opposite of the RMS robust z-score: lower is more abnormal."""
        return -np.sqrt(np.einsum("ij,ij->i", z, z) / z.shape[1])
