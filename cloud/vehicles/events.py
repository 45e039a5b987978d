"""What the vehicle registry publishes and consumes.

Publishes on ``vehicle.events``: ``vehicle.registered`` {vehicle_id, plate, id_tags}.
Consumes from MQTT: ``site.hello`` and ``command.result`` (authorization list sync).
Sends over MQTT: ``authlist.update`` commands to each site.
"""

from __future__ import annotations

from cloud.platform.ports import Event

VEHICLE_REGISTERED = "vehicle.registered"


def vehicle_registered(vehicle_id: str, plate: str, id_tags: list[str]) -> Event:
    return Event(name=VEHICLE_REGISTERED, source="vehicles",
                 payload={"vehicle_id": vehicle_id, "plate": plate, "id_tags": id_tags})
