"""Typed settings read from ``config.toml``.

The whole product is driven by one :class:`Settings` object, built once at start
and passed down. Profiles (asset types) live in the config file, not in code, so a
user adds a new kind of machine by editing TOML. Every model forbids unknown keys,
and a bad file is reported as one line naming the key path, what was wrong and what
is allowed (:class:`ConfigError`).

Lookup order: ``--config``, ``$ITAP_CONFIG``, ``./config.toml``,
``~/.config/itap/config.toml``, then the copy shipped in this package. Relative paths
resolve against the folder of the file that was read. ``$ITAP_DB_URL`` overrides
``[database].url``.
"""

from __future__ import annotations

import os
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from itap_engine.errors import ItapError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PACKAGED_CONFIG = Path(__file__).with_name("default_config.toml")
FaultKind = Literal["drift", "step", "spike", "dropout", "noise"]


class ConfigError(ItapError):
    """A configuration file could not be read or is not valid; the message is one line."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignalSpec(_Model):
    """One measured quantity of a profile."""

    unit: str = ""
    """Unit shown next to values."""
    baseline: float
    """Typical value while running."""
    noise: float = Field(ge=0)
    """Standard deviation of the measurement noise."""
    daily_amplitude: float = Field(default=0.0, ge=0)
    """Amplitude of the daily cycle."""
    range: tuple[float, float]
    """Valid (min, max); readings outside are quarantined."""
    family: str = "other"
    """Sensor family used to explain alerts (thermal, mechanical, electrical, ...)."""

    @field_validator("range")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] >= value[1]:
            raise ValueError("must be [min, max] with min < max")
        return value


class StateSpec(_Model):
    """An operating state and how it scales each signal's baseline."""

    weight: float = Field(gt=0)
    """Relative frequency of the state."""
    effects: dict[str, float] = {}
    """signal -> factor applied to its baseline while in this state."""


class FaultEffect(_Model):
    signal: str
    kind: FaultKind
    magnitude: float
    """In the signal's units (drift: value reached at the end of the fault)."""


class FaultSpec(_Model):
    """An entry of a profile's fault catalogue."""

    onset: Literal["gradual", "abrupt"]
    duration_s: tuple[int, int]
    """Range of durations drawn for random faults."""
    weight: float = Field(default=1.0, ge=0)
    """Relative frequency among random faults."""
    effects: list[FaultEffect]

    @field_validator("duration_s")
    @classmethod
    def _positive(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 0 < value[0] <= value[1]:
            raise ValueError("must be [min, max] seconds with 0 < min <= max")
        return value


class ProfileSpec(_Model):
    """An asset type: signals, operating states and faults."""

    description: str = ""
    key_signals: list[str] = []
    """Signals shown in the fleet table."""
    signals: dict[str, SignalSpec]
    states: dict[str, StateSpec]
    faults: dict[str, FaultSpec] = {}

    @model_validator(mode="after")
    def _references(self) -> ProfileSpec:
        if not self.signals:
            raise ValueError("a profile needs at least one signal")
        if not self.states:
            raise ValueError("a profile needs at least one state")
        known = set(self.signals)
        for name in self.key_signals:
            if name not in known:
                raise ValueError(f"key_signals names unknown signal {name!r}; known: {sorted(known)}")
        for state, spec in self.states.items():
            for name in spec.effects:
                if name not in known:
                    raise ValueError(f"state {state} effects unknown signal {name!r}")
        for fault, spec in self.faults.items():
            for effect in spec.effects:
                if effect.signal not in known:
                    raise ValueError(f"fault {fault} affects unknown signal {effect.signal!r}")
        return self

    @property
    def signal_names(self) -> list[str]:
        return list(self.signals)

    def families(self) -> dict[str, str]:
        return {name: spec.family for name, spec in self.signals.items()}


class DatabaseSettings(_Model):
    url: str = "sqlite:///data/itap.db"
    """SQLAlchemy URL; a relative SQLite path resolves against the config folder."""
    busy_timeout_ms: int = Field(default=10000, ge=0)
    batch_rows: int = Field(default=50000, ge=1)


class PathSettings(_Model):
    data_dir: Path = Path("data")
    artifacts_dir: Path = Path("artifacts")
    inbox_dir: Path = Path("data/inbox")
    log_file: Path = Path("data/itap.log")


class FleetGroup(_Model):
    profile: str
    devices: int = Field(ge=0)
    prefix: str
    sites: list[str] = ["site-1"]

    def device_ids(self) -> list[str]:
        return [f"{self.prefix}-{i:03d}" for i in range(1, self.devices + 1)]


class SimulationSettings(_Model):
    start: datetime = datetime(2026, 1, 1)
    freq_s: int = Field(default=10, ge=1)
    seed: int = 7
    fault_rate_per_device_day: float = Field(default=1.0, ge=0)
    state_dwell_s: int = Field(default=1800, ge=1)
    fleet: list[FleetGroup] = []


class ValidationSettings(_Model):
    max_future_s: int = Field(default=3600, ge=0)
    missing_rate_alert: float = Field(default=0.2, ge=0, le=1)
    report_examples: int = Field(default=20, ge=0)


class FeatureSettings(_Model):
    window: int = Field(default=12, ge=2)
    long_window: int = Field(default=120, ge=2)
    fft_window: int = Field(default=16, ge=4)
    gap_factor: float = Field(default=5.0, gt=1)


class DetectionSettings(_Model):
    detector: Literal["iforest", "robust_z", "shift", "pca", "drift", "ensemble"] = "iforest"
    ensemble: list[Literal["iforest", "robust_z", "shift", "pca", "drift"]] = ["robust_z", "shift", "pca", "drift"]
    n_estimators: int = Field(default=200, ge=10)
    threshold_percentile: float = Field(default=99.5, gt=50, lt=100)
    threshold_method: Literal["pot", "conformal", "sweep"] = "pot"
    false_alarms_per_device_day: float = Field(default=0.5, gt=0)
    bootstrap_hours: float = Field(default=6, gt=0)


class AlertSettings(_Model):
    k: int = Field(default=2, ge=1)
    n: int = Field(default=3, ge=1)
    quiet_readings: int = Field(default=12, ge=1)
    quiet_seconds: float | None = Field(default=None, gt=0)
    critical_ratio: float = Field(default=1.5, gt=1)

    @model_validator(mode="after")
    def _k_le_n(self) -> AlertSettings:
        if self.k > self.n:
            raise ValueError("k must be <= n")
        return self


class EngineSettings(_Model):
    tick_seconds: float = Field(default=1.0, gt=0)
    sim_speed: float = Field(default=10.0, gt=0)
    retrain_minutes: float = Field(default=60, gt=0)
    housekeeping_minutes: float = Field(default=10, gt=0)
    retention_hours: float = Field(default=72, gt=0)
    retention_hours_imported: float = Field(default=0, ge=0)


class ImportSettings(_Model):
    sep: str = ","
    timestamp_column: str = "ts"
    device_column: str = "device_id"
    chunk_rows: int = Field(default=50000, ge=1)
    columns: dict[str, str] = {}
    """CSV column -> signal name, for files whose headers differ from the profile."""


class Settings(_Model):
    """Everything ITAP reads from config.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    database: DatabaseSettings = DatabaseSettings()
    paths: PathSettings = PathSettings()
    simulation: SimulationSettings = SimulationSettings()
    validation: ValidationSettings = ValidationSettings()
    features: FeatureSettings = FeatureSettings()
    detection: DetectionSettings = DetectionSettings()
    alerts: AlertSettings = AlertSettings()
    engine: EngineSettings = EngineSettings()
    import_: ImportSettings = Field(default=ImportSettings(), alias="import")
    profiles: dict[str, ProfileSpec] = {}

    source: Path | None = Field(default=None, exclude=True)
    """The file these settings were read from (set by :func:`load_settings`)."""

    @model_validator(mode="after")
    def _fleet_profiles(self) -> Settings:
        for group in self.simulation.fleet:
            if group.profile not in self.profiles:
                raise ValueError(
                    f"simulation.fleet names unknown profile {group.profile!r}; "
                    f"declared: {sorted(self.profiles)}"
                )
        return self

    def profile(self, name: str) -> ProfileSpec:
        try:
            return self.profiles[name]
        except KeyError:
            raise ConfigError(
                f"unknown profile {name!r}; declared in config: {', '.join(sorted(self.profiles))}"
            ) from None

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    def resolve(self, path: Path | str) -> Path:
        """A configured path, made absolute against the config file's folder."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    @property
    def database_url(self) -> str:
        """The database URL after ``$ITAP_DB_URL`` and relative SQLite paths are applied."""
        url = os.environ.get("ITAP_DB_URL") or self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            url = prefix + str(self.resolve(url[len(prefix):]))
        return url

    def with_overrides(self, **sections: Any) -> Settings:
        """A copy with some sections' fields replaced: ``with_overrides(simulation={"seed": 3})``."""
        data = self.model_dump(by_alias=True)
        for section, values in sections.items():
            key = "import" if section == "import_" else section
            data[key] = {**data.get(key, {}), **values}
        return parse_settings(data, self.source)


def _format_error(error: ValidationError, source: Path | None) -> str:
    first = error.errors()[0]
    loc = ".".join(str(part) for part in first["loc"] if part not in ("function-after",))
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key (check its spelling; unknown keys are not allowed)"
    elif first["type"] == "missing":
        message = "required key is missing"
    where = f"{source}: " if source else ""
    extra = f" (and {len(error.errors()) - 1} more problems)" if len(error.errors()) > 1 else ""
    return f"{where}{loc or '<top>'}: {message}{extra}"


def parse_settings(data: dict[str, Any], source: Path | None = None) -> Settings:
    """Validate a parsed TOML document into :class:`Settings`.

    Raises:
        ConfigError: naming the key path, the problem and what is allowed.
    """
    try:
        settings = Settings.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_error(error, source)) from None
    return settings.model_copy(update={"source": source})


def find_config(explicit: str | Path | None = None) -> Path:
    """The config file to read, following the documented lookup order."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path.resolve()
    env = os.environ.get("ITAP_CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: config file named by ITAP_CONFIG not found")
        return path.resolve()
    for candidate in (Path.cwd() / "config.toml", Path.home() / ".config" / "itap" / "config.toml"):
        if candidate.is_file():
            return candidate.resolve()
    return PACKAGED_CONFIG


def load_settings(path: str | Path | None = None) -> Settings:
    """Read and validate the config file found by :func:`find_config`.

    The packaged default keeps its data in ``~/.local/share/itap`` rather than inside
    the installed package.
    """
    source = find_config(path)
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"{source}: cannot read: {error.strerror}") from None
    settings = parse_settings(data, source)
    if source == PACKAGED_CONFIG:
        home = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "itap"
        settings = settings.model_copy(update={"source": home / "config.toml"})
    return settings
