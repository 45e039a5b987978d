"""Typed events for tests: an event as a consumer's handler receives it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TypeVar

from cloud.contracts import EventBody, Received
from cloud.contracts.vehicles import VehicleRegistered

B = TypeVar("B", bound=EventBody)


def received(body: B, *, source: str = "test", event_id: uuid.UUID | None = None) -> Received[B]:
    return Received(id=event_id or uuid.uuid4(), name=body.NAME, version=body.VERSION,
                    occurred_at=datetime.now(UTC), source=source, body=body)


def registered(vehicle_id: str, *id_tags: str) -> Received[VehicleRegistered]:
    """``vehicle.registered`` of a vehicle with these idTags, as the charging service receives it."""
    return received(VehicleRegistered(vehicle_id=vehicle_id, plate=vehicle_id.upper(), id_tags=list(id_tags)),
                    source="vehicles")
