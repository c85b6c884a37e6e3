"""StreamingScorer: tick-by-tick scores equal one batch score, late readings included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _detection_helpers import local_settings, open_store, quiet_fleet, simulate

from itap_engine.detection.scoring import StreamingScorer, score_features, train_model

LEVELS = ["rpm__level", "temp_c__level", "vibration_g__level", "current_a__level", "voltage_v__level"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scoring")
    settings = local_settings(tmp)
    store = open_store(settings)
    sim = quiet_fleet(settings, devices=3, fault_rate=4.0)
    history = simulate(sim, 0, 6)
    store.insert_readings("industrial", history)
    model = train_model(store, settings, "industrial")
    later = simulate(sim, 6, 8)
    store.close()
    return settings, model, history, later


def _scorer(trained) -> StreamingScorer:
    settings, model, history, _ = trained
    scorer = StreamingScorer(settings, "industrial", model)
    scorer.warm_up(history)
    return scorer


def _stamps(frame: pd.DataFrame) -> np.ndarray:
    return np.sort(frame["ts"].unique())


def test_tick_by_tick_equals_one_batch(trained) -> None:
    later = trained[3]
    batch = _scorer(trained).score(later)  # every row new: the batch pass
    streaming = _scorer(trained)
    stamps = _stamps(later)
    ticks = [later[later["ts"].isin(stamps[i : i + 3])] for i in range(0, len(stamps), 3)]
    streamed = pd.concat([streaming.score(tick) for tick in ticks], ignore_index=True)
    streamed = streamed.sort_values(["device_id", "ts"]).reset_index(drop=True)
    assert len(streamed) == len(batch) == len(later)
    np.testing.assert_array_equal(streamed["ts"].to_numpy(), batch["ts"].to_numpy())
    np.testing.assert_allclose(streamed["score"].to_numpy(), batch["score"].to_numpy(), rtol=1e-9, atol=1e-9)
    assert (streamed["is_anomalous"].to_numpy() == batch["is_anomalous"].to_numpy()).all()
    assert batch["is_anomalous"].any(), "faults were simulated: some readings should score anomalous"


def test_streamed_scores_equal_a_batch_pass_over_the_whole_history(trained) -> None:
    """Independent of the scorer: one FeatureBuilder.transform over history + stream."""
    _, model, history, later = trained
    streaming = _scorer(trained)
    stamps = _stamps(later)
    streamed = (
        pd.concat(
            [streaming.score(later[later["ts"].isin(stamps[i : i + 5])]) for i in range(0, len(stamps), 5)],
            ignore_index=True,
        )
        .sort_values(["device_id", "ts"])
        .reset_index(drop=True)
    )
    full = pd.concat([history, later]).sort_values(["device_id", "ts"], kind="stable").reset_index(drop=True)
    batch = score_features(model, model.features.transform(full))
    batch = batch[batch["ts"] > history["ts"].max()].reset_index(drop=True)
    np.testing.assert_array_equal(streamed["ts"].to_numpy(), batch["ts"].to_numpy())
    np.testing.assert_allclose(streamed["score"].to_numpy(), batch["score"].to_numpy(), rtol=1e-9, atol=1e-9)


def test_training_does_not_depend_on_the_order_the_database_returns(trained, tmp_path, monkeypatch) -> None:
    """A database collation may order device ids differently from Python: the masks
    that pick training and validation rows must follow the features' order."""
    _settings, model, history, _ = trained
    local = local_settings(tmp_path)
    store = open_store(local)
    try:
        store.insert_readings("industrial", history)
        read = store.read_readings

        def reversed_devices(*args, **kwargs):
            frame = read(*args, **kwargs)
            return frame.sort_values(["device_id", "ts"], ascending=[False, True], kind="stable").reset_index(drop=True)

        monkeypatch.setattr(store, "read_readings", reversed_devices)
        again = train_model(store, local, "industrial")
    finally:
        store.close()
    assert again.threshold == pytest.approx(model.threshold, rel=1e-9)


def test_late_readings_restandardise_what_follows_them(trained) -> None:
    """A reading's level depends on the states before it. Readings that arrive late,
    before a state change that was already buffered, must change the buffered levels
    after them to what a batch pass over the complete history gives."""
    _settings, model, history, later = trained
    scorer = _scorer(trained)
    rows = later[later["device_id"] == later["device_id"].iloc[0]]
    states = rows["state"].to_numpy()
    change = np.flatnonzero(states[1:] != states[:-1]) + 1
    change = change[change >= 6]
    assert len(change), "the simulated device should change state within two hours"
    # end the stream 60 readings after the change, so the scorer still holds it
    later = later[later["ts"] <= rows["ts"].iloc[change[0] + 60]]
    late = later.index.isin(rows.index[change[0] - 6 : change[0]])  # the six readings before it

    scorer.score(later[~late])
    scorer.score(later[late])

    full = pd.concat([history, later]).sort_values(["device_id", "ts"], kind="stable").reset_index(drop=True)
    full = full[["device_id", "ts", "state", *scorer.columns[3:]]]
    expected = pd.DataFrame(model.features.levels(full), columns=LEVELS)
    expected[["device_id", "ts"]] = full[["device_id", "ts"]]
    buffered = scorer._flat()[["device_id", "ts", *LEVELS]].astype({"device_id": str})
    merged = buffered.merge(expected.astype({"device_id": str}), on=["device_id", "ts"], suffixes=("", "_batch"))
    assert len(merged) == len(buffered)
    for name in LEVELS:
        np.testing.assert_allclose(merged[name], merged[f"{name}_batch"], rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("slack", [32, 3], ids=["spare-rows", "rows-moved-back"])
def test_live_ticks_of_one_reading_equal_the_general_path_and_one_batch_pass(trained, slack, monkeypatch) -> None:
    """The live case: one reading per device per tick goes through the dense windows
    (detection/windows.py). Mixed in: a tick without one device, a device's gap in
    time, a tick with two readings of every device and a late reading (the general
    path), and the windows rebuilt after them. Every score equals the general path's
    (a scorer without dense windows) and, except the two readings scored before the
    late one arrived, one batch pass over the whole history; most ticks were dense."""
    from itap_engine.detection import windows

    monkeypatch.setattr(windows, "_SLACK", slack)  # 3: the windows run out of spare rows every 3 ticks
    _, model, history, later = trained
    stamps = _stamps(later)[:90]
    devices = sorted(later["device_id"].unique())
    ticks = []
    for i, stamp in enumerate(stamps):
        tick = later[later["ts"] == stamp]
        if i == 10:  # one device silent this tick
            tick = tick[tick["device_id"] != devices[0]]
        if 30 <= i < 50:  # a gap in time: twenty readings never sent
            tick = tick[tick["device_id"] != devices[1]]
        ticks.append(tick)
    # the reading device 0 missed at tick 10 arrives late, after tick 12
    ticks.insert(13, later[(later["ts"] == stamps[10]) & (later["device_id"] == devices[0])])
    ticks[60] = pd.concat([ticks[60], ticks[61]])  # two readings of every device in one tick
    del ticks[61]
    sent = pd.concat(ticks)

    def stream(dense: bool) -> tuple[pd.DataFrame, int]:
        scorer = _scorer(trained)
        scorer._dense = dense
        took = 0
        parts = []
        for tick in ticks:
            was = scorer._windows is not None
            parts.append(scorer.score(tick))
            took += was and scorer._windows is not None
        return pd.concat(parts).sort_values(["device_id", "ts"]).reset_index(drop=True), took

    streamed, dense_ticks = stream(True)
    general, _ = stream(False)
    assert dense_ticks >= 80, f"only {dense_ticks} of {len(ticks)} ticks took the dense path"
    np.testing.assert_array_equal(streamed["ts"].to_numpy(), general["ts"].to_numpy())
    np.testing.assert_allclose(streamed["score"].to_numpy(), general["score"].to_numpy(), rtol=1e-9, atol=1e-9)
    assert (streamed["is_anomalous"].to_numpy() == general["is_anomalous"].to_numpy()).all()

    full = pd.concat([history, sent]).sort_values(["device_id", "ts"], kind="stable").reset_index(drop=True)
    batch = score_features(model, model.features.transform(full))
    batch = batch[batch["ts"] > history["ts"].max()].reset_index(drop=True)
    assert len(streamed) == len(batch) == len(sent)
    before_late = (streamed["device_id"] == devices[0]) & streamed["ts"].isin(stamps[11:13])
    np.testing.assert_array_equal(streamed["ts"].to_numpy(), batch["ts"].to_numpy())
    np.testing.assert_allclose(
        streamed["score"][~before_late].to_numpy(), batch["score"][~before_late].to_numpy(), rtol=1e-9, atol=1e-9
    )
