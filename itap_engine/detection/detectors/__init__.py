"""The detector registry: one module per detector, one table of names.

Every detector follows scikit-learn's outlier shape: ``__init__`` only stores keyword
parameters; ``fit(X)`` learns attributes ending in ``_`` and returns ``self``;
``score_samples`` (lower = more abnormal) feeds ``decision_function = score_samples -
offset_`` which feeds ``predict`` (+1 / -1); ``score_and_contributions`` feeds the
explanations; ``set_threshold`` moves ``offset_`` (:class:`~.base.OutlierAPI`). The
score a user sees is the negation of ``score_samples``: higher is more anomalous.

``[detection].detector`` picks one by name (:data:`DETECTORS`); benchmarks/RESULTS.md
records which won and why. Model files name a detector by its class's dotted path;
:data:`LEGACY_NAMES` keeps files written before this package loadable.
"""

from __future__ import annotations

from collections.abc import Sequence

from sklearn.base import BaseEstimator

from itap_engine.detection.detectors.base import ChartAPI, OutlierAPI
from itap_engine.detection.detectors.drift import DriftDetector
from itap_engine.detection.detectors.ensemble import EnsembleDetector
from itap_engine.detection.detectors.iforest import IsolationForestDetector
from itap_engine.detection.detectors.pca import PcaDetector
from itap_engine.detection.detectors.robust_z import RobustZDetector
from itap_engine.detection.detectors.shift import ShiftDetector
from itap_engine.detection.detectors.sweep import LADDER, ThresholdChoice, count_k_of_n_alerts, sweep_threshold

__all__ = [
    "DETECTORS",
    "LADDER",
    "LEGACY_NAMES",
    "ChartAPI",
    "DriftDetector",
    "EnsembleDetector",
    "IsolationForestDetector",
    "OutlierAPI",
    "PcaDetector",
    "RobustZDetector",
    "ShiftDetector",
    "ThresholdChoice",
    "count_k_of_n_alerts",
    "make_detector",
    "sweep_threshold",
]

DETECTORS: dict[str, type] = {
    "iforest": IsolationForestDetector,
    "robust_z": RobustZDetector,
    "shift": ShiftDetector,
    "pca": PcaDetector,
    "drift": DriftDetector,
    "ensemble": EnsembleDetector,
}

LEGACY_NAMES: dict[str, type] = {
    "itap_engine.detection.detectors.IsolationForestDetector": IsolationForestDetector,
    "itap_engine.detection.detectors.RobustZDetector": RobustZDetector,
    "itap_engine.detection.charts.ShiftDetector": ShiftDetector,
    "itap_engine.detection.charts.PcaDetector": PcaDetector,
    "itap_engine.detection.charts.DriftDetector": DriftDetector,
    "itap_engine.detection.charts.EnsembleDetector": EnsembleDetector,
}
"""Where the detector classes lived before this package, for model files written then."""


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
    if name == "iforest":
        return IsolationForestDetector(n_estimators=n_estimators, random_state=random_state)
    if name == "robust_z":
        return RobustZDetector()
    if name == "shift":
        return ShiftDetector(feature_names=tuple(feature_names), window=window)
    if name == "pca":
        return PcaDetector()
    if name == "drift":
        return DriftDetector(feature_names=tuple(feature_names))
    if name == "ensemble":
        parts = [m for m in members if m != "ensemble"]
        if not parts:
            raise ValueError("an ensemble needs at least one member detector")
        return EnsembleDetector(
            members=[
                make_detector(
                    m, n_estimators=n_estimators, random_state=random_state, feature_names=feature_names, window=window
                )
                for m in parts
            ]
        )
    raise ValueError(f"unknown detector {name!r}; choose from {sorted(DETECTORS)}")
