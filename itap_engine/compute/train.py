"""Training on a known-good window, wherever the other batch work runs.

Training runs in this process through
:func:`~itap_engine.detection.scoring.train_model`, whatever the executor. A group-wise
version (features per device group on the cluster, detector and threshold on the
driver) reproduced the threshold sweep that per-device calibration (peaks over
threshold on each device's own known-good scores) and the safe model files replaced;
until it is rebuilt on them, the cluster simulates history and scores backlogs, and
training stays here. The signature is the one a distributed version will keep.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from itap_engine.compute.cluster import Executor, TaskProgress
    from itap_engine.config import Settings
    from itap_engine.store.sql import Store


def train_profile(
    executor: Executor,
    store: Store,
    settings: Settings,
    profile: str,
    *,
    train_until_ms: int | None = None,
    train_from_ms: int | None = None,
    progress: TaskProgress | None = None,
) -> Any:
    """A new model version of ``profile`` trained on ``[train_from_ms, train_until_ms]``."""
    from itap_engine.detection.scoring import train_model

    model = train_model(store, settings, profile, train_until_ms=train_until_ms, train_from_ms=train_from_ms)
    if progress is not None:
        progress(1, 1)
    return model
