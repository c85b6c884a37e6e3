"""Detection stages of ``itap bench``: features, train and score on a workload.

Why these three: they are the analytical hot path. ``features`` is a batch pass of
:class:`~itap_engine.detection.features.FeatureBuilder` over the whole workload (fitted first,
untimed, on its normal readings); ``train`` is :func:`~itap_engine.detection.scoring.train_model`
end to end from the database (it subsamples devices above
``MAX_TRAIN_READINGS``); ``score`` is one :class:`~itap_engine.detection.scoring.StreamingScorer`
call over the whole workload (features + detector + explanations), i.e. the work of
``itap score`` without the SQL writes.
"""

from __future__ import annotations

import tempfile
from typing import Any

import pandas as pd

from itap_engine.config import Settings

__all__ = ["stages"]


def _epoch_frame(frame: pd.DataFrame) -> pd.DataFrame:
    if pd.api.types.is_integer_dtype(frame["ts"].dtype):
        return frame
    from itap_engine.store.sql import to_epoch_ms

    out = frame.copy()
    out["ts"] = to_epoch_ms(out["ts"])
    return out


def stages(store, settings: Settings, workload_name: str, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Time features, train and score on ``frame`` (already ingested into ``store``).

    Returns one dict per stage: stage, workload, seconds, rows, rows_per_s, peak_rss_mb.
    """
    from itap_bench.runner import measured
    from itap_engine.detection.features import feature_builder_for
    from itap_engine.detection.scoring import StreamingScorer, train_model

    profile = "industrial"
    results: list[dict[str, Any]] = []
    data = _epoch_frame(frame).sort_values(["device_id", "ts"], kind="stable").reset_index(drop=True)
    builder = feature_builder_for(settings, profile)
    normal = data[data["fault"].isna()] if "fault" in data.columns else data
    builder.fit(normal)
    with measured(results, "features", workload_name, len(data)) as extra:
        feats = builder.transform(data)
        extra["features"] = len(builder.feature_names_out_)
    del feats
    with tempfile.TemporaryDirectory(prefix="itap-bench-models-") as tmp:
        local = settings.with_overrides(paths={"artifacts_dir": tmp})
        with measured(results, "train", workload_name, len(data)) as extra:
            model = train_model(store, local, profile)
            extra["detector"] = model.detector_name
        scorer = StreamingScorer(local, profile, model)
        with measured(results, "score", workload_name, len(data)) as extra:
            scored = scorer.score(data)
            extra["anomalous"] = int(scored["is_anomalous"].sum())
    return results
