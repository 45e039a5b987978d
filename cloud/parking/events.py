"""What the parking service publishes and consumes.

Publishes on ``parking.events``: ``parking.bay_changed`` {site_id, bay_id, state, changed_at}.
Publishes ``parking.inventory_changed`` {site_id, bays, chargers} when a site's hardware changes.
Consumes from MQTT: ``bay.occupancy`` and ``site.inventory`` of every site.
"""

from __future__ import annotations

from cloud.parking.models import Bay
from cloud.platform.ports import Event

BAY_CHANGED = "parking.bay_changed"
INVENTORY_CHANGED = "parking.inventory_changed"


def bay_changed(bay: Bay) -> Event:
    return Event(name=BAY_CHANGED, source="parking", payload={
        "site_id": bay.site_id, "bay_id": bay.bay_id, "state": bay.state,
        "changed_at": bay.changed_at.isoformat()})


def inventory_changed(site_id: str, bays: int, chargers: int) -> Event:
    return Event(name=INVENTORY_CHANGED, source="parking",
                 payload={"site_id": site_id, "bays": bays, "chargers": chargers})
