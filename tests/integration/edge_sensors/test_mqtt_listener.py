"""MqttSensorListener against the real Mosquitto, on a fresh topic root per test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import pytest

from edge.backoff import Backoff
from edge.sensors import BayState, MqttSensorListener
from edge.siteconfig import MqttSensors
from mqtt.sensors import BaySensorReading, SensorTopics
from tests.integration.edge_sensors.conftest import Changes

pytestmark = pytest.mark.integration

SITE = "garage-7"
OCCUPIED, FREE, UNKNOWN = BayState.OCCUPIED, BayState.FREE, BayState.UNKNOWN


class Sensors:
    """Publishes as bay sensors would, on the same broker and topic root as the listener."""

    def __init__(self, client: aiomqtt.Client, topic_root: str) -> None:
        self._client = client
        self._topics = SensorTopics(topic_root)

    async def send(self, sensor_id: str, bay_id: str, occupied: bool | None) -> None:
        reading = BaySensorReading(bay_id=bay_id, occupied=occupied, ts=datetime.now(UTC), battery=3.1)
        await self.raw(sensor_id, reading.to_json())

    async def raw(self, sensor_id: str, payload: bytes) -> None:
        await self._client.publish(self._topics.sensor(SITE, sensor_id), payload, qos=1)


@pytest.fixture
async def sensors(mosquitto: tuple[str, int], topic_root: str) -> AsyncIterator[Sensors]:
    async with aiomqtt.Client(*mosquitto) as client:
        yield Sensors(client, topic_root)


def listener(mosquitto: tuple[str, int], topic_root: str, changes: Changes, **overrides: Any) -> MqttSensorListener:
    values: dict[str, Any] = {
        "host": mosquitto[0], "port": mosquitto[1], "topic_root": topic_root, "debounce": 0.1,
        "stale_after": 5.0, "sensors": {"s-1": "B1", "s-2": "B2"},
    }
    values.update(overrides)
    return MqttSensorListener(MqttSensors.model_validate(values), changes, site_id=SITE,
                              client_id=f"{topic_root}-edge", backoff=Backoff(initial=0.05, cap=0.2))


async def test_occupancy_arrives_over_mqtt_after_the_debounce(
        mosquitto: tuple[str, int], topic_root: str, sensors: Sensors, changes: Changes) -> None:
    async with listener(mosquitto, topic_root, changes) as reader:
        assert "edge.sensors.mqtt" in {task.get_name() for task in asyncio.all_tasks()}
        await asyncio.wait_for(reader.subscribed.wait(), 15)
        await sensors.send("s-1", "B1", True)
        await sensors.send("s-2", "B2", False)
        await changes.wait_until(lambda: changes.latest() == {"B1": OCCUPIED, "B2": FREE})
    assert reader.tracker.faults == {}
    assert all(not change.faulty for change in changes.seen)


async def test_a_blip_shorter_than_the_debounce_is_held_back(
        mosquitto: tuple[str, int], topic_root: str, sensors: Sensors, changes: Changes) -> None:
    # The debounce is counted from each reading's arrival: a 1 s debounce keeps a 0.1 s blip a blip
    # even when a loaded machine delays the second reading by most of a second.
    async with listener(mosquitto, topic_root, changes, debounce=1.0) as reader:
        await asyncio.wait_for(reader.subscribed.wait(), 15)
        await sensors.send("s-1", "B1", True)
        await changes.wait_until(lambda: changes.latest().get("B1") is OCCUPIED)
        await sensors.send("s-1", "B1", False)
        await asyncio.sleep(0.1)
        await sensors.send("s-1", "B1", True)
        await asyncio.sleep(1.5)  # past the debounce: a held-back "free" would show by now
        assert changes.of("B1") == ["occupied"]

        await sensors.send("s-1", "B1", False)  # held: counts without another message
        await changes.wait_until(lambda: changes.latest().get("B1") is FREE)
    assert changes.of("B1") == ["occupied", "free"]


async def test_a_silent_sensor_makes_its_bay_unknown_after_stale_after(
        mosquitto: tuple[str, int], topic_root: str, sensors: Sensors, changes: Changes) -> None:
    async with listener(mosquitto, topic_root, changes, debounce=0.0, stale_after=0.6) as reader:
        await asyncio.wait_for(reader.subscribed.wait(), 15)
        await sensors.send("s-1", "B1", True)
        for _ in range(8):  # B2 keeps reporting, B1 falls silent
            await sensors.send("s-2", "B2", False)
            await asyncio.sleep(0.1)
        await changes.wait_until(lambda: changes.latest().get("B1") is UNKNOWN)
        assert changes.latest()["B2"] is FREE
        assert reader.tracker.faults["B1"].startswith("stale")
    assert changes.of("B1") == ["occupied", "unknown"]
    assert [change.faulty for change in changes.seen if change.bay_id == "B1"] == [False, True]


@pytest.mark.parametrize("payload", [
    b"not json",
    b'{"bay_id": "B1", "occupied": "maybe", "ts": "2026-11-23T23:40:00Z"}',
    b'{"bay_id": "B1", "occupied": false, "ts": "2026-11-23T23:40:00"}',  # naive time
    b'{"bay_id": "B1", "occupied": false}',
    b'{"bay_id": "B2", "occupied": false, "ts": "2026-11-23T23:40:00Z"}',  # not the bay s-1 watches
])
async def test_garbage_makes_the_bay_unknown_and_faulty_never_free(
        mosquitto: tuple[str, int], topic_root: str, sensors: Sensors, changes: Changes, payload: bytes) -> None:
    async with listener(mosquitto, topic_root, changes, debounce=0.0) as reader:
        await asyncio.wait_for(reader.subscribed.wait(), 15)
        await sensors.send("s-1", "B1", True)
        await changes.wait_until(lambda: changes.latest().get("B1") is OCCUPIED)
        await sensors.raw("s-1", payload)
        await changes.wait_until(lambda: changes.latest().get("B1") is UNKNOWN)
        assert changes.seen[-1].faulty
        assert "invalid payload from sensor s-1" in reader.tracker.faults["B1"]

        await sensors.send("s-1", "B1", True)  # the sensor behaves again
        await changes.wait_until(lambda: changes.latest().get("B1") is OCCUPIED)
    assert changes.of("B1") == ["occupied", "unknown", "occupied"]
    assert "B2" not in changes.latest()


async def test_occupied_null_means_the_sensor_cannot_tell_so_the_bay_is_unknown(
        mosquitto: tuple[str, int], topic_root: str, sensors: Sensors, changes: Changes) -> None:
    async with listener(mosquitto, topic_root, changes, debounce=0.0) as reader:
        await asyncio.wait_for(reader.subscribed.wait(), 15)
        await sensors.send("s-2", "B2", False)
        await changes.wait_until(lambda: changes.latest().get("B2") is FREE)
        await sensors.send("s-2", "B2", None)
        await changes.wait_until(lambda: changes.latest().get("B2") is UNKNOWN)
        assert "cannot tell" in reader.tracker.faults["B2"]
    assert changes.of("B2") == ["free", "unknown"]


async def test_a_sensor_missing_from_the_site_file_is_ignored(
        mosquitto: tuple[str, int], topic_root: str, sensors: Sensors, changes: Changes) -> None:
    async with listener(mosquitto, topic_root, changes, debounce=0.0) as reader:
        await asyncio.wait_for(reader.subscribed.wait(), 15)
        await sensors.send("s-99", "B1", False)
        await sensors.send("s-1", "B1", True)
        await changes.wait_until(lambda: changes.latest().get("B1") is OCCUPIED)
    assert changes.of("B1") == ["occupied"]
