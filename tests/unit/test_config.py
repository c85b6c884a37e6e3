"""Config: the lookup order, one-line errors, overrides, the packaged default."""

from __future__ import annotations

from pathlib import Path

import pytest

from itap_engine.config import PACKAGED_CONFIG, ConfigError, find_config, load_settings

REPO = Path(__file__).resolve().parents[2]


def test_packaged_default_is_the_repository_config() -> None:
    assert PACKAGED_CONFIG.read_bytes() == (REPO / "config.toml").read_bytes()


def test_repository_config_declares_the_builtin_profiles() -> None:
    settings = load_settings(REPO / "config.toml")
    assert {"industrial", "aircraft"} <= set(settings.profiles)
    industrial = settings.profile("industrial")
    assert set(industrial.signals) == {"rpm", "temp_c", "vibration_g", "current_a", "voltage_v"}
    assert set(industrial.faults) == {"overheat_drift", "bearing_wear", "power_spike", "sensor_dropout"}
    assert set(industrial.states) == {"RUN", "IDLE", "MAINT"}
    aircraft = settings.profile("aircraft")
    assert {"speed_spike", "altitude_drop", "sensor_dropout"} == set(aircraft.faults)


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (("k = 2\n", "k = 9\n"), "alerts: Value error, k must be <= n"),
        (("[engine]\n", "[engine]\nspeed_typo = 3\n"), "engine.speed_typo: unknown key"),
        (
            ("noise = 0.6", "noise = -1.0"),
            "profiles.industrial.signals.temp_c.noise: Input should be greater than or equal to 0",
        ),
        (("range = [-40.0, 200.0]", "range = [200.0, -40.0]"), "temp_c.range: Value error, must be [min, max]"),
        (
            ('{ signal = "temp_c", kind = "drift"', '{ signal = "temp_c", kind = "melt"'),
            "kind: Input should be 'drift'",
        ),
        (('profile = "aircraft"', 'profile = "boat"'), "unknown profile 'boat'"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_key(tmp_path: Path, patch: tuple[str, str], expected: str) -> None:
    text = (REPO / "config.toml").read_text()
    assert patch[0] in text
    path = tmp_path / "config.toml"
    path.write_text(text.replace(patch[0], patch[1], 1))
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert expected in message


def test_not_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[database\nurl = 1")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_settings(path)


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ITAP_CONFIG", raising=False)
    assert find_config() == PACKAGED_CONFIG
    home_cfg = tmp_path / "home" / ".config" / "itap" / "config.toml"
    home_cfg.parent.mkdir(parents=True)
    home_cfg.write_text("")
    assert find_config() == home_cfg
    local = tmp_path / "config.toml"
    local.write_text("")
    assert find_config() == local
    env_cfg = tmp_path / "env.toml"
    env_cfg.write_text("")
    monkeypatch.setenv("ITAP_CONFIG", str(env_cfg))
    assert find_config() == env_cfg
    assert find_config(local) == local


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ITAP_DB_URL", raising=False)
    path = tmp_path / "sub" / "config.toml"
    path.parent.mkdir()
    path.write_text((REPO / "config.toml").read_text())
    settings = load_settings(path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'sub' / 'data' / 'itap.db'}"
    monkeypatch.setenv("ITAP_DB_URL", "postgresql+psycopg://itap@localhost/itap")
    assert settings.database_url == "postgresql+psycopg://itap@localhost/itap"


def test_packaged_default_keeps_data_outside_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    monkeypatch.delenv("ITAP_CONFIG", raising=False)
    monkeypatch.delenv("ITAP_DB_URL", raising=False)
    settings = load_settings()
    assert settings.database_url == f"sqlite:///{tmp_path / 'share' / 'itap' / 'data' / 'itap.db'}"


def test_with_overrides_validates(tmp_path: Path) -> None:
    settings = load_settings(REPO / "config.toml")
    assert settings.with_overrides(simulation={"seed": 3}).simulation.seed == 3
    with pytest.raises(ConfigError, match=r"simulation\.freq_s"):
        settings.with_overrides(simulation={"freq_s": 0})


# ---------------------------------------------------------------------- strict and bounded
FIXTURES = Path(__file__).resolve().parents[1] / "data" / "config"
BAD = {
    "devices_string": "simulation.fleet.0.devices: Input should be a valid integer",
    "sim_speed_bool": "engine.sim_speed: Input should be a valid number",
    "bootstrap_hours_huge": "detection.bootstrap_hours: Input should be less than or equal to 8784",
    "tick_seconds_nan": "engine.tick_seconds: Input should be a finite number",
    "sim_speed_inf": "engine.sim_speed: Input should be a finite number",
    "freq_s_float": "simulation.freq_s: Input should be a valid integer",
    "seed_negative": "simulation.seed: Input should be greater than or equal to 0",
    "devices_huge": "simulation.fleet.0.devices: Input should be less than or equal to 100000",
    "chunk_rows_huge": "import.chunk_rows: Input should be less than or equal to 10000000",
    "data_dir_number": "paths.data_dir:",
    "range_strings": "profiles.p.signals.x.range.0: Input should be a valid number",
    "baseline_inf": "profiles.p.signals.x.baseline: Input should be a finite number",
    "start_not_a_time": "simulation.start:",
    "n_estimators_bool": "detection.n_estimators: Input should be a valid integer",
}


def test_every_bad_fixture_has_an_expected_message() -> None:
    assert {p.stem for p in (FIXTURES / "bad").glob("*.toml")} == set(BAD)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_values_are_refused_not_coerced(name: str) -> None:
    path = FIXTURES / "bad" / f"{name}.toml"
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(str(path.resolve()))
    assert BAD[name] in message, message


@pytest.mark.parametrize("path", sorted((FIXTURES / "good").glob("*.toml")), ids=lambda p: p.stem)
def test_good_fixtures_load(path: Path) -> None:
    settings = load_settings(path)
    assert settings.detection.bootstrap_hours > 0


def test_toml_strings_still_become_paths_times_and_pairs() -> None:
    settings = load_settings(FIXTURES / "good" / "bounds.toml")
    assert settings.paths.data_dir == Path("somewhere/data") and settings.simulation.start.month == 3
    assert settings.engine.sim_speed == 100000.0 and isinstance(settings.engine.sim_speed, float)
    spec = load_settings(REPO / "config.toml").profile("industrial").signals["temp_c"]
    assert spec.range == (-40.0, 200.0)
