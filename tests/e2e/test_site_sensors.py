"""A site file's bays and their MQTT sensors reach the cloud: inventory, then live occupancy."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import httpx
import pytest

from mqtt.sensors import BaySensorReading, SensorTopics
from tests.e2e.harness import System

pytestmark = pytest.mark.e2e


async def poll(client: httpx.AsyncClient, path: str, until: Any, limit_s: float = 15.0) -> Any:
    body: Any = None
    for _ in range(int(limit_s / 0.1)):
        response = await client.get(path)
        if response.status_code == 200:
            body = response.json()
            if until(body):
                return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never matched; last answer: {body}")


async def test_inventory_and_debounced_sensor_readings_show_in_the_cloud(sensor_site_system: System) -> None:
    system = sensor_site_system
    async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers, timeout=5) as http:
        chargers = await poll(http, "/parking/sites/e2e-site/chargers", lambda b: bool(b["chargers"]))
        assert chargers["chargers"] == [{"charger_id": "CP-1", "connectors": 2, "max_power_w": None}]
        bays = await poll(http, "/parking/sites/e2e-site/bays", lambda b: len(b["bays"]) == 3)
        assert {(b["bay_id"], b["type"], b["state"]) for b in bays["bays"]} == {
            ("A-1", "accessible", "unknown"), ("EV-1", "ev", "unknown"), ("EV-2", "ev", "unknown")}

        topics = SensorTopics(system.topic_root)
        async with aiomqtt.Client("127.0.0.1", system.mqtt_port, username="sensor-test") as sensors:
            async def read(sensor: str, bay: str, occupied: bool | None) -> None:
                reading = BaySensorReading(bay_id=bay, occupied=occupied, ts=datetime.now(UTC))
                await sensors.publish(topics.sensor("e2e-site", sensor), reading.to_json(), qos=1)

            await read("s-ev-1", "EV-1", True)
            await read("s-ev-2", "EV-2", False)
            await read("s-a-1", "A-1", None)  # the sensor cannot tell: never counted as free
            availability = await poll(http, "/parking/sites/e2e-site/availability",
                                      lambda b: b["occupied"] == 1 and b["free"] == 1)
            assert availability == {"site_id": "e2e-site", "total": 3, "free": 1, "occupied": 1, "unknown": 1}

            # A blip shorter than the debounce changes nothing.
            await read("s-ev-2", "EV-2", True)
            await asyncio.sleep(0.05)
            await read("s-ev-2", "EV-2", False)
            await asyncio.sleep(1.0)
            assert (await http.get("/parking/sites/e2e-site/availability")).json()["free"] == 1
