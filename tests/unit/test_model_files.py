"""Model files cannot run code: arrays + JSON, hashed and loaded from the same bytes."""

from __future__ import annotations

import io
import json
import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from _detection_helpers import local_settings, open_store, quiet_fleet, simulate

from itap_engine.detection import model_files
from itap_engine.detection.detectors import IsolationForestDetector, RobustZDetector
from itap_engine.detection.scoring import ModelIntegrityError, load_model_version, score_features, train_model
from itap_engine.store.schema import ModelVersion


class _Payload:
    """Unpickling this creates ``marker``: proof that a model file ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def pickle_bytes(marker: Path) -> bytes:
    return pickle.dumps({"detector": _Payload(marker)})


@pytest.fixture(params=["robust_z", "iforest"])
def trained(request, tmp_path):
    settings = local_settings(tmp_path, detection={"detector": request.param, "n_estimators": 20})
    store = open_store(settings)
    sim = quiet_fleet(settings, devices=3)
    frame = simulate(sim, 0, 3)
    store.insert_readings("industrial", frame)
    model = train_model(store, settings, "industrial")
    yield settings, store, model, frame
    store.close()


def _version(store, version_id: int) -> ModelVersion:
    with store.session() as session:
        return session.get(ModelVersion, version_id)


def test_a_model_file_is_arrays_and_json_and_loads_to_the_same_scores(trained) -> None:
    _, store, model, frame = trained
    path = Path(_version(store, model.version_id).path)
    assert path.suffix == ".npz"
    with np.load(path, allow_pickle=False) as archive:  # no pickle anywhere in it
        assert all(archive[name].dtype != object for name in archive.files)
        manifest = json.loads(archive["manifest"].tobytes())
    assert manifest["format"] == model_files.FORMAT
    loaded = load_model_version(store, model.version_id)
    assert type(loaded.detector) is type(model.detector) and type(loaded.features) is type(model.features)
    feats = model.features.transform(frame)
    np.testing.assert_array_equal(
        score_features(model, feats)["score"].to_numpy(), score_features(loaded, feats)["score"].to_numpy()
    )


def test_a_pickle_in_place_of_the_model_is_refused_and_never_runs(trained, tmp_path) -> None:
    _, store, model, _ = trained
    version = _version(store, model.version_id)
    marker = tmp_path / "pwned"
    payload = pickle_bytes(marker)
    Path(version.path).write_bytes(payload)
    with pytest.raises(ModelIntegrityError, match="does not match the sha256"):
        load_model_version(store, model.version_id)
    # even with the database's hash forged to match, the format loads no pickle
    import hashlib

    with store.engine.begin() as conn:
        conn.execute(
            sa.update(ModelVersion)
            .where(ModelVersion.id == model.version_id)  # type: ignore[arg-type]
            .values(sha256=hashlib.sha256(payload).hexdigest())
        )
    with pytest.raises(ModelIntegrityError, match="cannot be loaded safely"):
        load_model_version(store, model.version_id)
    assert not marker.exists()


def test_swapping_the_file_while_loading_never_runs_code(trained, tmp_path) -> None:
    """A thread swaps the model file for a pickle and back while the main thread loads:
    every load gives the real model or a refusal, and the payload never runs."""
    _, store, model, _ = trained
    path = Path(_version(store, model.version_id).path)
    good = path.read_bytes()
    marker = tmp_path / "pwned"
    bad = pickle_bytes(marker)
    stop = threading.Event()

    def swap() -> None:
        i = 0
        while not stop.is_set():
            tmp = path.with_name(f".swap{i % 2}")
            tmp.write_bytes(bad if i % 2 else good)
            os.replace(tmp, path)
            i += 1

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    loaded = refused = 0
    try:
        for _ in range(2000):  # until both outcomes were seen a few times
            try:
                assert load_model_version(store, model.version_id).threshold == model.threshold
                loaded += 1
            except ModelIntegrityError:
                refused += 1
            if loaded >= 10 and refused >= 10:
                break
    finally:
        stop.set()
        swapper.join()
    assert refused > 0  # the swap raced the loads
    assert not marker.exists()


def test_an_npz_holding_a_pickled_object_array_is_refused(tmp_path) -> None:
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    manifest = json.dumps({"format": model_files.FORMAT, "bundle": {"$dict": {"x": {"$array": "a0"}}}})
    np.savez(buffer, a0=np.array([_Payload(marker)], dtype=object), manifest=np.frombuffer(manifest.encode(), np.uint8))
    with pytest.raises(model_files.ModelFileError):
        model_files.decode_model(buffer.getvalue())
    assert not marker.exists()


def test_only_allow_listed_classes_are_rebuilt() -> None:
    manifest = {
        "format": model_files.FORMAT,
        "bundle": {"$dict": {"d": {"$object": "os.system", "state": {"$dict": {"custom": "touch /tmp/x"}}}}},
    }
    buffer = io.BytesIO()
    np.savez(buffer, manifest=np.frombuffer(json.dumps(manifest).encode(), np.uint8))
    with pytest.raises(model_files.ModelFileError, match="not allowed"):
        model_files.decode_model(buffer.getvalue())


class _Toy:
    """A detector as a colleague might add one: params, fitted arrays, numbers, names."""

    def __init__(self, *, alpha: float = 0.5, names: tuple[str, ...] = ()) -> None:
        self.alpha = alpha
        self.names = names

    def get_params(self, deep: bool = False) -> dict:
        return {"alpha": self.alpha, "names": self.names}

    def fit(self, X: np.ndarray) -> _Toy:
        self.mean_ = X.mean(axis=0)
        self.limit_ = float("inf")
        self.count_ = np.int64(len(X))
        self.labels_ = ["a", "b"]
        self.per_device_ = {"pump-001": np.eye(2)}
        self._cache = np.arange(3)
        return self


class _Custom:
    def __init__(self, weights: np.ndarray) -> None:
        self.weights = weights

    def get_state(self) -> dict:
        return {"w": self.weights}

    @classmethod
    def from_state(cls, state: dict) -> _Custom:
        return cls(state["w"])


def test_any_registered_detector_round_trips_its_fitted_state() -> None:
    model_files.register(_Toy)
    model_files.register(_Custom)
    toy = _Toy(alpha=2.0, names=("x", "y")).fit(np.arange(6.0).reshape(3, 2))
    bundle = {"detector": toy, "custom": _Custom(np.ones(4)), "sklearn": RobustZDetector().fit(np.eye(5))}
    back = model_files.decode_model(model_files.encode_model(bundle))
    copy = back["detector"]
    assert isinstance(copy, _Toy) and copy.alpha == 2.0 and copy.names == ("x", "y")
    np.testing.assert_array_equal(copy.mean_, toy.mean_)
    assert copy.limit_ == float("inf") and copy.count_ == 3 and copy.labels_ == ["a", "b"]
    np.testing.assert_array_equal(copy.per_device_["pump-001"], np.eye(2))
    np.testing.assert_array_equal(copy._cache, np.arange(3))
    np.testing.assert_array_equal(back["custom"].weights, np.ones(4))
    np.testing.assert_array_equal(back["sklearn"].center_, bundle["sklearn"].center_)


def test_an_attribute_of_an_unsupported_type_fails_at_save_time_naming_it() -> None:
    model_files.register(_Toy)
    toy = _Toy().fit(np.ones((2, 2)))
    toy.callback_ = print
    with pytest.raises(model_files.ModelFileError, match="callback_"):
        model_files.encode_model({"detector": toy})


def test_isolation_forest_round_trips_through_skops() -> None:
    X = np.random.default_rng(0).normal(size=(300, 3))
    detector = IsolationForestDetector(n_estimators=20).fit(X)
    back = model_files.decode_model(model_files.encode_model({"d": detector}))["d"]
    np.testing.assert_array_equal(back.score_samples(X), detector.score_samples(X))


def test_model_files_written_before_the_detectors_package_still_name_loadable_classes() -> None:
    """Model files name classes by dotted path; the detectors moved from detectors.py and
    charts.py into one module each, and the old names still resolve."""
    from itap_engine.detection.detectors import DETECTORS, ShiftDetector
    from itap_engine.detection.model_files import registry

    known = registry()
    assert known["itap_engine.detection.charts.ShiftDetector"] is ShiftDetector
    assert known["itap_engine.detection.detectors.RobustZDetector"] is DETECTORS["robust_z"]
    assert known["itap_engine.detection.detectors.shift.ShiftDetector"] is ShiftDetector
