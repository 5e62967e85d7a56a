"""Settings: environment over config file over defaults, validated."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from callcenter.settings import Settings, describe


def test_defaults_are_loopback_and_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = Settings()
    assert settings.database_url is None
    assert (settings.agi_host, settings.agi_port) == ("127.0.0.1", 4573)
    assert settings.ari_url == "http://127.0.0.1:8088"
    assert settings.recordings == settings.data_dir / "recordings"


def test_environment_beats_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "callcenter.toml"
    config.write_text('web_port = 9000\nagi_port = 5000\nlog_level = "debug"\n')
    monkeypatch.setenv("CALLCENTER_CONFIG_FILE", str(config))
    monkeypatch.setenv("CALLCENTER_AGI_PORT", "4600")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:secret@db/x")
    settings = Settings()
    assert (settings.web_port, settings.agi_port, settings.log_level) == (9000, 4600, "DEBUG")
    assert settings.database_url == "postgresql://u:secret@db/x"
    shown = {row["name"]: row["value"] for row in describe(settings)}
    assert shown["database_url"] == "postgresql://u:***@db/x" and shown["ari_password"] == "***"


def test_secrets_are_not_in_repr_or_str() -> None:
    settings = Settings(ari_password="Ari-Qx81-pw", database_url="postgresql://u:Db-Qx81-pw@db/x")
    for text in (repr(settings), str(settings), f"{settings!r}"):
        assert "Ari-Qx81-pw" not in text and "Db-Qx81-pw" not in text
        assert "ari_user='callcenter'" in text  # the rest is still shown
    assert settings.ari_password == "Ari-Qx81-pw"  # and still there to use


def test_missing_config_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLCENTER_CONFIG_FILE", "/nonexistent/callcenter.toml")
    with pytest.raises(FileNotFoundError, match="CALLCENTER_CONFIG_FILE"):
        Settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [("CALLCENTER_AGI_PORT", "70000"), ("CALLCENTER_LOG_LEVEL", "LOUD"),
     ("CALLCENTER_RING_TIMEOUT_S", "-1"), ("CALLCENTER_NO_SUCH", "1")],
)
def test_invalid_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    if name == "CALLCENTER_NO_SUCH":
        Settings()  # unknown environment variables are ignored, unknown file keys are not
        return
    with pytest.raises(ValidationError):
        Settings()


def test_unknown_keys_in_the_config_file_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text("web_prot = 1\n")
    monkeypatch.setenv("CALLCENTER_CONFIG_FILE", str(config))
    with pytest.raises(ValidationError, match="web_prot"):
        Settings()
