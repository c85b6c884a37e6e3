"""Detectors in scikit-learn's shape, model files and versions."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from _detection_helpers import local_settings, ms, open_store, quiet_fleet, simulate
from sklearn.exceptions import NotFittedError

from itap_engine.detection.detectors import (
    IsolationForestDetector,
    RobustZDetector,
    count_k_of_n_alerts,
    sweep_threshold,
)
from itap_engine.detection.scoring import (
    ModelIntegrityError,
    ModelOutdatedError,
    NoModelError,
    load_active_model,
    score_pending,
    train_model,
)
from itap_engine.ingest.simulator import Simulator
from itap_engine.store.schema import ModelVersion, Score

DETECTORS = [RobustZDetector, lambda: IsolationForestDetector(n_estimators=50)]


def toy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    X = rng.normal(size=(300, 4))
    outliers = np.array([[8.0, -7.0, 6.0, 9.0], [-9.0, 8.0, -8.0, -7.0]])
    return np.vstack([X, outliers]), np.array([300, 301])


@pytest.mark.parametrize("make", DETECTORS)
def test_sklearn_shape(make) -> None:
    X, outliers = toy()
    detector = make()
    with pytest.raises(NotFittedError):
        detector.score_samples(X)
    assert detector.fit(X) is detector
    scores = detector.score_samples(X)
    np.testing.assert_allclose(scores, detector.decision_function(X) + detector.offset_)
    assert set(np.unique(detector.predict(X))) <= {-1, 1}
    assert set(np.argsort(scores)[:2]) == set(outliers)  # lower = more abnormal
    assert (detector.predict(X[outliers]) == -1).all()
    assert detector.n_features_in_ == 4 and hasattr(detector, "center_")
    detector.set_threshold(-scores.max() - 1)  # anomaly score threshold below every score
    assert (detector.predict(X) == -1).all()


@pytest.mark.parametrize("make", DETECTORS)
def test_missing_values_are_abnormal(make) -> None:
    X, _ = toy()
    detector = make().fit(X[:300])
    row = np.array([[0.0, np.nan, np.nan, 0.0]])
    assert detector.score_samples(row)[0] < np.percentile(detector.score_samples(X[:300]), 1)


def test_contributions_point_at_the_feature() -> None:
    X, _ = toy()
    detector = RobustZDetector().fit(X[:300])
    push = detector.contributions(np.array([[0.0, 0.0, 12.0, 0.0]]))
    assert push.shape == (1, 4) and push[0].argmax() == 2


def test_k_of_n_counter_and_sweep() -> None:
    above = np.array([0, 1, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0], dtype=bool)
    codes = np.zeros(len(above), dtype=int)
    assert count_k_of_n_alerts(above, codes, k=2, n=3, quiet=3) == 2
    assert count_k_of_n_alerts(above, codes, k=2, n=3, quiet=6) == 1
    scores = np.random.default_rng(0).normal(size=5000)
    choice = sweep_threshold(scores, np.zeros(5000, dtype=int), 10.0, k=2, n=3, quiet=12, min_percentile=99.0)
    assert choice.percentile >= 99.0 and choice.alerts_per_device_day <= 0.25
    assert choice.threshold == pytest.approx(np.percentile(scores, choice.percentile))


@pytest.fixture
def trained(tmp_path):
    settings = local_settings(tmp_path)
    store = open_store(settings)
    sim = quiet_fleet(settings, devices=3)
    store.insert_readings("industrial", simulate(sim, 0, 3))
    model = train_model(store, settings, "industrial")
    yield settings, store, sim, model
    store.close()


def test_model_version_recorded(trained) -> None:
    settings, store, _, model = trained
    with store.session() as session:
        version = session.get(ModelVersion, model.version_id)
    assert version.active and version.threshold == pytest.approx(model.threshold)
    assert json.loads(version.features) == model.feature_names
    assert version.train_start == ms(0) and version.train_end == ms(3) - 10_000
    assert version.path.startswith(str(settings.resolve(settings.paths.artifacts_dir) / "models"))
    loaded = load_active_model(store, settings, "industrial")
    assert loaded.version_id == model.version_id and loaded.feature_names == model.feature_names


def test_hash_mismatch_is_refused(trained) -> None:
    settings, store, _, model = trained
    with store.session() as session:
        path = session.get(ModelVersion, model.version_id).path
    with open(path, "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ModelIntegrityError, match="does not match the sha256") as error:
        load_active_model(store, settings, "industrial")
    assert path in str(error.value)
    with pytest.raises(ModelIntegrityError):
        score_pending(store, settings, "industrial")


def test_a_model_trained_before_the_profile_changed_is_refused_by_name(trained) -> None:
    """The review's old model (a profile that had rpm): scoring failed with a bare
    ``KeyError: 'rpm__recent'``; now one line says why and what to run."""
    settings, store, _, _model = trained
    spec = settings.profile("industrial")
    fewer = {k: v for k, v in spec.signals.items() if k != "rpm"}
    changed = settings.model_copy(
        update={"profiles": {**settings.profiles, "industrial": spec.model_copy(update={"signals": fewer})}}
    )
    with pytest.raises(ModelIntegrityError, match=r"model version 1 of industrial was trained on signals rpm, ") as e:
        load_active_model(store, changed, "industrial")
    assert str(e.value).endswith("Retrain with `itap train --profile industrial`")
    assert load_active_model(store, settings, "industrial") is not None


def test_a_model_made_by_an_older_itap_is_refused_by_name(trained, monkeypatch) -> None:
    """A model whose feature builder lists other features than this version builds (a
    database from before the ``__recent`` features): every tick failed with a bare
    ``KeyError: 'rpm__recent'``. Now loading it, and scoring with it, say in one line
    which model, how it differs and what to run."""
    from itap_engine.detection import features

    settings, store, _, _model = trained
    monkeypatch.setattr(features, "SIGNAL_KINDS", (*features.SIGNAL_KINDS, "newer"))  # this version builds one more
    with pytest.raises(
        ModelOutdatedError,
        match=r"^model version 1 of industrial was made by an older ITAP: its features differ "
        r"from this version's \(rpm__newer, temp_c__newer, vibration_g__newer and 2 more\)\. ",
    ) as error:
        load_active_model(store, settings, "industrial")
    assert str(error.value).endswith(
        "Retrain with `itap train --profile industrial` (a running engine retrains it itself)"
    )
    with pytest.raises(ModelOutdatedError):
        score_pending(store, settings, "industrial")
    monkeypatch.undo()
    assert load_active_model(store, settings, "industrial") is not None


def test_itap_train_says_the_profiles_own_version_number(tmp_path, capsys) -> None:
    """The console, --once and the events say ``industrial v1``; ``itap train`` said
    "model version 2" (the database id, counted over every profile)."""
    from itap_engine.modes import cli
    from itap_engine.modes.commands import train as train_command

    settings = local_settings(tmp_path)
    store = open_store(settings)
    try:
        aircraft = Simulator(settings, "aircraft", ["ac-001", "ac-002"])
        store.insert_readings(
            "aircraft", aircraft.generate(settings.simulation.start, settings.simulation.start + timedelta(hours=3))
        )
        store.insert_readings("industrial", simulate(quiet_fleet(settings, devices=3), 0, 3))
        train_model(store, settings, "aircraft")  # database id 1
    finally:
        store.close()
    args = cli.build_parser().parse_args(["train", "--profile", "industrial"])
    assert train_command.run(args, settings) == 0
    assert "trained industrial model v1 (" in capsys.readouterr().out
    args = cli.build_parser().parse_args(["train", "--profile", "industrial", "--json"])
    assert train_command.run(args, settings) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["version"], document["version_id"]) == (2, 3)


def test_no_model(tmp_path) -> None:
    settings = local_settings(tmp_path)
    store = open_store(settings)
    try:
        assert load_active_model(store, settings, "industrial") is None
        with pytest.raises(NoModelError, match="itap train"):
            score_pending(store, settings, "industrial")
    finally:
        store.close()


def test_retrain_new_version_old_scores_keep_theirs(trained) -> None:
    settings, store, sim, first = trained
    store.insert_readings("industrial", simulate(sim, 3, 4))
    result = score_pending(store, settings, "industrial")
    assert result.model_version_id == first.version_id and result.rows > 0
    second = train_model(store, settings, "industrial", train_until_ms=ms(4))
    assert second.version_id != first.version_id
    store.insert_readings("industrial", simulate(sim, 4, 5))
    again = score_pending(store, settings, "industrial")
    assert again.model_version_id == second.version_id and again.rows == 3 * 360
    with store.session() as session:
        versions = session.exec(__import__("sqlmodel").select(ModelVersion)).all()
        scores = session.exec(__import__("sqlmodel").select(Score)).all()
    assert [v.active for v in sorted(versions, key=lambda v: v.id)] == [False, True]
    early = {s.model_version_id for s in scores if s.ts < ms(4)}
    late = {s.model_version_id for s in scores if s.ts >= ms(4)}
    assert early == {first.version_id} and late == {second.version_id}
    assert score_pending(store, settings, "industrial").rows == 0  # watermark advanced
