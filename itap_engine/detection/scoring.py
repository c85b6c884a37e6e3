"""Training, model files, streaming scoring and ``itap score``: the glue the engine calls.

Why it is built this way:

* **One model file per version.** :func:`train_model` fits the feature builder and
  the detector on a time window of normal operation, picks the threshold on a later
  validation window, writes both as arrays + JSON (:mod:`itap_engine.detection.model_files`,
  never a pickle) under ``<artifacts>/models/`` and
  records path, sha256, window, features and threshold in ``model_version``. A
  retrain adds a version (the newest is active); scores keep the id of the version
  that produced them.
* **Refuse tampered files.** :func:`load_active_model` reads the file's bytes once,
  refuses them (:class:`ModelIntegrityError`) unless their hash matches the one
  recorded at training time, and decodes those same bytes; the format holds no
  code to run in any case.
* **Streaming == batch.** :class:`StreamingScorer` keeps the last
  ``levels_history`` readings of every device, with their standardised levels, and
  runs the very same :class:`~itap_engine.detection.features.FeatureBuilder` over buffer + new
  readings, so a tick-by-tick engine and a one-shot ``itap score`` agree (to ~1e-12).
* **Bulk writes.** Scores go to SQL as one executemany per batch, never as ORM
  objects per row.

The engine imports exactly: :class:`Contributor`, :class:`TrainedModel`,
:func:`train_model`, :func:`load_active_model`, :class:`StreamingScorer`,
:class:`AlertTracker`, :func:`acknowledge_alert`, :func:`insert_scores`, :func:`score_pending`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import select

from itap_engine.config import Settings
from itap_engine.detection import model_files
from itap_engine.detection.alerts import (
    AlertChanges,
    AlertTracker,
    Contributor,
    acknowledge_alert,
    contributors_to_json,
    explain,
)
from itap_engine.detection.detectors import ThresholdChoice, make_detector, sweep_threshold
from itap_engine.detection.features import (
    FeatureBuilder,
    FleetPart,
    SpreadResiduals,
    device_blocks,
    feature_builder_for,
    map_blocks,
    outdated_features,
    sort_readings,
    spread_stride,
)
from itap_engine.detection.windows import DeviceWindows
from itap_engine.errors import ItapError
from itap_engine.store.schema import ModelVersion, Score
from itap_engine.store.watermarks import scored_key

__all__ = [
    "AlertChanges",
    "AlertTracker",
    "Contributor",
    "ModelIntegrityError",
    "NoModelError",
    "ScoreResult",
    "StreamingScorer",
    "TrainedModel",
    "TrainingError",
    "acknowledge_alert",
    "insert_scores",
    "load_active_model",
    "load_model_version",
    "score_features",
    "score_pending",
    "score_range",
    "train_model",
]

MODEL_FORMAT = 2
VALIDATION_FRACTION = 0.25
"""The latest quarter of the training window (by time) picks the threshold."""
MAX_TRAIN_READINGS = 300_000
"""Above this many readings, the detector is fitted on a seeded subset of devices
(the feature builder still learns every device's daily profile)."""
MAX_FIT_ROWS = 100_000
"""Training rows above this are subsampled (seeded) before fitting the detector."""


class ModelIntegrityError(ItapError):
    """A model file is missing or does not match the sha256 recorded when it was trained."""


class ModelOutdatedError(ModelIntegrityError):
    """A model made by an older ITAP, whose feature builder lists other features than
    this version builds: it cannot score, and a new one must be trained (a running
    engine trains it itself, from the stored history).

    Args:
        what: which model and how its features differ, one sentence.
        profile: the model's profile (the message says how to retrain it).
    """

    def __init__(self, what: str, profile: str) -> None:
        super().__init__(f"{what}. Retrain with `itap train --profile {profile}` (a running engine retrains it itself)")
        self.what = what


class NoModelError(ItapError):
    """No trained model exists for a profile."""


class TrainingError(ItapError):
    """A model could not be trained (no or too little normal data)."""


@dataclass(frozen=True)
class TrainedModel:
    """A fitted model version, ready to score."""

    version_id: int
    profile: str
    detector: Any
    threshold: float
    feature_names: list[str]
    train_start: int | None
    train_end: int | None
    features: FeatureBuilder | None = None
    """The fitted feature builder that produces ``feature_names``."""
    families: dict[str, str] = field(default_factory=dict)
    """signal -> sensor family, for explanations."""
    detector_name: str = ""
    device_thresholds: dict[str, float] = field(default_factory=dict)
    """Per-device thresholds calibrated on each device's known-good window (``threshold``
    serves devices without one)."""
    device_windows: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    """Devices trained on their own known-good window: device -> (from ms, until ms)."""


@dataclass(frozen=True)
class ScoreResult:
    """What :func:`score_pending` did."""

    profile: str
    rows: int
    anomalous: int
    model_version_id: int | None
    alerts_opened: int = 0
    alerts_closed: int = 0
    watermark: int | None = None


# ---------------------------------------------------------------------- training
def _normal_mask(frame: pd.DataFrame, features: FeatureBuilder) -> np.ndarray:
    """Rows whose trailing window holds no labelled fault (all rows if unlabelled)."""
    if "fault" not in frame.columns:
        return np.ones(len(frame), dtype=bool)
    faulty = frame["fault"].notna().to_numpy()
    if not faulty.any():
        return np.ones(len(frame), dtype=bool)
    from itap_engine.detection.features import _positions, _rolling_count

    pos = _positions(pd.factorize(frame["device_id"])[0])
    return _rolling_count(faulty.astype(float), pos, features.long_window + features.fft_window) == 0


def _training_devices(counts: pd.Series) -> list[str] | None:
    """A seeded subset of devices when the window holds more than MAX_TRAIN_READINGS
    (``counts``: readings per device, in device order).

    Subsampling devices (not instants) keeps every trailing window intact.
    """
    if int(counts.sum()) <= MAX_TRAIN_READINGS:
        return None
    order = np.random.default_rng(0).permutation(len(counts))
    chosen, total = [], 0
    for i in order:
        if total >= MAX_TRAIN_READINGS:
            break
        chosen.append(str(counts.index[i]))
        total += int(counts.iloc[i])
    return sorted(chosen)


@dataclass(frozen=True)
class _Window:
    """The training window's extent, from the database: readings per device (device
    order) and the first and last reading time."""

    counts: pd.Series
    t0: int
    t1: int


def _window_extent(
    store,
    profile: str,
    train_from_ms: int | None,
    train_until_ms: int | None,
    device_windows: dict[str, tuple[int | None, int | None]],
) -> _Window:
    """Counts and time bounds of the window :func:`_training_frame` would read, by one
    aggregate query (plus one per device with its own window): the driver learns the
    window's size without reading it."""
    table = store.readings_table(profile)

    def extent(
        since: int | None, until: int | None, only: str | None = None, skip: list[str] | None = None
    ) -> list[tuple]:
        stmt = sa.select(table.c.device_id, sa.func.count(), sa.func.min(table.c.ts), sa.func.max(table.c.ts))
        if only is not None:
            stmt = stmt.where(table.c.device_id == only)
        elif skip:
            stmt = stmt.where(table.c.device_id.not_in(skip))
        if since is not None:
            stmt = stmt.where(table.c.ts > since)
        if until is not None:
            stmt = stmt.where(table.c.ts <= until)
        with store.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(stmt.group_by(table.c.device_id)) if row[1]]

    rows = extent(None if train_from_ms is None else train_from_ms - 1, train_until_ms, skip=list(device_windows))
    for device, (lo, hi) in device_windows.items():
        rows += extent(None if lo is None else lo - 1, hi, only=device)
    rows.sort(key=lambda row: str(row[0]))  # Python's order, as sort_readings
    counts = pd.Series([int(r[1]) for r in rows], index=[str(r[0]) for r in rows], dtype=np.int64)
    if not rows:
        return _Window(counts, 0, 0)
    return _Window(counts, min(int(r[2]) for r in rows), max(int(r[3]) for r in rows))


@dataclass
class _Fitted:
    """What :func:`_fit` learned from a training window."""

    builder: FeatureBuilder
    detector: Any
    detector_name: str
    names: list[str]
    train_rows: int
    val_scores: np.ndarray
    val_devices: np.ndarray
    split: int
    t0: int
    t1: int
    short: bool = False
    """A short window: the detector was fitted and is calibrated on the whole window."""
    devices: list[str] = field(default_factory=list)
    """Every device of the window, in order (the detector learnt from a subset of them)."""


@dataclass
class _Thresholds:
    """What :func:`_calibrate` chose from the known-good scores."""

    choice: ThresholdChoice
    device_thresholds: dict[str, float]
    calibration: dict[str, Any]


def train_model(
    store,
    settings: Settings,
    profile: str,
    *,
    train_until_ms: int | None = None,
    train_from_ms: int | None = None,
    device_windows: dict[str, tuple[int | None, int | None]] | None = None,
    exclude_labelled: bool = True,
    map_groups: MapGroups | None = None,
) -> TrainedModel:
    """Fit features + detector on normal readings of ``[train_from_ms, train_until_ms]``.

    ``device_windows`` gives devices their own known-good window (device -> (from ms,
    until ms), either end None = open); None keeps those of the active version, ``{}``
    drops them. ``exclude_labelled`` leaves labelled readings (and the windows after
    them) out; ``itap train`` sets it only when asked, so labels never pick training
    rows unless the operator says so.

    Normal means: no fault label in the trailing window (simulated data); imported
    data without labels is taken as normal, so the operator names a known-good
    window with ``train_until_ms``. The latest quarter of the window (by time) is the
    validation window on which the threshold is calibrated. Saves a new model version
    and makes it the active one. The steps: :func:`_fit`, :func:`_calibrate`,
    :func:`_persist` (the model file), :func:`_record` (the model version row).

    Where it runs: the driver learns the window's extent by one aggregate query, reads
    only a seeded subset of devices (all of them up to :data:`MAX_TRAIN_READINGS`
    readings) and fits the feature builder's fleet-wide statistics (state levels and
    spreads, sampling step, lag) and the detector on it. Every device group of
    ``[compute] partition_devices`` then reads its own window from the database
    (:func:`validate_group`), fits its devices' own statistics (sampling step, daily
    profile), builds their features, scores the validation rows and calibrates each
    device's own threshold; the driver merges the per-device statistics and pools the
    scores for the profile's threshold. ``map_groups(fn, tasks)`` (an executor's map,
    e.g. a Dask cluster's) runs the groups; without it they run here one after the
    other, so the model is the same wherever they ran, and one process never holds
    more than the subset and one group.

    Raises:
        TrainingError: the window holds too few normal readings.
    """
    if device_windows is None:  # a retrain keeps the windows operators gave devices
        device_windows = _active_device_windows(store, profile)
    extent = _window_extent(store, profile, train_from_ms, train_until_ms, device_windows)
    builder = feature_builder_for(settings, profile)
    minimum = min_training_readings(builder)
    if int(extent.counts.sum()) < minimum:
        raise TrainingError(
            f"profile {profile}: only {int(extent.counts.sum())} readings in the training window; need at least "
            f"{minimum} (2 x ([features].long_window + 1), long_window = {builder.long_window}): lower "
            "[features].long_window in config.toml, or widen the window (--train-from/--train-until), or generate "
            "or ingest more history"
        )
    every = [str(d) for d in extent.counts.index]
    sample = _training_devices(extent.counts)
    split = extent.t0 + int((extent.t1 - extent.t0) * (1 - VALIDATION_FRACTION))
    window = ValidationWindow(train_from_ms, train_until_ms, split, exclude_labelled, False)
    size = max(1, int(settings.compute.partition_devices))
    groups = [every[i : i + size] for i in range(0, len(every), size)]

    def tasks(*extra: Any, per_group: Sequence[tuple[Any, ...]] = ()) -> list[tuple[Any, ...]]:
        return [
            (
                settings,
                profile,
                store.url,
                group,
                {d: w for d, w in device_windows.items() if d in set(group)},
                window,
                *extra,
                *(per_group[i] if per_group else ()),
            )
            for i, group in enumerate(groups)
        ]

    def read(devices: Sequence[str] | None) -> pd.DataFrame:
        wanted = set(every if devices is None else devices)
        windows = {d: w for d, w in device_windows.items() if d in wanted}
        return _training_frame(
            store,
            profile,
            train_from_ms,
            train_until_ms,
            windows,
            device_ids=None if devices is None else list(devices),
        )

    if map_groups is None and sample is None:
        # the whole window fits in memory: fit on it here (the numbers the groups give)
        frame = read(None)
        fitted = _fit(settings, profile, frame, exclude_labelled, builder, split, (extent.t0, extent.t1))
        window = dataclasses.replace(window, short=fitted.short)
        parts = [_validate_frame(settings, fitted.builder, fitted.detector, frame, window)]
        del frame
    else:
        run: MapGroups = map_groups or _map_here
        _fit_builder(builder, profile, window, run, tasks, read)
        frame = read(sample)  # the detector learns from a seeded subset of devices
        fitted = _fit(settings, profile, frame, exclude_labelled, builder, split, (extent.t0, extent.t1))
        del frame
        window = dataclasses.replace(window, short=fitted.short)
        parts = run(validate_group, tasks(fitted.builder, fitted.detector))
    fitted.devices = every
    fitted.val_scores = np.concatenate([p.scores for p in parts]) if parts else np.zeros(0)
    fitted.val_devices = np.concatenate([p.devices for p in parts]) if parts else np.zeros(0, dtype=object)
    own = {d: t for p in parts for d, t in p.device_thresholds.items()}
    thresholds = _calibrate(settings, fitted, own)
    fitted.detector.set_threshold(thresholds.choice.threshold)
    families = settings.profile(profile).families()
    path, digest = _persist(settings, profile, fitted, thresholds, families, device_windows)
    version_id = _record(store, profile, fitted, thresholds, path, digest, device_windows)
    return TrainedModel(
        version_id=version_id,
        profile=profile,
        detector=fitted.detector,
        threshold=float(thresholds.choice.threshold),
        feature_names=fitted.names,
        train_start=fitted.t0,
        train_end=fitted.t1,
        features=fitted.builder,
        families=families,
        detector_name=fitted.detector_name,
        device_thresholds=thresholds.device_thresholds,
        device_windows=dict(device_windows or {}),
    )


def _fit(
    settings: Settings,
    profile: str,
    frame: pd.DataFrame,
    exclude_labelled: bool,
    builder: FeatureBuilder,
    split: int,
    extent: tuple[int, int],
) -> _Fitted:
    """Fit the detector on ``frame`` (every device of a small window, else the seeded
    subset), and the feature builder on its fit rows first unless the device groups
    already fitted it (:func:`_fit_builder`). ``split`` starts the validation window;
    ``extent`` is the whole window's first and last reading time. The validation
    scores come from the device groups (:func:`validate_group`) or
    :func:`_validate_frame`."""
    normal = _normal_mask(frame, builder) if exclude_labelled else np.ones(len(frame), dtype=bool)
    ts = frame["ts"].to_numpy(dtype=np.int64)
    t0, t1 = extent
    fit_rows = normal & (ts <= split)
    if not hasattr(builder, "levels_"):
        if fit_rows.sum() < builder.long_window + 1:
            raise TrainingError(f"profile {profile}: too few normal readings before {split} to train on")
        builder.fit(frame[fit_rows])  # every device: each gets its own daily profile
    feats = builder.transform(frame)
    names = list(builder.feature_names_out_)
    pos_ok = _warm(feats, builder.long_window + 1)
    X = feats[names].to_numpy()
    train_idx = np.flatnonzero(fit_rows & pos_ok)
    val_idx = np.flatnonzero(normal & (ts > split) & pos_ok)
    short = len(val_idx) < SHORT_WINDOW_ROWS
    if short:
        # a short known-good window (a few hundred readings): a held-out quarter would
        # leave too few rows both to fit and to calibrate, so the detector is fitted
        # on the whole window and the threshold calibrated on its scores, whose
        # extreme tail is extrapolated (peaks over threshold) rather than read off
        train_idx = np.flatnonzero(normal & pos_ok)
    rng = np.random.default_rng(0)
    if len(train_idx) > MAX_FIT_ROWS:
        train_idx = np.sort(rng.choice(train_idx, MAX_FIT_ROWS, replace=False))
    detector = make_detector(
        settings.detection.detector,
        n_estimators=settings.detection.n_estimators,
        feature_names=names,
        window=builder.window,
        members=settings.detection.ensemble,
    )
    detector.fit(X[train_idx])
    return _Fitted(
        builder=builder,
        detector=detector,
        detector_name=settings.detection.detector,
        names=names,
        train_rows=int(len(train_idx)),
        val_scores=np.zeros(0),
        val_devices=np.zeros(0, dtype=object),
        split=split,
        t0=t0,
        t1=t1,
        short=short,
        devices=[str(d) for d in pd.unique(feats["device_id"].to_numpy())],
    )


def _calibrate(settings: Settings, fitted: _Fitted, device_thresholds: dict[str, float] | None = None) -> _Thresholds:
    """The pooled threshold and each device's own, from the validation scores
    (``device_thresholds``: each device's own, already calibrated by device groups)."""
    builder, val_scores = fitted.builder, fitted.val_scores
    device_codes = pd.factorize(fitted.val_devices)[0]
    device_days = len(val_scores) * builder.step_ms_ / 86_400_000
    choice = sweep_threshold(
        val_scores,
        device_codes,
        device_days,
        k=settings.alerts.k,
        n=settings.alerts.n,
        quiet=settings.alerts.quiet_readings,
        min_percentile=settings.detection.threshold_percentile,
    )
    calibration: dict[str, Any] = {"method": settings.detection.threshold_method}
    if settings.detection.threshold_method != "sweep":
        from itap_engine.detection.threshold import calibrate, exceedance_probability

        rate = settings.detection.false_alarms_per_device_day
        pooled = calibrate(
            val_scores, exceedance_probability(rate, builder.step_ms_), settings.detection.threshold_method
        )
        choice = ThresholdChoice(pooled.threshold, 100.0, rate, choice.sweep)
        calibration["pooled"] = {"threshold": pooled.threshold, "q": pooled.q, **pooled.detail}
        if device_thresholds is None:
            device_thresholds = calibrate_devices(settings, builder, val_scores, fitted.val_devices)
    return _Thresholds(choice=choice, device_thresholds=device_thresholds or {}, calibration=calibration)


def _persist(
    settings: Settings,
    profile: str,
    fitted: _Fitted,
    thresholds: _Thresholds,
    families: dict[str, str],
    device_windows: dict[str, tuple[int | None, int | None]] | None,
) -> tuple[Path, str]:
    """Write the model file (safe format); returns its path and sha256."""
    name = fitted.detector_name
    bundle = {
        "format": MODEL_FORMAT,
        "profile": profile,
        "detector_name": name,
        "features": fitted.builder,
        "detector": fitted.detector,
        "threshold": thresholds.choice.threshold,
        "feature_names": fitted.names,
        "families": families,
        "device_thresholds": thresholds.device_thresholds,
        "device_windows": {d: list(w) for d, w in (device_windows or {}).items()},
    }
    models_dir = settings.resolve(settings.paths.artifacts_dir) / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = models_dir / f"{profile}-{name}-{stamp}-{uuid.uuid4().hex[:8]}{model_files.SUFFIX}"
    return path, model_files.write_model_file(path, bundle)


def _record(
    store,
    profile: str,
    fitted: _Fitted,
    thresholds: _Thresholds,
    path: Path,
    digest: str,
    device_windows: dict[str, tuple[int | None, int | None]] | None,
) -> int:
    """Insert the model version row, active (the profile's others inactive); its id."""
    choice = thresholds.choice
    metrics = {
        "threshold_percentile": choice.percentile,
        "validation_alerts_per_device_day": round(choice.alerts_per_device_day, 4),
        "sweep": [list(map(float, rung)) for rung in choice.sweep],
        "train_rows": fitted.train_rows,
        "validation_rows": int(len(fitted.val_scores)),
        "validation_start": fitted.split,
        "lag_tau": float(fitted.builder.lag_tau_),
        "lag_delay": int(fitted.builder.lag_delay_),
        "calibration": thresholds.calibration,
        "device_thresholds": thresholds.device_thresholds,
        "device_windows": {d: list(w) for d, w in (device_windows or {}).items()},
    }
    with store.session() as session:
        session.exec(
            sa.update(ModelVersion).where(ModelVersion.profile == profile).values(active=False)  # type: ignore[arg-type, call-overload]
        )
        version = ModelVersion(
            profile=profile,
            detector=fitted.detector_name,
            path=str(path),
            sha256=digest,
            train_start=fitted.t0,
            train_end=fitted.t1,
            features=json.dumps(fitted.names),
            threshold=float(choice.threshold),
            metrics=json.dumps(metrics),
            active=True,
        )
        session.add(version)
        session.commit()
        session.refresh(version)
    assert version.id is not None
    return version.id


MIN_DEVICE_CALIBRATION = 50
"""A device needs this many known-good scores for its own threshold (else the pooled one)."""
SHORT_WINDOW_ROWS = 1000
"""Below this many held-out known-good rows, fit and calibrate on the whole window."""


MapGroups = Callable[[Callable[..., Any], Sequence[tuple[Any, ...]]], list[Any]]
"""``map_groups(fn, tasks) -> [fn(*task) for task in tasks]``, wherever it runs them."""


@dataclass(frozen=True)
class ValidationWindow:
    """Where a device group's validation rows lie in the training window."""

    train_from_ms: int | None
    train_until_ms: int | None
    split: int
    """Readings after this (epoch ms) are the validation window."""
    exclude_labelled: bool
    short: bool
    """A short window: the whole known-good window is fitted on and calibrated on."""


@dataclass(frozen=True)
class Validation:
    """Known-good validation scores of some devices, and each device's own threshold."""

    scores: np.ndarray
    devices: np.ndarray
    """The device of each score, ordered by device then time."""
    device_thresholds: dict[str, float]


def validate_devices(
    settings: Settings, builder: FeatureBuilder, detector: Any, feats: pd.DataFrame, rows: np.ndarray
) -> Validation:
    """Detector scores of ``feats`` at ``rows`` and each device's own threshold
    (:func:`calibrate_devices`)."""
    names = list(builder.feature_names_out_)
    if not len(rows):  # e.g. a group whose validation window is all faulty
        return Validation(np.zeros(0), np.zeros(0, dtype=object), {})
    scores = -detector.score_samples(feats[names].to_numpy()[rows])
    devices = feats["device_id"].to_numpy()[rows]
    return Validation(scores, devices, calibrate_devices(settings, builder, scores, devices))


def calibrate_devices(
    settings: Settings, builder: FeatureBuilder, scores: np.ndarray, devices: np.ndarray
) -> dict[str, float]:
    """Each device's own threshold, calibrated on its own known-good ``scores`` for the
    target false-alarm rate (none when thresholds are swept). A device needs
    :data:`MIN_DEVICE_CALIBRATION` scores; the others use the pooled threshold."""
    thresholds: dict[str, float] = {}
    method = settings.detection.threshold_method
    if method == "sweep" or not len(scores):
        return thresholds
    from itap_engine.detection.threshold import calibrate, exceedance_probability

    rate = settings.detection.false_alarms_per_device_day
    codes = pd.factorize(devices)[0]
    for code, device in enumerate(pd.unique(devices)):
        mine = scores[codes == code]
        if len(mine) < MIN_DEVICE_CALIBRATION:
            continue
        step = builder.device_steps_.get(str(device), builder.step_ms_)
        cal = calibrate(mine, exceedance_probability(rate, step), method)
        if np.isfinite(cal.threshold):
            thresholds[str(device)] = float(cal.threshold)
    return thresholds


def _group_frame(
    settings: Settings,
    profile: str,
    url: str | None,
    devices: Sequence[str],
    device_windows: dict[str, tuple[int | None, int | None]],
    window: ValidationWindow,
) -> pd.DataFrame:
    """A device group's training window, read from the database by the task itself."""
    from itap_engine.store.sql import Store

    store = Store(settings, url=url)
    try:
        return _training_frame(
            store, profile, window.train_from_ms, window.train_until_ms, device_windows, device_ids=list(devices)
        )
    finally:
        store.close()


def _fit_rows(frame: pd.DataFrame, builder: FeatureBuilder, window: ValidationWindow) -> np.ndarray:
    """The rows the feature builder learns from: known-good, before the validation window."""
    normal = _normal_mask(frame, builder) if window.exclude_labelled else np.ones(len(frame), dtype=bool)
    return normal & (frame["ts"].to_numpy(dtype=np.int64) <= window.split)


@dataclass(frozen=True)
class FleetGroup:
    """A device group's part of the fleet-wide statistics, and its fit rows per device."""

    part: FleetPart
    devices: list[str]
    rows: list[int]


def fleet_group(
    settings: Settings,
    profile: str,
    url: str | None,
    devices: Sequence[str],
    device_windows: dict[str, tuple[int | None, int | None]],
    window: ValidationWindow,
    builder: FeatureBuilder,
) -> FleetGroup:
    """Step 1 of a device group (:func:`_fit_builder`): its fit rows' values, states and steps."""
    frame = _group_frame(settings, profile, url, devices, device_windows, window)
    fit = frame[_fit_rows(frame, builder, window)]
    codes, names = pd.factorize(fit["device_id"])
    return FleetGroup(
        builder.fleet_part(fit), [str(d) for d in names], np.bincount(codes, minlength=len(names)).tolist()
    )


@dataclass(frozen=True)
class DeviceGroup:
    """A device group's own statistics (step 2, :func:`device_group`)."""

    steps: dict[str, int]
    profiles: dict[str, np.ndarray]
    residuals: SpreadResiduals


def device_group(
    settings: Settings,
    profile: str,
    url: str | None,
    devices: Sequence[str],
    device_windows: dict[str, tuple[int | None, int | None]],
    window: ValidationWindow,
    builder: FeatureBuilder,
    offset: int,
    stride: int,
) -> DeviceGroup:
    """Step 2 of a device group (:func:`_fit_builder`): each device's sampling step and
    daily profile, and the spread residuals at the fleet's every ``stride``-th fit row
    (the group's first fit row is the fleet's row ``offset``)."""
    frame = _group_frame(settings, profile, url, devices, device_windows, window)
    fit = frame[_fit_rows(frame, builder, window)]
    del frame
    local = copy.copy(builder)
    steps = local.fit_device_steps(fit)
    local.device_steps_ = {**builder.device_steps_, **steps}
    profiles, residuals = local.fit_devices(fit, offset, stride)
    return DeviceGroup(steps, profiles, residuals)


def _fit_builder(
    builder: FeatureBuilder,
    profile: str,
    window: ValidationWindow,
    run: MapGroups,
    tasks: Callable[..., list[tuple[Any, ...]]],
    read: Callable[[Sequence[str] | None], pd.DataFrame],
) -> None:
    """``builder.fit`` over every device's fit rows, by device groups: the same numbers
    as one ``fit`` on the whole window (the steps of :meth:`FeatureBuilder.fit`; medians
    of the very same values, concatenated in device order), while no process holds the
    window. The lag is searched here on the first devices' rows, as ``fit`` does."""
    fleet: list[FleetGroup] = run(fleet_group, tasks(builder))
    counts = pd.Series([n for g in fleet for n in g.rows], index=[d for g in fleet for d in g.devices], dtype=np.int64)
    total = int(counts.sum())
    if total < builder.long_window + 1:
        raise TrainingError(f"profile {profile}: too few normal readings before {window.split} to train on")
    builder.fit_fleet([g.part for g in fleet])
    del fleet
    # the lag search's rows: the first devices, up to the one holding row _LAG_SEARCH_ROWS
    device_codes = np.repeat(np.arange(len(counts)), counts.to_numpy())
    first = list(counts.index[: int(device_codes[builder.lag_rows(device_codes) - 1]) + 1])
    del device_codes
    prefix = read(first)
    prefix = prefix[_fit_rows(prefix, builder, window)]
    builder.device_steps_ = builder.fit_device_steps(prefix)
    builder.fit_lag(prefix)
    del prefix
    before = np.r_[0, np.cumsum([int(counts.loc[list(g)].sum()) for g in _groups_of(tasks)])][:-1]
    stride = spread_stride(total)
    parts: list[DeviceGroup] = run(device_group, tasks(builder, per_group=[(int(o), stride) for o in before]))
    builder.device_steps_ = {d: n for p in parts for d, n in p.steps.items()}
    builder.device_profiles_ = {d: c for p in parts for d, c in p.profiles.items()}
    builder.fit_spreads([p.residuals for p in parts])


def _groups_of(tasks: Callable[..., list[tuple[Any, ...]]]) -> list[Sequence[str]]:
    """The device groups of the tasks (their 4th argument)."""
    return [task[3] for task in tasks()]


def validate_group(
    settings: Settings,
    profile: str,
    url: str | None,
    devices: Sequence[str],
    device_windows: dict[str, tuple[int | None, int | None]],
    window: ValidationWindow,
    builder: FeatureBuilder,
    detector: Any,
) -> Validation:
    """Step 3 of a device group: its validation scores and each device's own threshold
    (:func:`_validate_frame` on the group's window, read from the database)."""
    frame = _group_frame(settings, profile, url, devices, device_windows, window)
    return _validate_frame(settings, builder, detector, frame, window)


def _validate_frame(
    settings: Settings, builder: FeatureBuilder, detector: Any, frame: pd.DataFrame, window: ValidationWindow
) -> Validation:
    """Build the features, score the known-good validation rows, calibrate each
    device's own threshold (:func:`validate_devices`)."""
    normal = _normal_mask(frame, builder) if window.exclude_labelled else np.ones(len(frame), dtype=bool)
    ts = frame["ts"].to_numpy(dtype=np.int64)
    feats = builder.transform(frame)
    rows = normal & _warm(feats, builder.long_window + 1)
    if not window.short:
        rows &= ts > window.split
    return validate_devices(settings, builder, detector, feats, np.flatnonzero(rows))


def _map_here(fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]]) -> list[Any]:
    """:data:`MapGroups` in this process, one task after the other."""
    return [fn(*task) for task in tasks]


def min_training_readings(builder: FeatureBuilder) -> int:
    """The fewest readings a training window may hold: two full long windows."""
    return 2 * (int(builder.long_window) + 1)


def _active_device_windows(store, profile: str) -> dict[str, tuple[int | None, int | None]]:
    """The per-device known-good windows of the profile's active model version."""
    with store.session() as session:
        version = session.exec(
            select(ModelVersion)
            .where(ModelVersion.profile == profile, ModelVersion.active == True)  # noqa: E712
            .order_by(ModelVersion.id.desc())  # type: ignore[union-attr]
        ).first()
    if version is None or not version.metrics:
        return {}
    try:
        windows = json.loads(version.metrics).get("device_windows", {})
    except ValueError:
        return {}
    return {str(d): (w[0], w[1]) for d, w in windows.items()}


def _training_frame(
    store,
    profile: str,
    train_from_ms: int | None,
    train_until_ms: int | None,
    device_windows: dict[str, tuple[int | None, int | None]],
    device_ids: list[str] | None = None,
) -> pd.DataFrame:
    """Readings of the profile's window (of ``device_ids``; None: every device), with
    devices that have their own window read over that window instead; ordered by
    device then time."""
    since = None if train_from_ms is None else train_from_ms - 1
    frame = store.read_readings(profile, device_ids=device_ids, since_ms=since, until_ms=train_until_ms)
    if device_windows:
        frame = frame[~frame["device_id"].astype(str).isin(list(device_windows))]
        parts = [frame]
        for device, (lo, hi) in device_windows.items():
            parts.append(
                store.read_readings(profile, device_ids=[device], since_ms=None if lo is None else lo - 1, until_ms=hi)
            )
        frame = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else frame
    # features come back ordered by device then time (Python's order): the masks below
    # must follow the same order, whatever the database's collation
    return sort_readings(frame)


def _warm(feats: pd.DataFrame, history: int) -> np.ndarray:
    """Rows with a full history behind them (partial windows are not fitted on)."""
    from itap_engine.detection.features import _positions

    return _positions(pd.factorize(feats["device_id"])[0]) >= history - 1


# ---------------------------------------------------------------------- loading
def load_model_version(store, version_id: int) -> TrainedModel:
    """Load one recorded model version, verifying its file's sha256 first.

    Raises:
        ModelIntegrityError: the file is missing or its hash does not match.
    """
    with store.session() as session:
        version = session.get(ModelVersion, version_id)
    if version is None:
        raise NoModelError(f"model version {version_id} does not exist")
    path = Path(version.path)
    if not path.is_file():
        raise ModelIntegrityError(
            f"model file {path} (profile {version.profile}, version {version.id}) is missing; "
            f"retrain with `itap train --profile {version.profile}`"
        )
    try:
        actual, data = model_files.read_model_file(path)  # one read: the bytes hashed are the bytes loaded
    except OSError as error:
        raise ModelIntegrityError(f"model file {path} cannot be read: {error.strerror or error}") from None
    if actual != version.sha256:
        raise ModelIntegrityError(
            f"model file {path} does not match the sha256 recorded for version {version.id} "
            f"(expected {version.sha256[:12]}..., found {actual[:12]}...); refusing to load it. "
            f"Retrain with `itap train --profile {version.profile}`"
        )
    try:
        bundle = model_files.decode_model(data)
    except model_files.ModelFileError as error:
        raise ModelIntegrityError(
            f"model file {path} (version {version.id}) cannot be loaded safely: {error}; "
            f"retrain with `itap train --profile {version.profile}`"
        ) from None
    outdated = outdated_features(bundle["features"])
    if outdated:
        from itap_engine.store.queries import model_numbers

        number = model_numbers(store, {version.profile: int(version.id)})[version.profile]  # type: ignore[arg-type]
        shown = ", ".join(outdated[:3]) + (f" and {len(outdated) - 3} more" if len(outdated) > 3 else "")
        raise ModelOutdatedError(
            f"model version {number} of {version.profile} was made by an older ITAP: its features differ "
            f"from this version's ({shown})",
            version.profile,
        )
    return TrainedModel(
        version_id=int(version.id),  # type: ignore[arg-type]
        profile=version.profile,
        detector=bundle["detector"],
        threshold=float(version.threshold),
        feature_names=list(bundle["feature_names"]),
        train_start=version.train_start,
        train_end=version.train_end,
        features=bundle["features"],
        families=dict(bundle["families"]),
        detector_name=bundle.get("detector_name", version.detector),
        device_thresholds=dict(bundle.get("device_thresholds", {})),
        device_windows={d: tuple(w) for d, w in bundle.get("device_windows", {}).items()},
    )


def load_active_model(store, settings: Settings, profile: str) -> TrainedModel | None:
    """The newest active model of a profile, or None if none was trained.

    Raises:
        ModelIntegrityError: naming the file, if it is missing or was altered.
    """
    with store.session() as session:
        version = session.exec(
            select(ModelVersion)
            .where(ModelVersion.profile == profile, ModelVersion.active == True)  # noqa: E712
            .order_by(ModelVersion.id.desc())  # type: ignore[union-attr]
        ).first()
    if version is None or version.id is None:
        return None
    model = load_model_version(store, version.id)
    signals = list(settings.profile(profile).signals)
    trained = list(getattr(model.features, "signals", signals))
    if trained != signals:  # the profile changed since: its readings lack (or add) signals
        from itap_engine.store.queries import model_numbers

        raise ModelIntegrityError(
            f"model version {model_numbers(store, {profile: version.id})[profile]} of {profile} was trained on "
            f"signals {', '.join(trained)}; the profile now has {', '.join(signals)}. "
            f"Retrain with `itap train --profile {profile}`"
        )
    return model


# ---------------------------------------------------------------------- scoring
SCORED_COLUMNS = ["device_id", "ts", "score", "is_anomalous", "family", "contributors", "threshold", "model_version_id"]


def score_features(model: TrainedModel, feats: pd.DataFrame) -> pd.DataFrame:
    """Score a feature frame (``device_id``, ``ts`` and the model's feature columns).

    Returns the :class:`StreamingScorer` output columns (plus ``threshold`` and
    ``model_version_id``). Contributor lists are filled for anomalous rows only.
    """
    if feats.empty:
        return pd.DataFrame({c: [] for c in SCORED_COLUMNS})
    X = feats[model.feature_names].to_numpy()
    raw, push = model.detector.score_and_contributions(X)
    score = -raw
    threshold: Any = model.threshold
    if model.device_thresholds:
        devices = feats["device_id"]
        own = pd.Series(devices.to_numpy()).astype(str).map(model.device_thresholds).to_numpy(dtype=float)
        threshold = np.where(np.isnan(own), model.threshold, own)
    anomalous = score > threshold
    explanation = explain(push, model.feature_names, model.families, detail=anomalous)
    return pd.DataFrame(
        {
            "device_id": feats["device_id"].to_numpy(),
            "ts": feats["ts"].to_numpy(dtype=np.int64),
            "score": score,
            "is_anomalous": anomalous,
            "family": explanation.family,
            "contributors": explanation.contributors,
            "threshold": threshold,
            "model_version_id": model.version_id,
        }
    )


class StreamingScorer:
    """Scores readings of one profile as they arrive, tick by tick.

    Keeps the last ``model.features.levels_history`` readings of each device, with
    their standardised levels (:meth:`~itap_engine.detection.features.FeatureBuilder.levels`), so that the
    features of new readings equal those of a batch pass over the whole history.

    Args:
        settings: the loaded settings.
        profile: the profile the model was trained for.
        model: a :class:`TrainedModel` (from :func:`train_model` or
            :func:`load_active_model`).
    """

    def __init__(self, settings: Settings, profile: str, model: TrainedModel) -> None:
        if model.features is None:
            raise ValueError("model has no fitted feature builder")
        self.settings = settings
        self.profile = profile
        self.model = model
        self.history = int(model.features.levels_history)
        signals = settings.profile(profile).signal_names
        self.columns = ["device_id", "ts", "state", *signals]
        self._levels = [f"{s}__level" for s in signals]
        """Buffer columns: each buffered reading's standardised value (FeatureBuilder.levels)."""
        self._buffer = pd.DataFrame({c: [] for c in [*self.columns, *self._levels]})
        self._categories: dict[str, pd.Index] = {}
        self._windows: DeviceWindows | None = None
        """The buffer as dense per-device windows between ticks that only append
        (:mod:`~itap_engine.detection.windows`); ``_buffer`` is stale while it is set."""
        self._dense = DeviceWindows.usable(model.features, self.history)

    def _frame(self, readings: pd.DataFrame) -> pd.DataFrame:
        frame = readings.reindex(columns=[*self.columns, *self._levels]).copy()
        if not pd.api.types.is_integer_dtype(frame["ts"].dtype):
            from itap_engine.store.sql import to_epoch_ms

            frame["ts"] = to_epoch_ms(frame["ts"])
        frame["ts"] = frame["ts"].astype(np.int64)
        for name in ("device_id", "state"):
            frame[name] = self._categorical(name, frame[name])
        return frame

    def _categorical(self, name: str, values: pd.Series) -> pd.Series:
        """``values`` as a categorical over sorted categories shared with the buffer.

        Device ids and states repeat on every buffered row: as categories, hashing
        them (factorize, isin) costs their integer codes instead of a string per row,
        and buffer + tick concatenate without re-encoding.
        """
        categories = self._categories.get(name)
        if categories is not None:  # the usual tick: every value already a category (one hash pass)
            codes = categories.get_indexer(values)
            if not ((codes < 0) & values.notna().to_numpy()).any():
                return pd.Series(pd.Categorical.from_codes(codes, categories=categories), index=values.index)
        seen = pd.unique(values.dropna().astype(str).to_numpy())
        if categories is None or not pd.Index(seen).isin(categories).all():
            categories = pd.Index(sorted(set(seen) | set(categories if categories is not None else ())))
            buffer = self._flat()
            self._categories[name] = categories
            if len(buffer):
                buffer[name] = buffer[name].cat.set_categories(categories)
        text = values.where(values.isna(), values.astype(str))
        return pd.Series(pd.Categorical(text, categories=categories), index=values.index)

    def _retain(self, combined: pd.DataFrame, codes: np.ndarray) -> None:
        """Keep the last ``history`` readings of each device (``codes`` sorted)."""
        from itap_engine.detection.features import _positions

        pos = _positions(codes)
        sizes = np.bincount(codes)[codes]
        self._buffer = combined[pos >= sizes - self.history].reset_index(drop=True)
        if self._dense and len(self._buffer):
            assert self.model.features is not None
            signals = self.columns[3:]
            self._windows = DeviceWindows.from_buffer(
                self.model.features, signals, self._buffer, self._levels, self.history
            )

    def _flat(self) -> pd.DataFrame:
        """The buffer as one frame (the general path's form), leaving the dense windows."""
        if self._windows is not None:
            self._buffer = self._windows.to_buffer(self.columns, self._levels)
            self._windows = None
        return self._buffer

    def warm_up(self, history: pd.DataFrame) -> None:
        """Seed the per-device windows from stored readings without scoring them."""
        if history.empty:
            return
        combined, _, codes = self._merge(self._frame(history))
        assert self.model.features is not None
        combined[self._levels] = self.model.features.levels(combined)
        self._retain(combined, codes)

    def _merge(self, new: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """Buffer + new readings ordered by device then time, a new reading replacing a
        buffered one with the same key: ``(frame, is_new, device codes)``.

        Sorts integer codes (not the device strings) and keeps the buffer's column
        dtypes, so a tick costs a few milliseconds for a thousand devices.
        """
        buffer = self._flat()
        combined = pd.concat([buffer, new], ignore_index=True) if len(buffer) else new.reset_index(drop=True)
        is_new = np.r_[np.zeros(len(buffer), dtype=bool), np.ones(len(new), dtype=bool)]
        codes = pd.factorize(combined["device_id"], sort=True)[0]
        ts = combined["ts"].to_numpy(dtype=np.int64)
        # one int64 key (device, ts): a stable sort of it is fast on the nearly sorted
        # buffer + tick (timsort), and of equal keys the new reading comes last
        span = int(ts.max() - ts.min()) + 1 if len(ts) else 1
        if (int(codes.max()) + 1) * span < 2**62 if len(ts) else True:
            order = np.argsort(codes.astype(np.int64) * span + (ts - (ts.min() if len(ts) else 0)), kind="stable")
        else:  # a key would overflow (timestamps decades apart): sort by both columns
            order = np.lexsort((ts, codes))
        codes, ts = codes[order], ts[order]
        last = np.r_[(codes[1:] != codes[:-1]) | (ts[1:] != ts[:-1]), True]
        order = order[last]
        return combined.take(order).reset_index(drop=True), is_new[order], codes[last]

    def score(self, readings: pd.DataFrame) -> pd.DataFrame:
        """Score new readings (``device_id``, ``ts`` epoch ms, ``state``, signals).

        Returns ``device_id``, ``ts``, ``score`` (higher = more anomalous),
        ``is_anomalous`` (score > threshold), ``family`` (top sensor family),
        ``contributors`` (top 3 :class:`Contributor` as a list for anomalous rows;
        the shared empty tuple ``()`` for the others, to keep scoring fast),
        plus ``threshold`` and ``model_version_id``; ordered by device then time.

        Features are computed for the new readings only
        (:meth:`~itap_engine.detection.features.FeatureBuilder.transform_new`), with the
        buffered readings as their history.
        """
        if readings.empty:
            return score_features(self.model, pd.DataFrame())
        frame = self._frame(readings)
        if self._windows is not None:
            appended = self._windows.advance(frame)
            if appended is not None:  # a live tick: one newer reading per known device
                return score_features(self.model, appended)
        combined, is_new, codes = self._merge(frame)
        features = self.model.features
        assert features is not None
        levels = np.array(combined[self._levels].to_numpy(dtype=float))  # writable (copy-on-write views are not)
        # a reading's level depends on the states before it: new readings, and any
        # buffered reading after a new one (a late arrival), are standardised again
        stale = _at_or_after_first(is_new, codes)

        def run(lo: int, hi: int) -> pd.DataFrame | None:
            new = is_new[lo:hi]
            if not new.any():
                return None
            block = combined.iloc[lo:hi]
            redo = np.flatnonzero(stale[lo:hi])
            levels[lo:hi][redo] = features.levels(block, None if len(redo) == hi - lo else redo)
            return score_features(self.model, features.transform_new(block, new, levels=levels[lo:hi]))

        # whole devices at a time: a catch-up over days of readings never holds the
        # feature matrix of all of them at once; buffered rows weigh little (their
        # levels are kept, only the new rows' windows are gathered)
        blocks = device_blocks(codes, weight=np.where(is_new, 1.0, _BUFFERED_ROW_WEIGHT))
        parts = [part for part in map_blocks(run, blocks) if part is not None]
        result = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
        combined[self._levels] = levels
        self._retain(combined, codes)
        return result


def warm_up_span_ms(features: FeatureBuilder) -> int:
    """How far before a watermark :meth:`StreamingScorer.warm_up` should read: the
    builder's ``history_`` readings (the windows and the state history behind their
    levels), twice over so a gap in the data still leaves enough."""
    return (int(features.history_) + 2) * max(int(features.step_ms_), 1) * 2


_BUFFERED_ROW_WEIGHT = 1 / 64
"""Work of a buffered reading relative to a new one when a tick is cut into blocks."""


def _at_or_after_first(flags: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Rows at or after the first flagged row of their device (rows grouped by device)."""
    n = len(flags)
    idx = np.arange(n)
    starts = np.maximum.accumulate(np.where(np.r_[True, codes[1:] != codes[:-1]], idx, 0)) if n else idx
    last_flag = np.maximum.accumulate(np.where(flags, idx, -1)) if n else idx
    return last_flag >= starts


def insert_scores(store, profile: str, scored: pd.DataFrame, batch: int = 50_000) -> int:
    """Bulk ``INSERT ... ON CONFLICT DO NOTHING`` of scores; returns rows inserted."""
    if scored.empty:
        return 0
    contributors = [
        contributors_to_json(items) if isinstance(items, (list, tuple)) and items else None
        for items in scored["contributors"].tolist()
    ]
    records = list(
        zip(
            [profile] * len(scored),
            scored["device_id"].astype(str).tolist(),
            scored["ts"].astype(np.int64).tolist(),
            scored["score"].astype(float).tolist(),
            scored["model_version_id"].astype(int).tolist(),
            contributors,
        )
    )  # tuples, not a dict per row
    names = ["profile", "device_id", "ts", "score", "model_version_id", "contributors"]
    copied = store.copy_rows("score", names, records, ["profile", "device_id", "ts"])
    if copied is not None:  # PostgreSQL
        return copied
    return sum(
        store.executemany_tuples(
            "insert_scores", lambda: _score_insert(store.engine.dialect.name), names, records[start : start + batch]
        )
        for start in range(0, len(records), batch)
    )


def _score_insert(dialect: str) -> sa.Executable:
    table = Score.__table__  # type: ignore[attr-defined]
    names = ["profile", "device_id", "ts", "score", "model_version_id", "contributors"]
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(table)
        .values({name: sa.bindparam(name) for name in names})
        .on_conflict_do_nothing(index_elements=["profile", "device_id", "ts"])
    )


def model_and_watermark(store, settings: Settings, profile: str) -> tuple[TrainedModel, str, int | None]:
    """The active model of ``profile``, its scored-watermark key and the watermark
    (epoch ms of the last scored reading; None: nothing scored yet).

    Raises:
        NoModelError: no model was trained for the profile.
    """
    model = load_active_model(store, settings, profile)
    if model is None:
        raise NoModelError(f"no trained model for profile {profile}; run `itap train --profile {profile}` first")
    key = scored_key(profile)
    mark = store.get_watermark(key)
    return model, key, int(mark) if mark else None


def score_pending(store, settings: Settings, profile: str) -> ScoreResult:
    """``itap score``: score readings newer than the profile's scored watermark.

    Warms the windows up from the readings just before the watermark, scores the
    backlog in time slices (:func:`score_range`, so memory stays bounded), stores Score
    rows in bulk, updates alerts and advances the watermark.

    Raises:
        NoModelError: no model was trained for the profile.
        ModelIntegrityError: the active model's file was altered or is missing.
    """
    model, key, since = model_and_watermark(store, settings, profile)
    until = store.latest_ts(profile)
    if until is None or (since is not None and until <= since):
        return ScoreResult(profile, 0, 0, model.version_id, watermark=since)
    done = score_range(store, settings, profile, model, since=since, until=until)
    if done.last_ts is not None:
        store.set_watermark(key, str(done.last_ts))
    return ScoreResult(
        profile=profile,
        rows=done.rows,
        anomalous=done.anomalous,
        model_version_id=model.version_id,
        alerts_opened=done.alerts_opened,
        alerts_closed=done.alerts_closed,
        watermark=done.last_ts if done.last_ts is not None else since,
    )


SCORE_CHUNK_ROWS = 250_000
"""New readings :func:`score_range` scores at a time (time slices), to bound memory."""


@dataclass(frozen=True)
class RangeScore:
    """What :func:`score_range` did for its devices and window."""

    rows: int
    anomalous: int
    alerts_opened: int
    alerts_closed: int
    last_ts: int | None


def score_range(
    store,
    settings: Settings,
    profile: str,
    model: TrainedModel,
    *,
    since: int | None,
    until: int,
    device_ids: Sequence[str] | None = None,
    chunk_rows: int | None = None,
    write_guard: Callable[[], AbstractContextManager[Any]] | None = None,
) -> RangeScore:
    """Score the readings of ``device_ids`` (None: every device) in ``(since, until]``,
    store the scores and run the alert rules; the watermark is the caller's.

    The windows are warmed up from the readings before ``since``; the backlog is read
    and scored in time slices of about ``chunk_rows`` readings with one
    :class:`StreamingScorer` (its buffer carries each device's window over, and the
    alert tracker its state), so the numbers are those of one pass. ``write_guard``
    wraps each slice's writes (a cluster serialises SQLite writers with it).
    """
    scorer = StreamingScorer(settings, profile, model)
    columns = scorer.columns
    devices = None if device_ids is None else list(device_ids)
    if since is not None:
        assert model.features is not None
        span = warm_up_span_ms(model.features)
        history = store.read_readings(
            profile, device_ids=devices, since_ms=since - span, until_ms=since, columns=columns
        )
        scorer.warm_up(history)
        del history
    tracker = AlertTracker(store, settings)
    guard = write_guard or contextlib.nullcontext
    rows = anomalous = opened = closed = 0
    last: int | None = None
    for lo, hi in _time_slices(store, profile, devices, since, until, chunk_rows or SCORE_CHUNK_ROWS):
        new = store.read_readings(profile, device_ids=devices, since_ms=lo, until_ms=hi, columns=columns)
        if new.empty:
            continue
        scored = scorer.score(new)
        with guard():
            insert_scores(store, profile, scored)
            changes = tracker.update(profile, scored)
        rows += len(scored)
        anomalous += int(scored["is_anomalous"].sum())
        opened += len(changes.opened)
        closed += len(changes.closed)
        top = int(new["ts"].max())
        last = top if last is None else max(last, top)
        del new, scored
    return RangeScore(rows, anomalous, opened, closed, last)


def _time_slices(
    store, profile: str, devices: list[str] | None, since: int | None, until: int, chunk_rows: int
) -> list[tuple[int | None, int]]:
    """``(lo, hi]`` windows of about ``chunk_rows`` readings of ``devices``."""
    table = store.readings_table(profile)
    stmt = sa.select(sa.func.min(table.c.ts), sa.func.count()).where(table.c.ts <= until)
    if devices is not None:
        stmt = stmt.where(table.c.device_id.in_(devices))
    if since is not None:
        stmt = stmt.where(table.c.ts > since)
    with store.engine.connect() as conn:
        first, count = conn.execute(stmt).one()
    if not count:
        return []
    slices = max(1, -(-int(count) // chunk_rows))
    if slices == 1:
        return [(since, until)]
    lo = int(first) - 1
    edges = np.linspace(lo, until, slices + 1).astype(np.int64)
    windows: list[tuple[int | None, int]] = [(int(edges[i]), int(edges[i + 1])) for i in range(slices)]
    windows[0] = (since if since is not None else lo, windows[0][1])
    windows[-1] = (windows[-1][0], until)
    return windows
