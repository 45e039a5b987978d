from __future__ import annotations

from pathlib import Path

import pytest

from edge.settings import EdgeConfigError, EdgeSettings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("EVPARK_EDGE_"):
            monkeypatch.delenv(name)


def test_defaults_are_a_safe_local_site() -> None:
    settings = EdgeSettings()
    assert settings.site_id == "demo-site"
    assert settings.data_dir == Path(".evpark/edge")
    assert (settings.ocpp_host, settings.ocpp_port, settings.heartbeat_interval) == ("127.0.0.1", 9000, 300)
    assert settings.accept_unknown_chargers is False
    assert (settings.mqtt_host, settings.mqtt_port, settings.mqtt_topic_root) == ("127.0.0.1", 1883, "evpark")
    assert settings.mqtt_username is None and settings.mqtt_password is None and settings.mqtt_tls is False
    assert settings.edge_version


def test_environment_variables_with_the_edge_prefix_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVPARK_EDGE_SITE_ID", "garage-7")
    monkeypatch.setenv("EVPARK_EDGE_ACCEPT_UNKNOWN_CHARGERS", "true")
    monkeypatch.setenv("EVPARK_EDGE_MQTT_PASSWORD", "s3cret")
    settings = EdgeSettings()
    assert settings.site_id == "garage-7" and settings.accept_unknown_chargers
    assert settings.mqtt_password is not None and settings.mqtt_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_an_invalid_site_id_is_refused() -> None:
    with pytest.raises(ValueError, match="site id"):
        EdgeSettings(site_id="a/b")


def test_toml_file_is_read_and_environment_overrides_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "site.toml"
    file.write_text('site_id = "garage-1"\nocpp_port = 9100\nmqtt_tls = true\ndata_dir = "/var/lib/evpark"\n')
    monkeypatch.setenv("EVPARK_EDGE_OCPP_PORT", "9200")
    settings = EdgeSettings.from_toml(file)
    assert settings.site_id == "garage-1"
    assert settings.ocpp_port == 9200
    assert settings.mqtt_tls is True
    assert settings.data_dir == Path("/var/lib/evpark")
    assert EdgeSettings().site_id == "demo-site"  # the file applies only to from_toml


def test_a_bad_value_in_the_toml_file_names_the_file_and_the_field(tmp_path: Path) -> None:
    file = tmp_path / "site.toml"
    file.write_text('ocpp_port = "nine thousand"\n')
    with pytest.raises(EdgeConfigError, match=r"site\.toml.*ocpp_port"):
        EdgeSettings.from_toml(file)


def test_a_bad_value_from_the_environment_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "site.toml"
    file.write_text('site_id = "ok"\n')
    monkeypatch.setenv("EVPARK_EDGE_HEARTBEAT_INTERVAL", "0")
    with pytest.raises(EdgeConfigError, match=r"heartbeat_interval.*EVPARK_EDGE_HEARTBEAT_INTERVAL"):
        EdgeSettings.from_toml(file)


@pytest.mark.parametrize(("content", "message"), [
    ("ocpp_prot = 9000\n", r"unknown setting\(s\) 'ocpp_prot'"),
    ("site_id = \n", "not valid TOML"),
])
def test_an_unknown_key_or_broken_toml_is_refused_with_the_file_name(tmp_path: Path, content: str,
                                                                       message: str) -> None:
    file = tmp_path / "site.toml"
    file.write_text(content)
    with pytest.raises(EdgeConfigError, match=message) as error:
        EdgeSettings.from_toml(file)
    assert str(file) in str(error.value)


def test_a_missing_toml_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(EdgeConfigError, match=r"nowhere\.toml: edge settings file not found"):
        EdgeSettings.from_toml(tmp_path / "nowhere.toml")


def test_the_admin_api_refuses_to_listen_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    from pydantic import ValidationError

    assert EdgeSettings(admin_host="127.0.0.1").admin_token is None
    assert EdgeSettings(admin_host="::1").admin_port == 9001
    with pytest.raises(ValidationError, match="EVPARK_EDGE_ADMIN_TOKEN"):
        EdgeSettings(admin_host="0.0.0.0")
    assert EdgeSettings(admin_host="0.0.0.0", admin_token="t" * 32).admin_token is not None
    assert EdgeSettings(admin_host="0.0.0.0", admin_enabled=False).admin_enabled is False
    with pytest.raises(ValidationError, match="go together"):
        EdgeSettings(ocpp_tls_cert=tmp_path / "cert.pem")


def test_the_heartbeat_deadline_defaults_to_two_intervals_and_a_minute() -> None:
    assert EdgeSettings(heartbeat_interval=300).offline_after == 660
    assert EdgeSettings(heartbeat_deadline=5).offline_after == 5


@pytest.mark.parametrize("token", ["", "   ", "short-token", "x" * 23])
def test_an_empty_or_short_admin_token_off_loopback_is_refused_naming_the_setting(
        token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("EVPARK_EDGE_ADMIN_HOST", "0.0.0.0")
    monkeypatch.setenv("EVPARK_EDGE_ADMIN_TOKEN", token)
    with pytest.raises(ValidationError, match="EVPARK_EDGE_ADMIN_TOKEN"):
        EdgeSettings()
    monkeypatch.setenv("EVPARK_EDGE_ADMIN_TOKEN", "x" * 24)
    assert EdgeSettings().admin_secret == "x" * 24


def test_an_empty_admin_token_on_loopback_means_no_token_and_the_api_stays_local(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVPARK_EDGE_ADMIN_TOKEN", "")
    assert EdgeSettings(admin_host="127.0.0.1").admin_secret is None


def test_security_profile_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("EVPARK_EDGE_MIN_SECURITY_PROFILE", "1")
    assert EdgeSettings().min_security_profile == 1
    assert EdgeSettings(min_security_profile=0).min_security_profile == 0
    with pytest.raises(ValidationError, match="min_security_profile"):
        EdgeSettings(min_security_profile=4)
    with pytest.raises(ValidationError, match="ocpp_tls_client_ca"):
        EdgeSettings(ocpp_tls_client_ca=tmp_path / "ca.pem")
