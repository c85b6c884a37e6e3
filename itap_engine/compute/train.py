"""Training on a known-good window, by device groups on the cluster.

:func:`train_profile` runs :func:`~itap_engine.detection.scoring.train_model`, the one
training path, and hands it the executor's map. Every device group of
``[compute] partition_devices`` reads its own window from the database on a worker,
three times over:

1. :func:`~itap_engine.detection.scoring.fleet_group`: its fit rows' values, states and
   time steps; the driver takes the fleet-wide medians (state levels, sampling step)
   of the very same values, concatenated in device order;
2. :func:`~itap_engine.detection.scoring.device_group`: each device's own sampling
   step and daily profile, and the spread residuals at the fleet's every n-th fit row
   (the driver searches the lag first, on the first devices' rows, as one fit does);
3. :func:`~itap_engine.detection.scoring.validate_group`: features, validation scores
   and each device's own peaks-over-threshold threshold.

The driver reads only the lag rows and the seeded subset of devices the detector is
fitted on (at most ``MAX_TRAIN_READINGS``), so neither it nor a worker ever holds the
whole window. The feature builder, thresholds and model file contents are those of
``cluster = "none"``, exactly (the tests compare them on a real ``LocalCluster``).

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

TRAIN_PASSES = 3
"""Times :func:`~itap_engine.detection.scoring.train_model` maps the device groups
(fleet statistics, device statistics, validation): the progress counts all three."""
EVALUATE_PASSES = TRAIN_PASSES + 1
"""A simulated evaluation's passes: training's, then the replay of the evaluated hours."""


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

    groups = group_map(executor, progress, passes=TRAIN_PASSES)
    with executor.sklearn_backend():
        model = train_model(
            store,
            settings,
            profile,
            train_until_ms=train_until_ms,
            train_from_ms=train_from_ms,
            device_windows=device_windows,
            exclude_labelled=exclude_labelled,
            map_groups=groups,
        )
    if groups is not None:
        groups.finish()
    if progress is not None and executor.name == "none":
        progress(1, 1)
    return model
