"""More detectors for the registry in :mod:`itap_engine.detection.detectors`: level shift, PCA, drift, ensemble.

All of them take the :class:`~itap_engine.detection.features.FeatureBuilder` matrix (its column
names are given at construction, so a detector can pick the feature kinds it reads)
and follow scikit-learn's outlier shape like the detectors in ``detect.py``:
``fit(X)`` returns self, ``score_samples`` is lower for more abnormal rows,
``score_and_contributions`` feeds explanations, ``set_threshold`` moves ``offset_``.

* :class:`ShiftDetector`: a multi-channel Shewhart chart on the short trailing mean
  of each signal's standardised value (``{signal}__mean``). A channel's deviation
  from its known-good median is divided by the largest deviation seen in the
  known-good window (its own control limit). Channels whose known-good variation is
  slow wander (variance of the trailing mean far above what the noise explains, e.g.
  temperatures drifting for minutes) are not monitored: a short window cannot show
  how far they wander later. This is the idea of the former SKAB-only
  ``TrailingShiftDetector``, now on the engine's features and usable by any profile.
* :class:`PcaDetector`: PCA on robustly scaled features; Hotelling T² on the
  retained components plus the squared prediction error Q of the residual, each
  divided by its known-good 99th percentile. Catches correlation breaks that no
  single feature shows.
* :class:`DriftDetector`: a two-sided CUSUM of each signal's standardised value (its
  residual against the state-expected level and the device's daily profile) over the
  long window (``{signal}__cusum``), so a slow drift smaller than the daily cycle
  still accumulates.
* :class:`EnsembleDetector`: members' anomaly scores, each divided by its own
  known-good 99.5th percentile; the ensemble score is the largest ratio, and the
  explanation comes from the member that scored highest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted

from itap_engine.detection.detectors import OutlierAPI

__all__ = ["DriftDetector", "EnsembleDetector", "PcaDetector", "ShiftDetector"]


def _matrix(X: Any) -> np.ndarray:
    array = np.asarray(X, dtype=float)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D feature matrix, got shape {array.shape}")
    return array


def _columns(names: Sequence[str], kind: str) -> np.ndarray:
    return np.array([i for i, n in enumerate(names) if n.endswith(f"__{kind}")], dtype=np.int64)


class _OutlierAPI(OutlierAPI):
    """The outlier API over :meth:`score_and_contributions` (the chart detectors score
    and explain in one pass)."""

    def score_samples(self, X: Any) -> np.ndarray:
        return self.score_and_contributions(X)[0]  # type: ignore[attr-defined]

    def contributions(self, X: Any) -> np.ndarray:
        return self.score_and_contributions(X)[1]  # type: ignore[attr-defined]


class ShiftDetector(_OutlierAPI, OutlierMixin, BaseEstimator):
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
        X = _matrix(X)
        names = list(self.feature_names)
        self.n_features_in_ = X.shape[1]
        mean_cols = _columns(names, "mean")
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
        X = _matrix(X)
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


class DriftDetector(_OutlierAPI, OutlierMixin, BaseEstimator):
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
        X = _matrix(X)
        self.n_features_in_ = X.shape[1]
        cols = _columns(list(self.feature_names), "cusum")
        C = X[:, cols]
        scale = np.nanquantile(C, self.quantile, axis=0) if len(C) else np.ones(len(cols))
        self.cols_ = cols
        self.scale_ = np.maximum(np.nan_to_num(scale, nan=self.min_scale), self.min_scale)
        self.offset_ = -2.0
        return self

    def score_and_contributions(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self)
        X = _matrix(X)
        z = np.nan_to_num(X[:, self.cols_] / self.scale_, nan=0.0)
        push = np.zeros(X.shape)
        push[:, self.cols_] = z * z
        return -(z.max(axis=1) if z.shape[1] else np.zeros(len(X))), push


class PcaDetector(_OutlierAPI, OutlierMixin, BaseEstimator):
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
        X = _matrix(X)
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
        Z = self._z(_matrix(X))
        t2, q = self._stats(Z)
        D = Z - self.mu_
        R = D - (D @ self.components_.T) @ self.components_
        return -np.maximum(t2 / self.t2_scale_, q / self.q_scale_), R * R + 1e-12 * Z * Z


class EnsembleDetector(_OutlierAPI, OutlierMixin, BaseEstimator):
    """Largest of the members' anomaly scores, each divided by its known-good
    ``quantile`` (so every member speaks in units of its own normal tail)."""

    def __init__(self, *, members: Sequence[Any] = (), quantile: float = 0.995) -> None:
        self.members = members
        self.quantile = quantile

    def fit(self, X: Any, y: Any = None) -> EnsembleDetector:
        X = _matrix(X)
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
        X = _matrix(X)
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
