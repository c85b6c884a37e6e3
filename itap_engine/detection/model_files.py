"""Model files that cannot run code: numpy arrays plus a JSON manifest, in one ``.npz``.

Why it is built this way:

* **No pickle.** A pickle (``joblib.load``) runs whatever code the file names, so a
  model file swapped between its hash check and its load could take the machine.
  Here a model file is an ``.npz`` archive read with ``np.load(allow_pickle=False)``:
  plain arrays and one ``manifest`` (JSON bytes). Nothing in it can name a function
  to call.
* **Hash what is loaded.** :func:`read_model_file` reads the file's bytes once,
  hashes them, and decodes those same in-memory bytes: swapping the file after the
  hash changes nothing that is loaded.
* **Allow-listed classes only.** An object in the manifest is rebuilt only if its
  class is in :func:`registry`: the feature builder and every detector of
  :data:`itap_engine.detection.detectors.DETECTORS` (plus any class passed to :func:`register`).
  A scikit-learn estimator held inside a detector (IsolationForest's trees) is
  stored with ``skops.io``, which rebuilds only trusted types
  (:data:`SKOPS_TRUSTED` beyond its own defaults) and never unpickles.
* **Generic state.** A class declares its state with ``get_state() -> dict`` and
  ``from_state(state) -> instance`` (a classmethod) if it wants to; otherwise its
  state is ``get_params(deep=False)`` (the constructor's keywords) plus every other
  instance attribute (the fitted ``name_`` attributes and private caches such as
  ``_weights``). Values may be None, bool, int, float (NaN and infinities too),
  str, numpy arrays of numbers, booleans or strings, lists, tuples, dicts with
  string keys, registered objects and scikit-learn estimators. Anything else fails
  at save time, naming the attribute, so a new detector cannot ship an unloadable
  model.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from itap_engine.errors import ItapError

__all__ = [
    "FORMAT",
    "ModelFileError",
    "decode_model",
    "encode_model",
    "from_state",
    "get_state",
    "read_model_file",
    "register",
    "registry",
    "write_model_file",
]

FORMAT = "itap.model/2"
MANIFEST = "manifest"
SUFFIX = ".npz"
SKOPS_TRUSTED = ["sklearn.tree._tree.Tree"]
"""Types skops may rebuild beyond its own trusted defaults (numpy, builtins, scikit-learn
estimators): an IsolationForest's fitted trees."""
_EXTRA: set[type] = set()


class ModelFileError(ItapError):
    """A model could not be written or read in the safe format; the message is one line."""


def register(cls: type) -> type:
    """Allow ``cls`` in model files (a class decorator; detectors in DETECTORS need not)."""
    _EXTRA.add(cls)
    return cls


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def registry() -> dict[str, type]:
    """Classes a model file may rebuild, by their dotted name."""
    from itap_engine.detection.detectors import DETECTORS, LEGACY_NAMES
    from itap_engine.detection.features import FeatureBuilder

    classes = {FeatureBuilder, *(_resolve(d) for d in DETECTORS.values()), *_EXTRA}
    return {**LEGACY_NAMES, **{_name(cls): cls for cls in classes}}


def _resolve(entry: type | str) -> type:
    """A registry entry: a class, or the dotted name of one (kept as text to avoid an import cycle)."""
    if not isinstance(entry, str):
        return entry
    module, _, name = entry.rpartition(".")
    return getattr(importlib.import_module(module), name)


# ---------------------------------------------------------------------- state
def get_state(obj: Any) -> dict[str, Any]:
    """``obj.get_state()`` if it has one, else ``{"params": ..., "attributes": ...}``."""
    custom = getattr(obj, "get_state", None)
    if callable(custom):
        return {"custom": custom()}
    params = obj.get_params(deep=False) if hasattr(obj, "get_params") else {}
    attributes = {k: v for k, v in vars(obj).items() if k not in params}
    return {"params": params, "attributes": attributes}


def from_state(cls: type, state: dict[str, Any]) -> Any:
    """Rebuild an instance of ``cls`` from :func:`get_state`'s output."""
    if "custom" in state:
        return cls.from_state(state["custom"])  # type: ignore[attr-defined]
    obj = cls(**state["params"])
    for key, value in state["attributes"].items():
        if key.startswith("__"):
            raise ModelFileError(f"model file sets a reserved attribute {key!r} of {_name(cls)}")
        object.__setattr__(obj, key, value)
    return obj


# ---------------------------------------------------------------------- encoding
class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.classes = {cls: name for name, cls in registry().items()}

    def _add(self, array: np.ndarray) -> str:
        key = f"a{len(self.arrays)}"
        self.arrays[key] = array
        return key

    def encode(self, value: Any, where: str) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return str(value) if isinstance(value, str) else value
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            number = float(value)
            return number if math.isfinite(number) else {"$float": repr(number)}
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                if not all(isinstance(item, str) for item in value.flat):
                    raise ModelFileError(f"cannot store {where}: an object array that is not all strings")
                return {"$array": self._add(value.astype(str)), "object": True}
            if value.dtype.kind not in "biufcUSMm":
                raise ModelFileError(f"cannot store {where}: arrays of dtype {value.dtype} are not allowed")
            return {"$array": self._add(np.ascontiguousarray(value))}
        if isinstance(value, list):
            return [self.encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
        if isinstance(value, tuple):
            return {"$tuple": [self.encode(item, f"{where}[{i}]") for i, item in enumerate(value)]}
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str):
                    raise ModelFileError(f"cannot store {where}: dict keys must be strings, found {type(key).__name__}")
            return {"$dict": {key: self.encode(item, f"{where}.{key}") for key, item in value.items()}}
        name = self.classes.get(type(value))
        if name is not None:
            return {"$object": name, "state": self.encode(get_state(value), f"{where}<{type(value).__name__}>")}
        if type(value).__module__.split(".")[0] == "sklearn":
            import skops.io

            blob = skops.io.dumps(value)
            return {"$skops": self._add(np.frombuffer(blob, dtype=np.uint8))}
        raise ModelFileError(
            f"cannot store {where}: values of type {type(value).__module__}.{type(value).__qualname__} are not "
            "allowed in model files; give the class get_state()/from_state() or store arrays and numbers"
        )


def encode_model(bundle: dict[str, Any]) -> bytes:
    """The bytes of a model file holding ``bundle`` (a dict with string keys)."""
    encoder = _Encoder()
    manifest = {"format": FORMAT, "bundle": encoder.encode(bundle, "model")}
    arrays = dict(encoder.arrays)
    arrays[MANIFEST] = np.frombuffer(json.dumps(manifest, allow_nan=False).encode("utf-8"), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


class _Decoder:
    def __init__(self, archive: Any) -> None:
        self.archive = archive
        self.classes = registry()

    def _array(self, key: Any) -> np.ndarray:
        if not isinstance(key, str) or key == MANIFEST or key not in self.archive.files:
            raise ModelFileError(f"model file refers to a missing array {key!r}")
        return self.archive[key]

    def decode(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self.decode(item) for item in value]
        if not isinstance(value, dict) or len(value) not in (1, 2):
            raise ModelFileError("model file manifest holds an unexpected value")
        if "$float" in value:
            text = value["$float"]
            if text not in ("nan", "inf", "-inf"):
                raise ModelFileError(f"model file manifest holds a bad number {text!r}")
            return float(text)
        if "$array" in value:
            array = self._array(value["$array"])
            return array.astype(object) if value.get("object") else array
        if "$tuple" in value:
            return tuple(self.decode(item) for item in value["$tuple"])
        if "$dict" in value:
            return {str(key): self.decode(item) for key, item in value["$dict"].items()}
        if "$object" in value:
            cls = self.classes.get(value["$object"])
            if cls is None:
                raise ModelFileError(f"model file names class {value['$object']!r}, which is not allowed")
            return from_state(cls, self.decode(value["state"]))
        if "$skops" in value:
            import skops.io

            try:
                return skops.io.loads(self._array(value["$skops"]).tobytes(), trusted=SKOPS_TRUSTED)
            except Exception as error:
                raise ModelFileError(f"model file holds an estimator skops refuses: {error}") from None
        raise ModelFileError("model file manifest holds an unknown tag")


def decode_model(data: bytes) -> dict[str, Any]:
    """The bundle in a model file's bytes; never runs code from them.

    Raises:
        ModelFileError: the bytes are not a model file of this format.
    """
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ModelFileError(f"not a model file of format {FORMAT} ({_first_line(error)})") from None
    if not hasattr(archive, "files") or MANIFEST not in archive.files:
        raise ModelFileError(f"not a model file of format {FORMAT} (no manifest)")
    try:
        with archive:
            manifest = json.loads(archive[MANIFEST].tobytes().decode("utf-8"))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise ModelFileError(f"model file format is not {FORMAT}")
            bundle = _Decoder(archive).decode(manifest.get("bundle"))
    except ModelFileError:
        raise
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as error:
        raise ModelFileError(f"model file is damaged ({type(error).__name__}: {_first_line(error)})") from None
    if not isinstance(bundle, dict):
        raise ModelFileError("model file holds no model")
    return bundle


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


# ---------------------------------------------------------------------- files
def write_model_file(path: Path, bundle: dict[str, Any]) -> str:
    """Write ``bundle`` to ``path`` atomically; returns the sha256 of the bytes written."""
    data = encode_model(bundle)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return hashlib.sha256(data).hexdigest()


def read_model_file(path: Path) -> tuple[str, bytes]:
    """``(sha256, bytes)`` of a model file, read once: decode these bytes, not the file."""
    data = Path(path).read_bytes()
    return hashlib.sha256(data).hexdigest(), data
