"""What the charging service publishes and consumes.

Publishes on ``charging.events``: ``charging.session_started``, ``charging.session_completed``.
Consumes from ``vehicle.events``: ``vehicle.registered`` (idTag → vehicle projection).
Consumes from MQTT: the ``session`` category of every site.
"""

from __future__ import annotations

from cloud.charging.models import ChargingSession
from cloud.platform.ports import Event

SESSION_STARTED = "charging.session_started"
SESSION_COMPLETED = "charging.session_completed"
CONSUMES = ("vehicle.registered",)
QUEUE = "charging.vehicle-events"


def session_event(name: str, session: ChargingSession, vehicle_id: str | None) -> Event:
    return Event(name=name, source="charging", payload={
        "session_id": session.id,
        "site_id": session.site_id,
        "transaction_id": session.transaction_id,
        "charger_id": session.charger_id,
        "connector_id": session.connector_id,
        "id_tag": session.id_tag,
        "vehicle_id": vehicle_id,
        "started_at": session.started_at.isoformat() if session.started_at else None,
        "stopped_at": session.stopped_at.isoformat() if session.stopped_at else None,
        "energy_wh": session.energy_wh,
        "clock_suspect": session.clock_suspect,
    })
