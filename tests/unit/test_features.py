"""Features: batch == streaming, no look-ahead, operating states look normal, dropouts do not."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from itap_engine.config import Settings
from itap_engine.detection.features import EVENT_FEATURES, SIGNAL_KINDS, FeatureBuilder, feature_builder_for
from itap_engine.ingest.simulator import FaultEvent, Simulator, device_ids_for
from itap_engine.store.sql import to_epoch_ms


@pytest.fixture(scope="module")
def frame(settings: Settings) -> pd.DataFrame:
    sim = Simulator(settings, "industrial", device_ids_for("pump", 4), fault_rate_per_device_day=12.0)
    sim.schedule(FaultEvent("pump-002", "sensor_dropout", datetime(2026, 1, 1, 1, 0), 600.0))
    data = sim.generate(sim.start, sim.start + timedelta(hours=3))
    data["ts"] = to_epoch_ms(data["ts"])
    return data.sort_values(["device_id", "ts"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def builder(settings: Settings, frame: pd.DataFrame) -> FeatureBuilder:
    return feature_builder_for(settings, "industrial").fit(frame[frame["fault"].isna()])


def test_feature_names_cover_every_kind(builder: FeatureBuilder, settings: Settings) -> None:
    signals = settings.profile("industrial").signal_names
    assert builder.feature_names_out_ == [f"{s}__{k}" for s in signals for k in SIGNAL_KINDS] + list(EVENT_FEATURES)
    assert list(builder.get_feature_names_out()) == builder.feature_names_out_


def test_learns_state_levels_and_transition_lag(builder: FeatureBuilder) -> None:
    # the simulator ramps between state levels with a 3-reading time constant after one reading
    assert 2.0 <= builder.lag_tau_ <= 4.0 and builder.lag_delay_ == 1
    assert {"RUN", "IDLE"} <= set(builder.states_)


@pytest.mark.parametrize("fast", [False, True], ids=["transform", "transform_new"])
def test_batch_equals_streaming(builder: FeatureBuilder, frame: pd.DataFrame, fast: bool) -> None:
    names = builder.feature_names_out_
    batch = builder.transform(frame)
    keep = builder.history_
    buffer = frame.iloc[:0]
    pieces = []
    stamps = np.sort(frame["ts"].unique())
    for i in range(0, len(stamps), 7):  # ticks of 7 readings per device
        tick = frame[(frame["ts"] >= stamps[i]) & (frame["ts"] <= stamps[min(i + 6, len(stamps) - 1)])]
        combined = pd.concat([buffer, tick]).sort_values(["device_id", "ts"], kind="stable")
        if fast:  # the streaming path: windowed work for the new rows only
            feats = builder.transform_new(combined, combined["ts"].isin(tick["ts"]).to_numpy())
        else:
            feats = builder.transform(combined)
        pieces.append(feats[feats["ts"].isin(tick["ts"])])
        buffer = combined.groupby("device_id").tail(keep)
    streamed = pd.concat(pieces).sort_values(["device_id", "ts"]).reset_index(drop=True)
    batch = batch.reset_index(drop=True)
    assert len(streamed) == len(batch)
    np.testing.assert_array_equal(streamed["ts"].to_numpy(), batch["ts"].to_numpy())
    np.testing.assert_allclose(streamed[names].to_numpy(), batch[names].to_numpy(), rtol=1e-7, atol=1e-7)


def test_no_look_ahead(builder: FeatureBuilder, frame: pd.DataFrame, settings: Settings) -> None:
    names = builder.feature_names_out_
    cut = int(frame["ts"].quantile(0.5))
    changed = frame.copy()
    later = changed["ts"] > cut
    rng = np.random.default_rng(1)
    for signal in settings.profile("industrial").signal_names:
        changed.loc[later, signal] = changed.loc[later, signal] * rng.uniform(0.2, 5.0, later.sum())
    changed.loc[later & (rng.random(len(changed)) < 0.1), "temp_c"] = np.nan
    changed.loc[later, "state"] = "MAINT"
    before = builder.transform(frame)
    after = builder.transform(changed)
    early = before["ts"] <= cut
    np.testing.assert_array_equal(before.loc[early, names].to_numpy(), after.loc[early, names].to_numpy())
    assert not np.allclose(before.loc[~early, names].to_numpy(), after.loc[~early, names].to_numpy(), equal_nan=True)


def test_state_changes_look_normal(builder: FeatureBuilder, frame: pd.DataFrame) -> None:
    feats = builder.transform(frame)
    normal = frame["fault"].isna().to_numpy()
    changed = np.r_[
        False,
        (frame["state"].to_numpy()[1:] != frame["state"].to_numpy()[:-1])
        & (frame["device_id"].to_numpy()[1:] == frame["device_id"].to_numpy()[:-1]),
    ]
    near = np.convolve(changed, np.ones(10), mode="full")[: len(changed)] > 0  # 10 readings after a change
    assert changed.sum() >= 4
    levels = feats[[c for c in feats.columns if c.endswith("__level")]].to_numpy()
    around = np.abs(levels[near & normal])
    steady = np.abs(levels[~near & normal])
    # values around a RUN/IDLE/MAINT switch are as ordinary as steady ones
    assert np.nanpercentile(around, 99) < 2 * np.nanpercentile(steady, 99)
    assert np.nanmax(around) < 2 * np.nanmax(steady)


def test_dropout_shows_in_missing_features(builder: FeatureBuilder, frame: pd.DataFrame) -> None:
    feats = builder.transform(frame)
    dropout = (frame["fault"] == "sensor_dropout").to_numpy()
    assert dropout.any()
    assert (feats.loc[dropout, "temp_c__missing"] > 0).all()
    assert (feats.loc[dropout, "dropout_streak"] >= 1).all()
    assert (
        feats.loc[frame["fault"].isna().to_numpy() & (feats["since_dropout"] >= 120).to_numpy(), "temp_c__missing"] == 0
    ).all()


def test_unknown_state_and_unsorted_input(builder: FeatureBuilder, frame: pd.DataFrame) -> None:
    odd = frame.sample(frac=1.0, random_state=0).copy()
    odd.loc[odd.index[:5], "state"] = "WARMUP"
    feats = builder.transform(odd)
    assert len(feats) == len(frame)
    assert (np.diff(feats["ts"].to_numpy()[feats["device_id"].to_numpy() == "pump-001"]) > 0).all()


@hsettings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=300),
    starts=st.lists(st.booleans(), min_size=300, max_size=300),
    window=st.integers(1, 130),
)
def test_the_cusum_trailing_min_equals_the_windowed_min(steps, starts, window) -> None:
    """The CUSUM's trailing min (scipy's filter plus a running min at each run's start)
    equals the reference per-window min exactly, runs and short runs included."""
    from itap_engine.detection.features import _positions, _rolling_extreme, _trailing_min

    values = np.cumsum(np.asarray(steps))
    runs = np.cumsum(np.r_[True, np.asarray(starts[1 : len(values)])])
    pos = _positions(runs)
    assert np.array_equal(_trailing_min(values, pos, window), _rolling_extreme(values, pos, window, largest=False))


def test_the_cusum_of_all_signals_at_once_equals_one_signal_at_a_time() -> None:
    """The CUSUM sums every signal and side in one run-wise cumsum; bit for bit the per-column sums."""
    from itap_engine.detection import features as F

    rng = np.random.default_rng(7)
    n, signals = 900, 4
    u0 = rng.normal(size=(n, signals)) * rng.choice([1.0, 8.0], size=(n, signals))
    pos = np.concatenate([np.arange(300), np.arange(250), np.arange(350)])

    def one(u: np.ndarray) -> np.ndarray:
        clipped = np.clip(u, -F._CUSUM_CLIP, F._CUSUM_CLIP)
        best = None
        for v in (clipped - F._CUSUM_K, -clipped - F._CUSUM_K):
            c = F._segment_cumsum(v, pos)
            side = np.maximum(c - F._trailing_min(c - v, pos, 60), 0.0)
            best = side if best is None else np.maximum(best, side)
        return best

    together = F._cusum(u0, pos, 60)
    for j in range(signals):
        assert np.array_equal(together[:, j], one(u0[:, j]))


@hsettings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.floats(-9, 9, allow_nan=False), min_size=1, max_size=200),
    starts=st.lists(st.booleans(), min_size=200, max_size=200),
    window=st.integers(1, 70),
)
def test_the_streaming_cusum_equals_the_batch_one(steps, starts, window) -> None:
    """The streaming CUSUM (largest suffix sum of each reading's gathered window,
    slots before its run excluded) equals the batch one (run-wise cumulative sums
    minus their trailing min) at every reading, runs and short runs included."""
    from itap_engine.detection import features as F

    u0 = np.asarray(steps)[:, None]
    runs = np.cumsum(np.r_[True, np.asarray(starts[1 : len(u0)])])
    pos = F._positions(runs)
    rows = np.arange(len(u0))
    offsets = np.arange(1 - window, 1)
    inside = offsets[None, :] >= -pos[:, None]
    clipped = np.clip(u0[:, 0][np.where(inside, rows[:, None] + offsets[None, :], 0)], -F._CUSUM_CLIP, F._CUSUM_CLIP)
    windows, run = clipped.T[:, None, :], inside.T  # (window, 1 signal, readings), oldest first
    streamed = np.maximum(F._best_suffix(windows - F._CUSUM_K, run), F._best_suffix(-windows - F._CUSUM_K, run))[0]
    np.testing.assert_allclose(streamed, F._cusum(u0, pos, window)[:, 0], rtol=1e-12, atol=1e-9)
