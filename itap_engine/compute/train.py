"""Training on a known-good window, with its per-device half on the cluster.

:func:`train_profile` runs :func:`~itap_engine.detection.scoring.train_model`, the one
training path, and hands it the executor's map: on a cluster, the per-device half of
calibration runs by device groups on the workers
(:func:`~itap_engine.detection.scoring.validate_group`: each task reads its devices'
training window from the database, builds their features, scores the validation rows
and calibrates each device's own peaks-over-threshold threshold), while the driver
fits the feature builder and the detector and pools the validation scores for the
profile's threshold. Thresholds, model file contents and scores are those of
``cluster = "none"``: a device's features and calibration never depend on the other
devices of its group, and the driver concatenates the groups in device order.

Where scikit-learn parallelises (IsolationForest's trees), it goes through joblib's
Dask backend on a cluster (:meth:`~itap_engine.compute.cluster.Executor.sklearn_backend`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from itap_engine.compute.cluster import Executor, TaskProgress
    from itap_engine.config import Settings
    from itap_engine.detection.scoring import TrainedModel
    from itap_engine.store.sql import Store


def train_profile(
    executor: Executor,
    store: Store,
    settings: Settings,
    profile: str,
    *,
    train_until_ms: int | None = None,
    train_from_ms: int | None = None,
    device_windows: dict[str, tuple[int | None, int | None]] | None = None,
    exclude_labelled: bool = True,
    progress: TaskProgress | None = None,
) -> TrainedModel:
    """A new model version of ``profile`` trained on ``[train_from_ms, train_until_ms]``
    (arguments as :func:`~itap_engine.detection.scoring.train_model`)."""
    from itap_engine.compute.cluster import group_map
    from itap_engine.detection.scoring import train_model

    with executor.sklearn_backend():
        model = train_model(
            store,
            settings,
            profile,
            train_until_ms=train_until_ms,
            train_from_ms=train_from_ms,
            device_windows=device_windows,
            exclude_labelled=exclude_labelled,
            map_groups=group_map(executor, progress),
        )
    if progress is not None and executor.name == "none":
        progress(1, 1)
    return model
