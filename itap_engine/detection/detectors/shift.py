"""Level shift of each signal's short trailing mean against its known-good limits (``shift``).

A multi-channel Shewhart chart on ``{signal}__mean`` (the standardised value's short
trailing mean): a channel's deviation from its known-good median is divided by the
largest deviation seen in the known-good window (its own control limit). Channels
whose known-good variation is slow wander (variance of the trailing mean far above
what the noise explains) are not monitored: a short window cannot show how far they
wander later. The former SKAB-only ``TrailingShiftDetector``, on the engine's features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted

from itap_engine.detection.detectors.base import ChartAPI, as_matrix, columns_of_kind

__all__ = ["ShiftDetector"]


class ShiftDetector(ChartAPI, OutlierMixin, BaseEstimator):
    """Level shift of the short trailing mean, per signal, against known-good limits.

    Parameters
    ----------
    feature_names : sequence of str
        Columns of X (the feature builder's names); ``*__mean`` and ``*__level`` are read.
    window : int, default=12
        The feature builder's short window (the length of the trailing mean).
    persistence : float, default=0.5
        Channels whose variance ratio ``var(mean) / (var(level) / window)`` exceeds
        ``persistence * window`` are not monitored.
    limit_quantile : float, default=1.0
        Quantile of the known-good absolute deviations that is a channel's limit.
    missing_ratio : float, default=10.0
        Ratio given to a signal whose latest value is missing (a dropout is evidence,
        as in :class:`~itap_engine.detection.detectors.RobustZDetector`).
    use_recent : bool, default=True
        A channel's deviation is the smaller of its trailing mean's and
        ``recent_factor`` times its newest half-window mean's (``*__recent``), both
        against the trailing mean's limit: at a fault's onset the newest half deviates
        at least as much (no delay); during a fault it keeps about the same deviation
        (the factor leaves room for its extra noise); once the fault ends it falls back
        to normal, and the score with it, after half a window instead of a whole one.
    recent_factor : float, default=2.5
        The newest half must show at least ``1 / recent_factor`` of the shift.
    """

    def __init__(
        self,
        *,
        feature_names: Sequence[str] = (),
        window: int = 12,
        persistence: float = 0.5,
        limit_quantile: float = 1.0,
        missing_ratio: float = 10.0,
        use_recent: bool = True,
        recent_factor: float = 2.5,
    ) -> None:
        self.feature_names = feature_names
        self.window = window
        self.persistence = persistence
        self.limit_quantile = limit_quantile
        self.missing_ratio = missing_ratio
        self.use_recent = use_recent
        self.recent_factor = recent_factor

    def fit(self, X: Any, y: Any = None) -> ShiftDetector:
        X = as_matrix(X)
        names = list(self.feature_names)
        self.n_features_in_ = X.shape[1]
        mean_cols = columns_of_kind(names, "mean")
        level_cols = np.array([names.index(names[c].rsplit("__", 1)[0] + "__level") for c in mean_cols], dtype=np.int64)
        M = X[:, mean_cols]
        center = np.nanmedian(M, axis=0)
        center = np.where(np.isfinite(center), center, 0.0)
        limit = np.nanquantile(np.abs(M - center), self.limit_quantile, axis=0)
        limit = np.where(np.isfinite(limit), limit, 0.0)
        raw_var = np.nanvar(X[:, level_cols], axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(raw_var > 0, np.nanvar(M, axis=0) / (raw_var / max(self.window, 1)), np.inf)
        usable = limit > 1e-9
        monitored = usable & (ratio <= self.persistence * self.window)
        if not monitored.any():
            monitored = usable
        self.mean_cols_, self.center_, self.limit_ = mean_cols, center, np.where(usable, limit, 1.0)
        recent = [names[c].rsplit("__", 1)[0] + "__recent" for c in mean_cols]
        self.recent_cols_ = (
            np.array([names.index(r) for r in recent], dtype=np.int64)
            if self.use_recent and all(r in names for r in recent)
            else None
        )
        self.level_cols_ = level_cols
        self.variance_ratio_, self.monitored_ = ratio, monitored
        self.offset_ = -2.0
        return self

    def score_and_contributions(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self)
        X = as_matrix(X)
        M = X[:, self.mean_cols_]
        shift = np.abs(M - self.center_)
        recent_cols = getattr(self, "recent_cols_", None)  # None in models saved before it existed
        if recent_cols is not None:
            # the shift must still show in the newest half of the window: once a fault
            # ends, the older half alone no longer holds the score up
            shift = np.fmin(shift, self.recent_factor * np.abs(X[:, recent_cols] - self.center_))
        ratio = np.nan_to_num(shift / self.limit_, nan=0.0)
        ratio = np.where(self.monitored_, ratio, 0.0)
        ratio = np.where(np.isnan(X[:, self.level_cols_]), self.missing_ratio, ratio)
        push = np.zeros(X.shape)
        push[:, self.mean_cols_] = ratio * ratio
        score = ratio.max(axis=1) if ratio.shape[1] else np.zeros(len(X))
        return -score, push
