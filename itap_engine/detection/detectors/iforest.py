"""A robust scaler in front of scikit-learn's IsolationForest (``iforest``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.ensemble import IsolationForest

from itap_engine.detection.detectors.base import as_matrix
from itap_engine.detection.detectors.robust_z import RobustScaling

__all__ = ["IsolationForestDetector"]


class IsolationForestDetector(RobustScaling, OutlierMixin, BaseEstimator):
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
        X = as_matrix(X)
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
