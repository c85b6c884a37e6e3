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
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from itap_engine.errors import ItapError

PACKAGED_CONFIG = Path(__file__).with_name("default_config.toml")
FaultKind = Literal["drift", "step", "spike", "dropout", "noise"]


class ConfigError(ItapError):
    """A configuration file could not be read or is not valid; the message is one line."""


class _Model(BaseModel):
    # strict: `devices = "20"` or `sim_speed = true` are refused, not coerced; no NaN or
    # infinity (TOML has both literals): every number is finite and bounded below
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _as_path(value: Any) -> Any:
    return Path(value) if isinstance(value, str) else value


def _as_datetime(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


# TOML has no tuples and writes paths and (quoted) times as strings: these turn exactly
# those into the field's type before strict validation; anything else is still refused
StrictPath = Annotated[Path, BeforeValidator(_as_path)]
StrictDatetime = Annotated[datetime, BeforeValidator(_as_datetime)]
FloatPair = Annotated[tuple[float, float], BeforeValidator(_as_tuple)]
IntPair = Annotated[tuple[int, int], BeforeValidator(_as_tuple)]
MAX_DAY_S = 86_400
MAX_YEAR_H = 366 * 24


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
    range: FloatPair
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
    duration_s: IntPair
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
        for fault, spec in self.faults.items():  # type: ignore[assignment]
            for effect in spec.effects:
                if effect.signal not in known:  # type: ignore[attr-defined]
                    raise ValueError(f"fault {fault} affects unknown signal {effect.signal!r}")  # type: ignore[attr-defined]
        return self

    @property
    def signal_names(self) -> list[str]:
        return list(self.signals)

    def families(self) -> dict[str, str]:
        return {name: spec.family for name, spec in self.signals.items()}


class DatabaseSettings(_Model):
    url: str = "sqlite:///data/itap.db"
    """SQLAlchemy URL; a relative SQLite path resolves against the config folder."""
    busy_timeout_ms: int = Field(default=10000, ge=0, le=600_000)
    batch_rows: int = Field(default=50000, ge=1, le=1_000_000)
    partition_hours: float = Field(default=24, gt=0, le=MAX_YEAR_H)
    """PostgreSQL only: readings and scores are partitioned by time in ranges this long."""


class PathSettings(_Model):
    data_dir: StrictPath = Path("data")
    artifacts_dir: StrictPath = Path("artifacts")
    inbox_dir: StrictPath = Path("data/inbox")
    log_file: StrictPath = Path("data/itap.log")


class FleetGroup(_Model):
    profile: str
    devices: int = Field(ge=0, le=100_000)
    prefix: str = Field(min_length=1, max_length=64)
    sites: list[str] = ["site-1"]

    def device_ids(self) -> list[str]:
        return [f"{self.prefix}-{i:03d}" for i in range(1, self.devices + 1)]


class SimulationSettings(_Model):
    start: StrictDatetime = datetime(2026, 1, 1)
    freq_s: int = Field(default=10, ge=1, le=MAX_DAY_S)
    seed: int = Field(default=7, ge=0, le=2**32 - 1)
    fault_rate_per_device_day: float = Field(default=1.0, ge=0, le=1000)
    state_dwell_s: int = Field(default=1800, ge=1, le=30 * MAX_DAY_S)
    fleet: list[FleetGroup] = []


class ValidationSettings(_Model):
    max_future_s: int = Field(default=3600, ge=0, le=366 * MAX_DAY_S)
    missing_rate_alert: float = Field(default=0.2, ge=0, le=1)
    report_examples: int = Field(default=20, ge=0, le=10_000)


class FeatureSettings(_Model):
    window: int = Field(default=12, ge=2, le=10_000)
    long_window: int = Field(default=120, ge=2, le=10_000)
    fft_window: int = Field(default=16, ge=4, le=4096)
    gap_factor: float = Field(default=5.0, gt=1, le=1000)


class DetectionSettings(_Model):
    detector: Literal["iforest", "robust_z", "shift", "pca", "drift", "ensemble"] = "iforest"
    ensemble: list[Literal["iforest", "robust_z", "shift", "pca", "drift"]] = ["robust_z", "shift", "pca", "drift"]
    n_estimators: int = Field(default=200, ge=10, le=10_000)
    threshold_percentile: float = Field(default=99.5, gt=50, lt=100)
    threshold_method: Literal["pot", "conformal", "sweep"] = "pot"
    false_alarms_per_device_day: float = Field(default=0.5, gt=0, le=10_000)
    bootstrap_hours: float = Field(default=6, gt=0, le=MAX_YEAR_H)


class MaintenanceWindow(_Model):
    """A period (data time, UTC) during which matching devices raise no incident."""

    device: str
    """A device id, or a shell pattern such as ``pump-00*``."""
    start: StrictDatetime
    end: StrictDatetime
    reason: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> MaintenanceWindow:
        if self.end <= self.start:
            raise ValueError("a maintenance window must end after it starts")
        return self


class AlertSettings(_Model):
    k: int = Field(default=2, ge=1, le=1000)
    n: int = Field(default=3, ge=1, le=1000)
    quiet_readings: int = Field(default=12, ge=1, le=100_000)
    quiet_seconds: float | None = Field(default=None, gt=0, le=MAX_YEAR_H * 3600)
    """Simulated (data-time) seconds without an over-threshold reading that close an
    incident; default ``quiet_readings`` x ``simulation.freq_s`` (2 minutes)."""
    critical_ratio: float = Field(default=1.5, gt=1, le=1000)
    maintenance: list[MaintenanceWindow] = []
    """``[[alerts.maintenance]]`` windows: no incident opens for those devices."""

    @model_validator(mode="after")
    def _k_le_n(self) -> AlertSettings:
        if self.k > self.n:
            raise ValueError("k must be <= n")
        return self


class EngineSettings(_Model):
    tick_seconds: float = Field(default=1.0, ge=0.01, le=MAX_DAY_S)
    sim_speed: float = Field(default=10.0, gt=0, le=100_000)
    retrain_minutes: float = Field(default=60, ge=1, le=MAX_YEAR_H * 60)
    housekeeping_minutes: float = Field(default=10, ge=0.1, le=MAX_YEAR_H * 60)
    retention_hours: float = Field(default=72, gt=0, le=100 * MAX_YEAR_H)
    retention_hours_imported: float = Field(default=0, ge=0, le=100 * MAX_YEAR_H)
    shard: str | None = None
    """``i/N``: simulate and score only shard i of N of the fleet (PostgreSQL; see
    :mod:`itap_engine.engine.shards`). None runs the whole fleet."""


class ConsoleSettings(_Model):
    mouse: bool = True
    """Let the console take the mouse; false leaves it to the terminal (its own copy and
    paste, over SSH too), as ``itap console --no-mouse`` does."""


class ImportSettings(_Model):
    sep: str = Field(default=",", min_length=1, max_length=8)
    timestamp_column: str = "ts"
    device_column: str = "device_id"
    chunk_rows: int = Field(default=50000, ge=1, le=10_000_000)
    columns: dict[str, str] = {}
    """CSV column -> signal name, for files whose headers differ from the profile."""
    encoding: str | None = None
    """Text encoding of CSV files; None: UTF-8, or UTF-16 when the file starts with its BOM."""
    max_line_bytes: int = Field(default=1024 * 1024, ge=1024)
    """A longer line is quarantined (its first bytes, length and sha256), never read whole."""
    max_field_bytes: int = Field(default=64 * 1024, ge=64, le=128 * 1024)
    """A line with a longer field is quarantined (Python's csv module stops at 128 KiB)."""
    quarantine_raw_bytes: int = Field(default=16 * 1024, ge=256)
    """Raw text kept per quarantined row; beyond it, its head, length and sha256."""
    on_conflict: Literal["quarantine", "keep_first", "replace"] = "quarantine"
    """A row whose (device_id, ts) is stored with other values: quarantine the new row,
    keep the stored one silently (still counted), or replace the stored values."""


MAX_LOCAL_WORKERS = 64
"""local:N starts N processes on this machine: more than this is a typo (the review's
local:999 ran the load average to 49 and leaked 759 semaphores)."""
CLUSTER_HELP = '"none", "local", "local:N" (N worker processes) or a scheduler address such as "tcp://host:8786"'


def check_cluster(value: str) -> str:
    """``[compute] cluster`` / ``--cluster``: none, local[:N] or a scheduler address.

    Raises:
        ValueError: naming what is allowed.
    """
    text = value.strip()
    if text in ("none", "local"):
        return text
    if text.startswith("local:"):
        count = text.split(":", 1)[1]
        if count.isdigit() and 1 <= int(count) <= MAX_LOCAL_WORKERS:
            return text
        raise ValueError(f"{value!r}: local:N needs a worker count N from 1 to {MAX_LOCAL_WORKERS}")
    if text.startswith(("tcp://", "tls://", "inproc://", "ucx://")) and len(text.split("://", 1)[1]) > 0:
        return text
    raise ValueError(f"{value!r} is not a cluster; use {CLUSTER_HELP}")


class ComputeSettings(_Model):
    """Where heavy batch work runs (bootstrap history, training, backlog scoring, evaluation)."""

    cluster: str = "none"
    """``none`` (this process), ``local[:N]`` (a Dask LocalCluster of N worker processes)
    or the address of a running Dask scheduler."""
    partition_devices: int = Field(default=50, ge=1)
    """Devices per partition: the unit of work a worker reads, computes and writes."""

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: str) -> str:
        return check_cluster(value)


class Settings(_Model):
    """Everything ITAP reads from config.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True, allow_inf_nan=False)

    database: DatabaseSettings = DatabaseSettings()
    paths: PathSettings = PathSettings()
    simulation: SimulationSettings = SimulationSettings()
    validation: ValidationSettings = ValidationSettings()
    features: FeatureSettings = FeatureSettings()
    detection: DetectionSettings = DetectionSettings()
    alerts: AlertSettings = AlertSettings()
    engine: EngineSettings = EngineSettings()
    console: ConsoleSettings = ConsoleSettings()
    compute: ComputeSettings = ComputeSettings()
    import_: ImportSettings = Field(default=ImportSettings(), alias="import")
    profiles: dict[str, ProfileSpec] = {}

    source: StrictPath | None = Field(default=None, exclude=True)
    """The file these settings were read from (set by :func:`load_settings`)."""

    @model_validator(mode="after")
    def _fleet_profiles(self) -> Settings:
        for group in self.simulation.fleet:
            if group.profile not in self.profiles:
                raise ValueError(
                    f"simulation.fleet names unknown profile {group.profile!r}; declared: {sorted(self.profiles)}"
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
            url = prefix + str(self.resolve(url[len(prefix) :]))
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
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{source}: not a text file (byte {error.start} is not UTF-8); give a TOML config file"
        ) from None
    except OSError as error:
        raise ConfigError(f"{source}: cannot read: {error.strerror}") from None
    settings = parse_settings(data, source)
    if source == PACKAGED_CONFIG:
        home = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "itap"
        settings = settings.model_copy(update={"source": home / "config.toml"})
    return settings
