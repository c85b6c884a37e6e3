"""Windows follow each device's own sampling interval: jitter or a skipped sample is
not missing data, and only a real gap restarts them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _detection_helpers import CONFIG, load_settings, quiet_fleet, simulate
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from itap_engine.detection.detectors import make_detector
from itap_engine.detection.features import feature_builder_for

SKAB = Path(__file__).resolve().parents[3] / "shared" / "data" / "skab"

TOLERANCE = 0.5
"""Stated tolerance: on readings present in both series, jitter of up to +-30 % of the
step plus 1 % skipped samples moves a normal reading's anomaly score by at most half
the model's threshold (the median by a twentieth of that), transitions between
operating states included: the learned transition lag is measured in sampling
intervals of time, not in readings."""

AMBIGUOUS = 1.5
"""The one exception: when the reading right before a change of state, or the change's
own reading, is skipped, the change is known only to within two intervals (the lag
places it halfway); the readings of that transition may then move by up to this many
thresholds (measured: 1.23 and 1.31 on the fixture's change; the lag counted in
readings moved them by up to 2.9)."""


@pytest.fixture(scope="module")
def fitted():
    settings = load_settings(CONFIG)
    sim = quiet_fleet(settings, devices=1)
    train = simulate(sim, 0, 6)
    test = simulate(sim, 6, 8)
    builder = feature_builder_for(settings, "industrial").fit(train)
    names = list(builder.feature_names_out_)
    X = builder.transform(train)[names].to_numpy()[builder.long_window + 1 :]
    detector = make_detector("shift", feature_names=names, window=builder.window).fit(X)
    threshold = float(np.quantile(-detector.score_samples(X), 0.999)) * 2
    return builder, detector, names, test, threshold


def _scores(builder, detector, names, frame: pd.DataFrame) -> pd.Series:
    feats = builder.transform(frame)
    return pd.Series(-detector.score_samples(feats[names].to_numpy()), index=feats["ts"].to_numpy())


@hsettings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), jitter=st.floats(0.0, 0.3))
def test_jitter_and_skipped_samples_barely_move_scores(fitted, seed: int, jitter: float) -> None:
    builder, detector, names, test, threshold = fitted
    rng = np.random.default_rng(seed)
    step = builder.step_ms_
    shaken = test.copy()
    offsets = rng.uniform(-jitter, jitter, size=len(shaken)) * step  # each reading +-30 % of the step at most
    shaken["ts"] = shaken["ts"].to_numpy() + offsets.astype(np.int64)
    keep = rng.random(len(shaken)) >= 0.01
    keep[0] = True
    shaken = shaken[keep]
    regular = _scores(builder, detector, names, test)
    moved = _scores(builder, detector, names, shaken)
    # compare the same readings (by their position in the regular series), after warm-up
    same = regular.iloc[np.flatnonzero(keep)]
    # transitions whose change was inside a skipped interval
    state = test["state"].to_numpy()
    changed = np.flatnonzero(np.r_[False, state[1:] != state[:-1]])
    ambiguous = np.zeros(len(test), dtype=bool)
    for at in changed:
        if not (keep[at - 1] and keep[at]):
            ambiguous[at : at + builder.lag_taps_ + builder.window] = True
    start = builder.long_window + 1
    diff = (np.abs(moved.to_numpy() - same.to_numpy()) / threshold)[start:]
    amb = ambiguous[keep][start:]
    assert diff[~amb].max() <= TOLERANCE
    assert diff.max() <= AMBIGUOUS
    assert np.median(diff) <= TOLERANCE / 20


@pytest.mark.parametrize("offset", [-1, 0, 1, 2, 3, 5])
def test_a_sample_skipped_at_a_change_of_state(fitted, offset: int) -> None:
    """The lag is counted in time: a sample skipped at or after a change of state moves
    no score by more than the stated tolerance (counted in readings, skipping the
    change's reading moved the transition's scores by 2.9 thresholds, the next by 2)."""
    builder, detector, names, test, threshold = fitted
    state = test["state"].to_numpy()
    changes = np.flatnonzero(np.r_[False, state[1:] != state[:-1]])
    changes = changes[changes > builder.long_window + 2]
    assert len(changes), "the fixture's test hours hold a change of state"
    keep = np.ones(len(test), dtype=bool)
    keep[changes[0] + offset] = False
    regular = _scores(builder, detector, names, test).to_numpy()[keep]
    moved = _scores(builder, detector, names, test[keep]).to_numpy()
    diff = np.abs(moved - regular)[builder.long_window + 1 :] / threshold
    assert diff.max() <= (AMBIGUOUS if offset in (-1, 0) else TOLERANCE)


@pytest.mark.skipif(not (SKAB / "valve1").is_dir(), reason="SKAB dev set not available")
def test_skab_skipped_seconds_are_not_gaps_and_not_anomalies(tmp_path) -> None:
    """valve1/0.csv skips a second every ~14 rows; none of those rows is missing data,
    and a skip neither moves the score nor makes its row an anomaly."""
    from itap_engine.evaluation.skab_engine import _score_file

    settings = load_settings(CONFIG).with_overrides(detection={"detector": "shift"})
    test, scored, _ = _score_file(settings, SKAB / "valve1" / "0.csv", "skab-valve1-0", tmp_path)
    ts = test["ts"].to_numpy()
    after_skip = np.r_[False, np.diff(ts) > 1000]
    assert after_skip.sum() > 20
    # the normal stretch before the labelled episode (after it the pump recovers slowly)
    before = np.arange(len(ts)) < np.flatnonzero(test["fault"].notna().to_numpy())[0]
    merged = scored.set_index("ts").loc[ts]
    assert (after_skip & before).sum() > 5
    flagged = merged["is_anomalous"].to_numpy()
    # rows right after a skipped second are flagged no more often than their neighbours
    # (the old 1.5-interval rule restarted every window there: all of them were)
    assert flagged[after_skip & before].mean() <= flagged[~after_skip & before].mean() + 0.1
    # a skipped second does not move the score: no jump at the rows right after one
    score = merged["score"].to_numpy()
    jump = np.abs(np.diff(score))[after_skip[1:] & before[1:]]
    assert np.isfinite(score).all() and jump.max() < np.median(merged["threshold"].to_numpy()) / 2
