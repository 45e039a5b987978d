"""Bay-occupancy sensors: Modbus TCP pollers and an MQTT listener sharing one state machine.

::

    async def on_change(change: BayChange) -> None:
        ...  # e.g. queue change.to_payload() (a mqtt.BayOccupancy) for the uplink

    readers = sensor_readers(load_site_config("site.toml"), on_change)
    async with asyncio.TaskGroup() as tasks:
        for reader in readers:
            tasks.create_task(reader.run(), name=reader.task_name)

Each reader is also an async context manager that runs itself as its named task.
"""

from edge.sensors._reader import OnChange, SensorReader
from edge.sensors.modbus import ModbusPoller
from edge.sensors.mqtt import MqttSensorListener
from edge.sensors.tracker import BayChange, BayState, BayTracker
from edge.siteconfig import SiteConfig


def sensor_readers(config: SiteConfig, on_change: OnChange) -> list[SensorReader]:
    """One reader per Modbus device and one MQTT listener, as the site file describes them."""
    readers: list[SensorReader] = [ModbusPoller(sensor, on_change) for sensor in config.sensors.modbus]
    if config.sensors.mqtt is not None:
        readers.append(MqttSensorListener(config.sensors.mqtt, on_change, site_id=config.site_id))
    return readers


__all__ = [
    "BayChange",
    "BayState",
    "BayTracker",
    "ModbusPoller",
    "MqttSensorListener",
    "OnChange",
    "SensorReader",
    "sensor_readers",
]
