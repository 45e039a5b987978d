"""What the parking service publishes and consumes.

Publishes on ``parking.events``: ``parking.bay_changed`` {site_id, bay_id, state, changed_at}.
Consumes from MQTT: the ``bay`` category of every site (``bay.occupancy``).
"""

from __future__ import annotations

from cloud.parking.models import Bay
from cloud.platform.ports import Event

BAY_CHANGED = "parking.bay_changed"


def bay_changed(bay: Bay) -> Event:
    return Event(name=BAY_CHANGED, source="parking", payload={
        "site_id": bay.site_id, "bay_id": bay.bay_id, "state": bay.state,
        "changed_at": bay.changed_at.isoformat()})
