"""What the vehicle registry publishes and consumes (the models live in :mod:`cloud.contracts`).

Publishes on ``vehicle.events``: ``vehicle.registered`` {vehicle_id, plate, id_tags}.
Consumes from MQTT: ``site.hello`` and ``command.result`` (authorization list sync).
Sends over MQTT: ``authlist.update`` commands to each site.
"""

from __future__ import annotations

from cloud.contracts.vehicles import VehicleRegistered


def vehicle_registered(vehicle_id: str, plate: str, id_tags: list[str]) -> VehicleRegistered:
    return VehicleRegistered(vehicle_id=vehicle_id, plate=plate, id_tags=id_tags)
