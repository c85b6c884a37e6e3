"""Slow drift (``drift``): the two-sided CUSUM of each signal's standardised value over
the long window (``{signal}__cusum``), so a drift smaller than the daily cycle still
accumulates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted

from itap_engine.detection.detectors.base import ChartAPI, as_matrix, columns_of_kind

__all__ = ["DriftDetector"]


class DriftDetector(ChartAPI, OutlierMixin, BaseEstimator):
    """Slow drift: the two-sided CUSUM of each signal's standardised value over the long
    window (``*__cusum``), divided by its known-good ``quantile``; the score is the
    largest ratio. A drift of a fraction of a spread per reading accumulates into a
    large CUSUM long before any single reading leaves its normal range.
    """

    def __init__(self, *, feature_names: Sequence[str] = (), quantile: float = 0.999, min_scale: float = 1.0) -> None:
        self.feature_names = feature_names
        self.quantile = quantile
        self.min_scale = min_scale

    def fit(self, X: Any, y: Any = None) -> DriftDetector:
        X = as_matrix(X)
        self.n_features_in_ = X.shape[1]
        cols = columns_of_kind(list(self.feature_names), "cusum")
        C = X[:, cols]
        scale = np.nanquantile(C, self.quantile, axis=0) if len(C) else np.ones(len(cols))
        self.cols_ = cols
        self.scale_ = np.maximum(np.nan_to_num(scale, nan=self.min_scale), self.min_scale)
        self.offset_ = -2.0
        return self

    def score_and_contributions(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self)
        X = as_matrix(X)
        z = np.nan_to_num(X[:, self.cols_] / self.scale_, nan=0.0)
        push = np.zeros(X.shape)
        push[:, self.cols_] = z * z
        return -(z.max(axis=1) if z.shape[1] else np.zeros(len(X))), push
