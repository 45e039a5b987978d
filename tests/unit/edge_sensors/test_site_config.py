from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge.siteconfig import BayType, RegisterKind, SiteConfigError, load_site_config

EXAMPLE = Path(__file__).resolve().parents[3] / "edge" / "site.example.toml"

VALID = """\
site_id = "garage-1"
ocpp_host = "0.0.0.0"          # an edge setting: the same file may carry both

[[bays]]
id = "B1"
type = "ev"
charger_id = "CP-1"
connector_id = 1

[[bays]]
id = "B2"

[[sensors.modbus]]
id = "gw-1"
host = "127.0.0.1"
port = 5020

[[sensors.modbus.registers]]
bay_id = "B1"
address = 0
kind = "discrete_input"

[sensors.mqtt]
debounce = 0.5
stale_after = 60

[sensors.mqtt.sensors]
"s-2" = "B2"

[power]
limit_w = 22080
"""


def write(tmp_path: Path, text: str) -> Path:
    file = tmp_path / "site.toml"
    file.write_text(text, encoding="utf-8")
    return file


def fails(tmp_path: Path, text: str) -> SiteConfigError:
    file = write(tmp_path, text)
    with pytest.raises(SiteConfigError) as caught:
        load_site_config(file)
    error = caught.value
    assert error.path == file
    assert str(file) in str(error)
    return error


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    lines = [number for number, line in enumerate(text.splitlines(), start=1) if needle in line]
    return lines[occurrence - 1]


def test_the_valid_file_above_loads(tmp_path: Path) -> None:
    config = load_site_config(write(tmp_path, VALID))
    assert config.site_id == "garage-1"
    assert [(b.id, b.type) for b in config.bays] == [("B1", BayType.EV), ("B2", BayType.REGULAR)]
    register = config.sensors.modbus[0].registers[0]
    assert (register.kind, register.occupied_value, register.free) == (RegisterKind.DISCRETE_INPUT, 1, 0)
    assert config.sensors.mqtt is not None and config.sensors.mqtt.sensors == {"s-2": "B2"}
    assert config.power is not None and config.power.limit_amps == pytest.approx(32.0)
    assert config.power.min_current_a == 6.0
    assert config.uplink.at_cap == "drop_oldest_telemetry"


def test_the_shipped_example_is_copy_paste_ready(tmp_path: Path) -> None:
    copy = tmp_path / "site.toml"
    shutil.copy(EXAMPLE, copy)
    config = load_site_config(copy)
    assert len(config.bays) == 4 and config.sensors.modbus and config.sensors.mqtt is not None


def test_a_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    text = VALID.replace('port = 5020', 'port = = 5020')
    error = fails(tmp_path, text)
    assert error.line == line_of(text, "port = = 5020")
    assert "not valid TOML" in str(error)


def test_a_value_of_the_wrong_type_names_line_and_field(tmp_path: Path) -> None:
    text = VALID.replace('port = 5020', 'port = "modbus"')
    error = fails(tmp_path, text)
    assert (error.field, error.line) == ("sensors.modbus[0].port", line_of(text, 'port = "modbus"'))
    assert f"site.toml:{error.line}: sensors.modbus[0].port" in str(error)


def test_a_sensor_mapping_naming_an_unknown_bay_names_line_and_field(tmp_path: Path) -> None:
    text = VALID.replace('"s-2" = "B2"', '"s-2" = "B9"')
    error = fails(tmp_path, text)
    assert (error.field, error.line) == ("sensors.mqtt.sensors.s-2", line_of(text, '"s-2" = "B9"'))
    assert "unknown bay 'B9'" in str(error)


def test_a_modbus_register_naming_an_unknown_bay_is_refused(tmp_path: Path) -> None:
    text = VALID.replace('bay_id = "B1"', 'bay_id = "B7"')
    error = fails(tmp_path, text)
    assert (error.field, error.line) == ("sensors.modbus[0].registers[0].bay_id", line_of(text, 'bay_id = "B7"'))


def test_a_duplicate_bay_id_names_the_second_one(tmp_path: Path) -> None:
    text = VALID.replace('id = "B2"', 'id = "B1"')
    error = fails(tmp_path, text)
    assert (error.field, error.line) == ("bays[1].id", line_of(text, 'id = "B1"', occurrence=2))
    assert "used twice" in str(error)


def test_a_missing_field_names_its_table(tmp_path: Path) -> None:
    text = VALID.replace('host = "127.0.0.1"\n', "", 1)
    error = fails(tmp_path, text)
    assert error.field == "sensors.modbus[0].host"
    assert error.line == line_of(text, "[[sensors.modbus]]")
    assert "Field required" in str(error)


def test_a_bay_with_a_charger_but_no_connector_is_refused(tmp_path: Path) -> None:
    text = VALID.replace("connector_id = 1\n", "")
    error = fails(tmp_path, text)
    assert error.field == "bays[0].connector_id"
    assert error.line == line_of(text, 'id = "B1"') - 1  # the [[bays]] header


def test_connector_zero_is_the_charger_not_a_bay(tmp_path: Path) -> None:
    text = VALID.replace("connector_id = 1", "connector_id = 0")
    error = fails(tmp_path, text)
    assert (error.field, error.line) == ("bays[0].connector_id", line_of(text, "connector_id = 0"))


def test_limits_must_be_positive(tmp_path: Path) -> None:
    text = VALID.replace("limit_w = 22080", "limit_w = -1")
    error = fails(tmp_path, text)
    assert (error.field, error.line) == ("power.limit_w", line_of(text, "limit_w = -1"))


def test_a_misspelt_key_is_refused_not_ignored(tmp_path: Path) -> None:
    text = VALID.replace("debounce = 0.5", "debunce = 0.5")
    error = fails(tmp_path, text)
    assert (error.field, error.line) == ("sensors.mqtt.debunce", line_of(text, "debunce"))


def test_a_bad_value_in_an_inline_register_array_names_its_line(tmp_path: Path) -> None:
    text = VALID.split("[[sensors.modbus.registers]]")[0] + (
        "registers = [\n"
        '  { bay_id = "B1", address = 0, kind = "coil" },\n'
        '  { bay_id = "B2", address = 1, kind = "dipswitch" },\n'
        "]\n"
    )
    error = fails(tmp_path, text)
    assert (error.field, error.line) == ("sensors.modbus[0].registers[1].kind", line_of(text, "dipswitch"))


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SiteConfigError, match="not found") as caught:
        load_site_config(tmp_path / "nope.toml")
    assert caught.value.line is None


def test_two_modbus_devices_with_the_same_id_are_refused(tmp_path: Path) -> None:
    without_mqtt = VALID[: VALID.index("[sensors.mqtt]")] + VALID[VALID.index("[power]"):]
    second = ('[[sensors.modbus]]\nid = "gw-1"\nhost = "10.0.0.2"\n\n'
              '[[sensors.modbus.registers]]\nbay_id = "B2"\naddress = 0\n\n')
    text = without_mqtt.replace("[power]", second + "[power]")
    error = fails(tmp_path, text)
    assert (error.field, error.line) == ("sensors.modbus[1].id", line_of(text, 'id = "gw-1"', occurrence=2))


def test_a_bay_watched_by_two_sensors_is_refused(tmp_path: Path) -> None:
    text = VALID.replace('"s-2" = "B2"', '"s-2" = "B1"')
    error = fails(tmp_path, text)
    assert (error.field, error.line) == ("sensors.mqtt.sensors.s-2", line_of(text, '"s-2" = "B1"'))
    assert "already has a sensor" in str(error)


def test_the_bay_a_connector_serves_is_found(tmp_path: Path) -> None:
    config = load_site_config(write(tmp_path, VALID))
    served = config.bay_served_by("CP-1", 1)
    assert served is not None and served.id == "B1"
    assert config.bay_served_by("CP-1", 2) is None


def test_stale_after_shorter_than_a_poll_is_refused(tmp_path: Path) -> None:
    text = VALID.replace('port = 5020', 'port = 5020\npoll_interval = 5\nstale_after = 3')
    error = fails(tmp_path, text)
    assert (error.field, error.line) == ("sensors.modbus[0].stale_after", line_of(text, "stale_after = 3"))


def test_one_read_of_the_site_file_gives_the_edge_settings_and_the_site(tmp_path: Path) -> None:
    from edge.siteconfig import load_site

    settings, config = load_site(write(tmp_path, VALID))
    assert settings.site_id == "garage-1" and settings.ocpp_host == "0.0.0.0"
    assert config is not None and [b.id for b in config.bays] == ["B1", "B2"]
    settings, config = load_site(write(tmp_path, 'site_id = "garage-2"\n'))  # edge settings only
    assert (settings.site_id, config) == ("garage-2", None)


def test_a_broken_site_file_is_named_by_the_one_loader(tmp_path: Path) -> None:
    from edge.settings import EdgeConfigError
    from edge.siteconfig import load_site

    file = write(tmp_path, VALID.replace('port = 5020', 'port = = 5020'))
    with pytest.raises(EdgeConfigError, match="not valid TOML") as caught:
        load_site(file)
    assert str(file) in str(caught.value)
    text = VALID.replace('port = 5020', 'port = "modbus"')
    with pytest.raises(SiteConfigError) as error:
        load_site(write(tmp_path, text))
    assert (error.value.field, error.value.line) == ("sensors.modbus[0].port", line_of(text, 'port = "modbus"'))
