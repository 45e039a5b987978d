"""Bay-sensor messages on a site's local MQTT broker, written once.

A bay sensor (or a gateway for several) publishes the occupancy of one bay::

    topic    <root>/sites/<site_id>/sensors/<sensor_id>        (QoS 1, not retained)
    payload  {"bay_id": "B-017", "occupied": true, "ts": "2026-11-23T23:40:00.000Z", "battery": 3.1}

* ``bay_id`` — the bay the sensor watches (1-64 characters).
* ``occupied`` — ``true`` a vehicle is in the bay, ``false`` it is free, ``null`` the sensor
  cannot tell (blinded, fault): the bay becomes ``unknown`` and is flagged faulty — a bay the
  site cannot see is never reported free.
* ``ts`` — when the sensor saw it, UTC ISO 8601 (a naive time is refused, any offset is
  converted to UTC).
* ``battery`` — optional, the sensor's battery voltage or percentage as the vendor reports it.

These messages stay on the site's broker (the edge reads them and relays bay changes to the
cloud as ``bay`` envelopes); they are not envelopes themselves, because sensors are simple
devices. ``chargepoint_sim`` publishes them; the edge subscribes to
``Topics.all_sensors(site_id)``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mqtt.topics import validate_site_id

QOS = 1

_SENSOR_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validate_sensor_id(sensor_id: str) -> str:
    """A sensor id is one topic level: letters, digits, ``_.-``, at most 64 characters."""
    if not _SENSOR_ID.fullmatch(sensor_id):
        raise ValueError(f"sensor id {sensor_id!r} must be 1-64 characters of letters, digits, '_', '.' or '-'")
    return sensor_id


@dataclass(frozen=True, slots=True)
class SensorTopics:
    """Topic builder for bay sensors under one topic root."""

    root: str = "evpark"

    def sensor(self, site_id: str, sensor_id: str) -> str:
        return f"{self.root}/sites/{validate_site_id(site_id)}/sensors/{validate_sensor_id(sensor_id)}"

    def all_sensors(self, site_id: str) -> str:
        """Subscription filter for every sensor of one site."""
        return f"{self.root}/sites/{validate_site_id(site_id)}/sensors/+"

    def parse(self, topic: str) -> tuple[str, str]:
        """``(site_id, sensor_id)`` of a sensor topic; ValueError for any other topic."""
        prefix = f"{self.root}/sites/"
        parts = topic[len(prefix):].split("/") if topic.startswith(prefix) else []
        if len(parts) != 3 or parts[1] != "sensors":
            raise ValueError(f"{topic!r} is not a bay-sensor topic under {self.root!r}")
        return validate_site_id(parts[0]), validate_sensor_id(parts[2])


class BaySensorReading(BaseModel):
    """The payload of a bay-sensor message."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    bay_id: str = Field(min_length=1, max_length=64)
    occupied: bool | None
    ts: datetime
    battery: float | None = None

    @field_validator("ts")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("ts must carry a UTC offset (e.g. 2026-11-23T23:40:00Z)")
        return value.astimezone(UTC)

    def to_json(self) -> bytes:
        body = self.model_dump(mode="json", exclude_none=False)
        body["ts"] = self.ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if self.battery is None:
            del body["battery"]
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> BaySensorReading:
        return cls.model_validate_json(data)
