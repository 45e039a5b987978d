from __future__ import annotations

from pathlib import Path

from edge.sensors import BayChange, ModbusPoller, MqttSensorListener, sensor_readers
from edge.siteconfig import load_site_config

EXAMPLE = Path(__file__).resolve().parents[3] / "edge" / "site.example.toml"


async def ignore(change: BayChange) -> None:
    pass


def test_the_site_file_gives_one_poller_per_modbus_device_and_one_mqtt_listener() -> None:
    readers = sensor_readers(load_site_config(EXAMPLE), ignore)
    assert [type(reader) for reader in readers] == [ModbusPoller, MqttSensorListener]
    assert [reader.task_name for reader in readers] == ["edge.sensors.modbus.gw-level-1", "edge.sensors.mqtt"]
    poller, listener = readers
    assert isinstance(poller, ModbusPoller) and isinstance(listener, MqttSensorListener)
    assert poller.tracker.bay_ids == ("P1-001", "P1-002", "P1-003")
    assert listener.tracker.bay_ids == ("P1-004",)
