"""What the vehicle registry publishes and consumes (the models live in :mod:`cloud.contracts`).

Publishes on ``vehicle.events``: ``vehicle.registered`` 1.1 {vehicle_id, plate, id_tags, owner_id}.
Consumes from MQTT: ``site.hello`` and ``command.result`` (authorization list sync).
Sends over MQTT: ``authlist.update`` commands to each site.
"""

from __future__ import annotations

from cloud.contracts.vehicles import VehicleRegistered
from cloud.vehicles.domain import Vehicle


def vehicle_registered(vehicle: Vehicle) -> VehicleRegistered:
    return VehicleRegistered(vehicle_id=vehicle.vehicle_id, plate=vehicle.plate,
                             id_tags=[tag.id_tag for tag in vehicle.id_tags], owner_id=vehicle.owner_id)
