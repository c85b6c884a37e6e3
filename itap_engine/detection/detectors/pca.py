"""PCA residual (``pca``): Hotelling T² on the retained components plus Q (the squared
prediction error), each against its known-good 99th percentile. Catches correlation
breaks that no single feature shows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted

from itap_engine.detection.detectors.base import ChartAPI, as_matrix

__all__ = ["PcaDetector"]


class PcaDetector(ChartAPI, OutlierMixin, BaseEstimator):
    """PCA residual: Hotelling T² on the retained components + Q (squared prediction error).

    Features are centred on their known-good median and scaled by 1.4826 MAD
    (floored); missing values count as ``missing_z``. Components explaining
    ``variance`` of the known-good variance are retained. T² and Q are each divided
    by their known-good 99th percentile; the score is the larger of the two.
    """

    def __init__(
        self, *, variance: float = 0.9, missing_z: float = 10.0, clip: float = 30.0, min_scale: float = 0.01
    ) -> None:
        self.variance = variance
        self.missing_z = missing_z
        self.clip = clip
        self.min_scale = min_scale

    def _z(self, X: np.ndarray) -> np.ndarray:
        z = (X - self.center_) / self.scale_
        return np.clip(np.where(np.isnan(z), self.missing_z, z), -self.clip, self.clip)

    def fit(self, X: Any, y: Any = None) -> PcaDetector:
        X = as_matrix(X)
        self.n_features_in_ = X.shape[1]
        center = np.nanmedian(X, axis=0)
        self.center_ = np.where(np.isfinite(center), center, 0.0)
        mad = 1.4826 * np.nanmedian(np.abs(X - self.center_), axis=0)
        sd = np.nanstd(X, axis=0)
        self.scale_ = np.maximum(np.fmax(np.nan_to_num(mad), 0.5 * np.nan_to_num(sd)), self.min_scale)
        Z = self._z(X)
        self.mu_ = Z.mean(axis=0)
        _, s, vt = np.linalg.svd(Z - self.mu_, full_matrices=False)
        var = s * s / max(len(Z) - 1, 1)
        share = np.cumsum(var) / max(var.sum(), 1e-12)
        k = int(min(np.searchsorted(share, self.variance) + 1, len(var)))  # type: ignore[call-overload]
        self.components_, self.eigen_ = vt[:k], np.maximum(var[:k], 1e-9)
        t2, q = self._stats(Z)
        self.t2_scale_ = max(float(np.quantile(t2, 0.99)), 1e-9)
        self.q_scale_ = max(float(np.quantile(q, 0.99)), 1e-9)
        self.offset_ = -2.0
        return self

    def _stats(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        D = Z - self.mu_
        P = D @ self.components_.T
        t2 = (P * P / self.eigen_).sum(axis=1)
        R = D - P @ self.components_
        return t2, (R * R).sum(axis=1)

    def score_and_contributions(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self)
        Z = self._z(as_matrix(X))
        t2, q = self._stats(Z)
        D = Z - self.mu_
        R = D - (D @ self.components_.T) @ self.components_
        return -np.maximum(t2 / self.t2_scale_, q / self.q_scale_), R * R + 1e-12 * Z * Z
