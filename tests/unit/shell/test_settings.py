from __future__ import annotations

from pathlib import Path

import pytest

from geoattest.settings import load_settings


def test_defaults_without_any_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEOATTEST_TCTI", raising=False)
    settings = load_settings()
    assert settings.tcti == "device:/dev/tpmrm0"
    assert settings.database_url.startswith("sqlite:///")


def test_flags_beat_environment_beat_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "geoattest.toml"
    config.write_text('tcti = "swtpm:host=toml"\nregistrar_port = 1111\nagent_id = "from-toml"\n')
    monkeypatch.setenv("GEOATTEST_REGISTRAR_PORT", "2222")
    monkeypatch.setenv("GEOATTEST_TCTI", "swtpm:host=env")
    settings = load_settings(config, tcti="swtpm:host=flag", agent_id=None)
    assert settings.tcti == "swtpm:host=flag"
    assert settings.registrar_port == 2222
    assert settings.agent_id == "from-toml"


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        setattr(settings, "tcti", "x")  # noqa: B010  # the point: assignment must be refused


@pytest.mark.parametrize("bad", ["has space", "x" * 65, "slash/y", ""])
def test_agent_id_shape_is_enforced(bad: str) -> None:
    with pytest.raises(ValueError, match="agent_id"):
        load_settings(agent_id=bad)


def test_unknown_keys_in_toml_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "geoattest.toml"
    config.write_text('tctii = "typo"\n')
    with pytest.raises(ValueError, match="tctii"):
        load_settings(config)


def test_missing_config_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_settings(tmp_path / "absent.toml")
