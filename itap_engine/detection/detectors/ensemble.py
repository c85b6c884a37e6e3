"""Ensemble (``ensemble``): the largest of the members' anomaly scores, each divided by
its own known-good quantile; the explanation comes from the member that scored highest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted

from itap_engine.detection.detectors.base import ChartAPI, as_matrix

__all__ = ["EnsembleDetector"]


class EnsembleDetector(ChartAPI, OutlierMixin, BaseEstimator):
    """Largest of the members' anomaly scores, each divided by its known-good
    ``quantile`` (so every member speaks in units of its own normal tail)."""

    def __init__(self, *, members: Sequence[Any] = (), quantile: float = 0.995) -> None:
        self.members = members
        self.quantile = quantile

    def fit(self, X: Any, y: Any = None) -> EnsembleDetector:
        X = as_matrix(X)
        self.n_features_in_ = X.shape[1]
        self.members_ = [m.fit(X) for m in self.members]
        scales = []
        for m in self.members_:
            s = -m.score_samples(X)
            scales.append(
                max(float(np.quantile(s[np.isfinite(s)], self.quantile)) if np.isfinite(s).any() else 1.0, 1e-9)
            )
        self.scales_ = np.array(scales)
        self.offset_ = -1.0
        return self

    def score_and_contributions(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self)
        X = as_matrix(X)
        scores, pushes = [], []
        for m, scale in zip(self.members_, self.scales_):
            raw, push = m.score_and_contributions(X)
            scores.append(-raw / scale)
            pushes.append(push)
        S = np.column_stack(scores)
        best = S.argmax(axis=1)
        push = np.zeros(X.shape)
        for j, p in enumerate(pushes):
            rows = best == j
            push[rows] = p[rows]
        return -S.max(axis=1), push
