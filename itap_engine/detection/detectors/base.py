"""What every detector in the registry shares: the feature matrix check and scikit-learn's outlier API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

__all__ = ["ChartAPI", "OutlierAPI", "as_matrix", "columns_of_kind"]


def as_matrix(X: Any) -> np.ndarray:
    array = np.asarray(X, dtype=float)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D feature matrix, got shape {array.shape}")
    return array


def columns_of_kind(names: Sequence[str], kind: str) -> np.ndarray:
    """Positions of the feature builder's ``*__{kind}`` columns."""
    return np.array([i for i, n in enumerate(names) if n.endswith(f"__{kind}")], dtype=np.int64)


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


class ChartAPI(OutlierAPI):
    """The outlier API over :meth:`score_and_contributions` (the chart detectors score
    and explain in one pass)."""

    def score_samples(self, X: Any) -> np.ndarray:
        return self.score_and_contributions(X)[0]  # type: ignore[attr-defined]

    def contributions(self, X: Any) -> np.ndarray:
        return self.score_and_contributions(X)[1]  # type: ignore[attr-defined]
