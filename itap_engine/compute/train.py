"""Training over long histories by device groups, with the result of one process.

:func:`~itap_engine.detection.scoring.train_model` reads the whole training window
into one frame. This does the same computation in parts:

1. **Window** (driver, SQL): first and last reading of the window, hence the split
   between fit and validation rows.
2. **Fit rows** (driver, one device group at a time): each group's readings are read,
   their normal mask computed (labels in the trailing window, per device) and only
   the fit rows kept, with device ids and states as shared strings. The feature
   builder is fitted on them: its state levels, transition lag and spreads are
   statistics over every device together, so this step is not separable.
3. **Features** (tasks, on the cluster when there is one): each task reads a group
   of the training devices, computes their features with the fitted builder and
   returns only the rows the detector needs: warm fit rows and warm validation rows
   (devices never mix, so every group's numbers are those of a whole-fleet pass).
4. **Detector and threshold** (driver): the rows are concatenated in device order,
   subsampled with the same seed, fitted (scikit-learn's own parallelism goes
   through joblib's Dask backend on a cluster) and the threshold swept on the
   validation scores, exactly as in one pass.

The saved model version is the one ``train_model`` would save for the same window.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sqlalchemy as sa

from itap_engine.compute.cluster import DaskExecutor, Executor, TaskProgress, partitions
from itap_engine.compute.score import profile_devices
from itap_engine.config import Settings
from itap_engine.store.sql import Store


@dataclass(frozen=True)
class _Rows:
    """What a features task hands back: the detector's rows of one device group."""

    fit: np.ndarray
    fit_devices: np.ndarray
    """Index into the task's device list, per fit row."""
    validation: np.ndarray
    validation_devices: np.ndarray
    """Index into the task's device list, per validation row."""
    devices: tuple[str, ...]


def _shared_strings(values: np.ndarray) -> np.ndarray:
    """Equal strings as one object each (a million rows of one device id cost 8 MB, not 60)."""
    codes, uniques = pd.factorize(values)
    table = np.asarray(uniques, dtype=object)
    out = np.empty(len(values), dtype=object)
    known = codes >= 0
    out[known] = table[codes[known]]
    out[~known] = None
    return out


def _read_group(store: Store, profile: str, devices: Sequence[str], since: int | None, until: int | None) -> pd.DataFrame:
    from itap_engine.detection.features import sort_readings

    frame = store.read_readings(profile, device_ids=list(devices), since_ms=since, until_ms=until)
    for name in ("device_id", "state", "fault"):
        if name in frame.columns:
            frame[name] = _shared_strings(frame[name].to_numpy())
    return sort_readings(frame)


def features_partition(
    settings: Settings,
    profile: str,
    builder: Any,
    devices: Sequence[str],
    since: int | None,
    until: int | None,
    split: int,
    url: str | None = None,
) -> _Rows:
    """Features of one device group; returns the warm fit and validation rows (runs on a worker)."""
    from itap_engine.detection.scoring import _normal_mask, _warm

    store = Store(settings, url=url)
    try:
        frame = _read_group(store, profile, devices, since, until)
    finally:
        store.close()
    normal = _normal_mask(frame, builder)
    ts = frame["ts"].to_numpy(dtype=np.int64)
    feats = builder.transform(frame)
    del frame
    names = list(builder.feature_names_out_)
    warm = _warm(feats, builder.history_)
    X = feats[names].to_numpy()
    fit = normal & (ts <= split) & warm
    val = normal & (ts > split) & warm
    index = {d: i for i, d in enumerate(devices)}
    ids = feats["device_id"].to_numpy()
    codes = np.array([index[str(d)] for d in ids], dtype=np.int32)
    return _Rows(X[fit], codes[fit], X[val], codes[val], tuple(devices))


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
    """``train_model`` by device groups: the same model version, in bounded memory.

    Raises:
        TrainingError: the window holds too few normal readings.
    """
    from itap_engine.detection import scoring
    from itap_engine.detection.detectors import make_detector, sweep_threshold
    from itap_engine.detection.features import feature_builder_for
    from itap_engine.detection.scoring import TrainedModel, TrainingError, _normal_mask
    from itap_engine.store.schema import ModelVersion

    spec = settings.profile(profile)
    since = None if train_from_ms is None else train_from_ms - 1
    builder = feature_builder_for(settings, spec)
    table = store.readings_table(profile)
    devices = profile_devices(store, profile)
    stmt = sa.select(sa.func.min(table.c.ts), sa.func.max(table.c.ts), sa.func.count()).where(
        table.c.device_id.in_(devices)
    )
    if since is not None:
        stmt = stmt.where(table.c.ts > since)
    if train_until_ms is not None:
        stmt = stmt.where(table.c.ts <= train_until_ms)
    with store.engine.connect() as conn:
        first, last, total = conn.execute(stmt).one()
    if total < 4 * builder.long_window:
        raise TrainingError(
            f"profile {profile}: only {total} readings in the training window; "
            f"need at least {4 * builder.long_window} (generate or ingest more history first)"
        )
    t0, t1 = int(first), int(last)
    split = t0 + int((t1 - t0) * (1 - scoring.VALIDATION_FRACTION))

    # 2. fit rows, a device group at a time, and the feature builder on them
    groups = partitions(devices, settings.compute.partition_devices)
    fit_parts: list[pd.DataFrame] = []
    counts: dict[str, int] = {}
    for group in groups:
        frame = _read_group(store, profile, group.devices, since, train_until_ms)
        if frame.empty:
            continue
        counts.update(frame["device_id"].value_counts(sort=False).items())
        keep = _normal_mask(frame, builder) & (frame["ts"].to_numpy(dtype=np.int64) <= split)
        fit_parts.append(frame.loc[keep, [c for c in frame.columns if c not in ("fault", "changepoint")]])
        del frame
    fit_frame = pd.concat(fit_parts, ignore_index=True) if fit_parts else pd.DataFrame()
    del fit_parts
    if len(fit_frame) < 2 * builder.long_window:
        raise TrainingError(f"profile {profile}: too few normal readings before {split} to train on")
    builder.fit(fit_frame)
    del fit_frame

    # 3. features of the devices the detector learns from, by device groups
    chosen = _training_devices(counts)
    url = store.url
    tasks = [
        (settings, profile, builder, part.devices, since, train_until_ms, split, url)
        for part in partitions(chosen, settings.compute.partition_devices)
    ]
    parts: list[_Rows] = executor.map(features_partition, tasks, progress)

    # 4. detector and threshold, as train_model does on the whole frame
    names = list(builder.feature_names_out_)
    X_fit = np.concatenate([p.fit for p in parts]) if parts else np.empty((0, len(names)))
    X_val = np.concatenate([p.validation for p in parts]) if parts else np.empty((0, len(names)))
    val_ids = _ids(parts, "validation_devices")
    fit_ids = _ids(parts, "fit_devices")
    del parts
    rng = np.random.default_rng(0)
    if len(X_fit) > scoring.MAX_FIT_ROWS:
        pick = np.sort(rng.choice(np.arange(len(X_fit)), scoring.MAX_FIT_ROWS, replace=False))
        X_fit, fit_ids = X_fit[pick], fit_ids[pick]
    name = settings.detection.detector
    detector = make_detector(name, n_estimators=settings.detection.n_estimators)
    _fit_detector(detector, X_fit, executor)
    if len(X_val) < 100:  # as train_model: sweep on the fit rows
        X_val, val_ids = X_fit, fit_ids
    val_scores = -detector.score_samples(X_val)
    device_codes = pd.factorize(val_ids)[0]
    device_days = len(X_val) * builder.step_ms_ / 86_400_000
    choice = sweep_threshold(
        val_scores,
        device_codes,
        device_days,
        k=settings.alerts.k,
        n=settings.alerts.n,
        quiet=settings.alerts.quiet_readings,
        min_percentile=settings.detection.threshold_percentile,
    )
    detector.set_threshold(choice.threshold)
    families = spec.families()
    bundle = {
        "format": scoring.MODEL_FORMAT,
        "profile": profile,
        "detector_name": name,
        "features": builder,
        "detector": detector,
        "threshold": choice.threshold,
        "feature_names": names,
        "families": families,
    }
    models_dir = settings.resolve(settings.paths.artifacts_dir) / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = models_dir / f"{profile}-{name}-{stamp}-{uuid.uuid4().hex[:8]}.joblib"
    joblib.dump(bundle, path)
    metrics = {
        "threshold_percentile": choice.percentile,
        "validation_alerts_per_device_day": round(choice.alerts_per_device_day, 4),
        "sweep": [list(map(float, rung)) for rung in choice.sweep],
        "train_rows": len(X_fit),
        "validation_rows": len(X_val),
        "validation_start": split,
        "lag_tau": float(builder.lag_tau_),
        "lag_delay": int(builder.lag_delay_),
        "partitions": len(tasks),
        "cluster": executor.name,
    }
    with store.session() as session:
        session.exec(
            sa.update(ModelVersion).where(ModelVersion.profile == profile).values(active=False)  # type: ignore[call-overload]
        )
        version = ModelVersion(
            profile=profile,
            detector=name,
            path=str(path),
            sha256=scoring._sha256(path),
            train_start=t0,
            train_end=t1,
            features=json.dumps(names),
            threshold=float(choice.threshold),
            metrics=json.dumps(metrics),
            active=True,
        )
        session.add(version)
        session.commit()
        session.refresh(version)
    assert version.id is not None
    return TrainedModel(
        version_id=version.id,
        profile=profile,
        detector=detector,
        threshold=float(choice.threshold),
        feature_names=names,
        train_start=t0,
        train_end=t1,
        features=builder,
        families=families,
        detector_name=name,
    )


def _training_devices(counts: dict[str, int]) -> list[str]:
    """``scoring._training_devices`` from per-device counts (in device order): every
    device, or the same seeded subset when the window is larger than MAX_TRAIN_READINGS."""
    from itap_engine.detection.scoring import MAX_TRAIN_READINGS

    ids = sorted(counts)
    if sum(counts.values()) <= MAX_TRAIN_READINGS:
        return ids
    order = np.random.default_rng(0).permutation(len(ids))
    chosen, total = [], 0
    for i in order:
        if total >= MAX_TRAIN_READINGS:
            break
        chosen.append(ids[i])
        total += counts[ids[i]]
    return sorted(chosen)


def _fit_detector(detector: Any, X: np.ndarray, executor: Executor) -> None:
    """Fit; on a cluster, scikit-learn's joblib parallelism (IsolationForest's trees)
    runs through joblib's Dask backend. The trees are seeded, so they do not depend
    on where they were built; the stored model is left single-job for scoring."""
    if not isinstance(executor, DaskExecutor) or not hasattr(detector, "n_jobs"):
        detector.fit(X)
        return
    detector.set_params(n_jobs=-1)
    try:
        with joblib.parallel_config(backend="dask"):
            detector.fit(X)
    finally:
        detector.set_params(n_jobs=None)
        forest = getattr(detector, "forest_", None)
        if forest is not None:
            forest.set_params(n_jobs=None)


def _ids(parts: Sequence[_Rows], field: str) -> np.ndarray:
    """Device ids, per row, of the tasks' fit or validation rows, in task order."""
    if not parts:
        return np.empty(0, dtype=object)
    return np.concatenate([np.asarray(p.devices, dtype=object)[getattr(p, field)] for p in parts])
