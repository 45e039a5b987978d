"""What the charging service publishes and consumes (the models live in :mod:`cloud.contracts`).

Publishes on ``charging.events``: ``charging.started``, ``charging.completed`` (1.1: with the
vehicle's ``owner_id`` when known; 1.2: the edge's ``store_id``, and how the session was closed),
``charging.anomaly``.
Consumes from ``vehicle.events``: ``vehicle.registered``, ``vehicle.updated``, ``vehicle.deleted``
(idTag → vehicle and vehicle → owner projections).
Consumes from MQTT: the ``session`` category of every site (and, for the gap tracker of
end-to-end delivery, the ``site`` category's ``site.hello``, ``site.high_water`` and ``site.resent``).
"""

from __future__ import annotations

from typing import TypeVar

from cloud.charging.domain import Session
from cloud.contracts.charging import ChargingAnomaly, ChargingCompleted, ChargingStarted, SessionFacts

QUEUE = "charging.vehicle-events"

F = TypeVar("F", bound=SessionFacts)


def session_event(kind: type[F], session: Session, vehicle_id: str | None, owner_id: str | None = None) -> F:
    return kind(
        session_id=session.id, site_id=session.site_id, store_id=session.store_id,
        transaction_id=session.transaction_id,
        charger_id=session.charger_id, connector_id=session.connector_id, id_tag=session.id_tag,
        vehicle_id=vehicle_id, owner_id=owner_id, started_at=session.started_at, stopped_at=session.stopped_at,
        energy_wh=session.energy_wh, clock_suspect=session.clock_suspect)


def started(session: Session, vehicle_id: str | None, owner_id: str | None = None) -> ChargingStarted:
    return session_event(ChargingStarted, session, vehicle_id, owner_id)


def completed(session: Session, vehicle_id: str | None, owner_id: str | None = None) -> ChargingCompleted:
    event = session_event(ChargingCompleted, session, vehicle_id, owner_id)
    return event.model_copy(update={"closed_by": session.closed_by or "stop"})


__all__ = ["QUEUE", "ChargingAnomaly", "ChargingCompleted", "ChargingStarted", "completed", "session_event",
           "started"]
