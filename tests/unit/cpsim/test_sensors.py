"""Simulated bay sensors: the Modbus register map read by a real Modbus client, and the MQTT
sensor contract (mqtt/sensors.py) the simulator publishes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError
from pymodbus.client import AsyncModbusTcpClient

from chargepoint_sim.sensors import ModbusPoint, ModbusSensors
from mqtt.sensors import BaySensorReading, SensorTopics
from tests.support.services import free_port


async def test_modbus_server_reports_each_bay_at_its_address_kind_and_value() -> None:
    points = [ModbusPoint("B-1", unit_id=1, address=0, kind="holding", occupied_value=2),
              ModbusPoint("B-2", unit_id=1, address=7, kind="coil"),
              ModbusPoint("B-3", unit_id=2, address=3, kind="discrete"),
              ModbusPoint("B-4", unit_id=2, address=4, kind="input", occupied_value=1)]
    port = free_port()
    async with ModbusSensors(points, port=port) as sensors:
        client = AsyncModbusTcpClient("127.0.0.1", port=port)
        await client.connect()
        try:
            async def read() -> tuple[int, bool, bool, int]:
                holding = await client.read_holding_registers(0, count=1, device_id=1)
                coil = await client.read_coils(7, count=1, device_id=1)
                discrete = await client.read_discrete_inputs(3, count=1, device_id=2)
                value = await client.read_input_registers(4, count=1, device_id=2)
                return holding.registers[0], coil.bits[0], discrete.bits[0], value.registers[0]

            assert await read() == (0, False, False, 0)
            for bay in ("B-1", "B-2", "B-3", "B-4"):
                await sensors.set_occupied(bay, True)
            assert await read() == (2, True, True, 1)
            await sensors.set_occupied("B-2", False)
            assert (await read())[1] is False
        finally:
            client.close()


def test_modbus_points_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="address"):
        ModbusSensors([ModbusPoint("B-1", address=70_000)])


def test_sensor_topic_is_built_and_parsed_under_the_site() -> None:
    topics = SensorTopics("evpark")
    assert topics.sensor("demo-site", "S-1") == "evpark/sites/demo-site/sensors/S-1"
    assert topics.all_sensors("demo-site") == "evpark/sites/demo-site/sensors/+"
    assert topics.parse("evpark/sites/demo-site/sensors/S-1") == ("demo-site", "S-1")
    with pytest.raises(ValueError):
        topics.sensor("demo-site", "a/b")
    with pytest.raises(ValueError):
        topics.parse("evpark/sites/demo-site/up/bay")


def test_sensor_payload_is_utc_json_with_optional_battery() -> None:
    reading = BaySensorReading(bay_id="B-1", occupied=True, ts=datetime(2026, 11, 23, 23, 40, tzinfo=UTC))
    body = json.loads(reading.to_json())
    assert body == {"bay_id": "B-1", "occupied": True, "ts": "2026-11-23T23:40:00.000Z"}
    unknown = BaySensorReading.from_json(
        '{"bay_id": "B-1", "occupied": null, "ts": "2026-11-24T01:40:00+02:00", "battery": 3.1}')
    assert unknown.occupied is None and unknown.battery == 3.1
    assert unknown.ts == datetime(2026, 11, 23, 23, 40, tzinfo=UTC)
    assert unknown.ts.tzinfo == UTC
    assert BaySensorReading(bay_id="B", occupied=False,
                            ts=datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=1)))).ts.hour == 23
    with pytest.raises(ValidationError, match="UTC offset"):
        BaySensorReading.from_json('{"bay_id": "B-1", "occupied": true, "ts": "2026-11-23T23:40:00"}')
