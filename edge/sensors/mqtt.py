"""Bay occupancy from sensors that publish on the site's local MQTT broker (aiomqtt).

Topics and payloads are the contract in :mod:`mqtt.sensors`. The listener subscribes to every
sensor of the site and maps sensor ids to bays with the site file. A message that does not
validate, names another bay than the site file maps the sensor to, or says ``occupied: null``
makes that bay ``unknown`` and faulty at once (and is logged); it is never read as ``free``.
A sensor that stays silent longer than ``stale_after`` makes its bay ``unknown`` too; that
also covers a lost connection to the broker, during which the listener reconnects with
jittered exponential back-off.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from datetime import datetime

import aiomqtt
from pydantic import ValidationError

from edge.backoff import Backoff
from edge.sensors._reader import OnChange, SensorReader, log
from edge.sensors.tracker import BayChange, BayTracker, utc_now
from edge.siteconfig import MqttSensors
from mqtt.sensors import QOS, BaySensorReading, SensorTopics


class MqttSensorListener(SensorReader):
    """Listens to one site's bay sensors; an async context manager running as ``edge.sensors.mqtt``."""

    def __init__(self, config: MqttSensors, on_change: OnChange, *, site_id: str, client_id: str | None = None,
                 backoff: Backoff | None = None, keepalive: int = 30,
                 clock: Callable[[], float] = time.monotonic, now: Callable[[], datetime] = utc_now) -> None:
        super().__init__(on_change)
        self.config = config
        self.site_id = site_id
        self.task_name = "edge.sensors.mqtt"
        # per topic root, as the uplink's (edge.uplink.uplink_client_id): two edges of one site id under
        # different roots on one broker (tests side by side, staging beside production) would otherwise drop
        # each other's sensor connection over and over; the default root keeps the id it always had
        root = "" if config.topic_root == "evpark" else f"-{config.topic_root}"
        self.client_id = client_id or f"evpark-edge-sensors-{site_id}{root}"
        self.tracker = BayTracker(config.sensors.values(), debounce=config.debounce, stale_after=config.stale_after,
                                  clock=clock, now=now)
        self._bay_of = dict(config.sensors)
        self._topics = SensorTopics(config.topic_root)
        self._backoff = backoff or Backoff(initial=0.5, cap=30.0)
        self._keepalive = keepalive
        self._unmapped: set[str] = set()
        self.subscribed = asyncio.Event()
        """Set while subscribed to the sensor topics (tests and readiness wait on it)."""
        shortest = min(x for x in (config.debounce, config.stale_after) if x > 0)
        self.tick_interval = min(1.0, max(0.01, shortest / 4))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._tick_forever(), name=f"{self.task_name}.tick")
            tasks.create_task(self._listen_forever(), name=f"{self.task_name}.listen")

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            await self._deliver(self.tracker.tick())

    async def _listen_forever(self) -> None:
        config = self.config
        topic = self._topics.all_sensors(self.site_id)
        while True:
            try:
                async with aiomqtt.Client(
                    config.host, config.port, identifier=self.client_id, clean_session=True,
                    username=config.username,
                    password=config.password.get_secret_value() if config.password else None,
                    tls_context=ssl.create_default_context() if config.tls else None,
                    keepalive=self._keepalive,
                ) as client:
                    # A clean session: readings queued while we were away are stale by now anyway.
                    await client.subscribe(topic, qos=QOS)
                    self.subscribed.set()
                    self._backoff.reset()
                    log.info("sensors.mqtt_connected", broker=f"{config.host}:{config.port}", topic=topic)
                    async for message in client.messages:
                        await self._deliver(self.handle(str(message.topic), message.payload))
            except aiomqtt.MqttError as exc:
                log.warning("sensors.mqtt_disconnected", broker=f"{config.host}:{config.port}", error=str(exc))
            finally:
                self.subscribed.clear()
            await asyncio.sleep(self._backoff.next_delay())

    def handle(self, topic: str, payload: object) -> list[BayChange]:
        """One message from the broker → the bay changes it causes (pure; public for tests)."""
        try:
            site_id, sensor_id = self._topics.parse(topic)
        except ValueError:
            log.warning("sensors.unexpected_topic", topic=topic)
            return []
        bay_id = self._bay_of.get(sensor_id)
        if site_id != self.site_id or bay_id is None:
            if sensor_id not in self._unmapped:  # warn once per sensor, not per message
                self._unmapped.add(sensor_id)
                log.warning("sensors.unmapped_sensor", sensor_id=sensor_id, topic=topic)
            return []
        if not isinstance(payload, bytes | bytearray | str):
            return self._garbage(bay_id, sensor_id, f"payload of type {type(payload).__name__}")
        try:
            reading = BaySensorReading.from_json(bytes(payload) if not isinstance(payload, str) else payload)
        except (ValidationError, ValueError) as exc:
            return self._garbage(bay_id, sensor_id, _first_error(exc))
        if reading.bay_id != bay_id:
            return self._garbage(bay_id, sensor_id,
                                 f"reports bay {reading.bay_id!r}, the site file maps it to {bay_id!r}")
        if reading.occupied is None:
            return self.tracker.fail(bay_id, f"sensor {sensor_id} cannot tell (occupied: null)")
        return self.tracker.observe(bay_id, reading.occupied)

    def _garbage(self, bay_id: str, sensor_id: str, problem: str) -> list[BayChange]:
        log.warning("sensors.invalid_payload", sensor_id=sensor_id, bay_id=bay_id, problem=problem)
        return self.tracker.fail(bay_id, f"invalid payload from sensor {sensor_id}: {problem}")


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and exc.errors():
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "payload"
        return f"{field}: {error['msg']}"
    return str(exc)[:200]
