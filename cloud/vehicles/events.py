"""What the vehicle registry publishes and consumes (the models live in :mod:`cloud.contracts`).

Publishes on ``vehicle.events``: ``vehicle.registered`` 1.3, ``vehicle.updated`` 1.1 and
``vehicle.deleted`` 1.0, each with the owner and the vehicle's type; registered and updated also
with its make, model and battery (the catalogue entry's where the driver left them out).
Consumes from ``parking.events`` (bays, their usage) and ``charging.events`` (sessions): where
each vehicle is and whether it charges (``GET /vehicles/{id}/status``).
Consumes from MQTT: ``site.hello`` and ``command.result`` (authorization list sync).
Sends over MQTT: ``authlist.update`` commands to each site.
"""

from __future__ import annotations

from cloud.contracts.charging import ChargingCompleted, ChargingStarted
from cloud.contracts.parking import (
    BayChanged,
    BayIdleEnded,
    BayIdleStarted,
    BayOverstayEnded,
    BayOverstayStarted,
)
from cloud.contracts.vehicles import VehicleDeleted, VehicleRegistered, VehicleUpdated
from cloud.vehicles.domain import Vehicle

STATUS_QUEUE = "vehicles.status-events"
"""The queue of the parking and charging events the status is built from."""

STATUS_EVENTS = (ChargingStarted, ChargingCompleted, BayChanged, BayIdleStarted, BayIdleEnded, BayOverstayStarted,
                 BayOverstayEnded)


def vehicle_registered(vehicle: Vehicle) -> VehicleRegistered:
    return VehicleRegistered(vehicle_id=vehicle.vehicle_id, plate=vehicle.plate,
                             id_tags=[tag.id_tag for tag in vehicle.id_tags], owner_id=vehicle.owner_id,
                             type=vehicle.kind, make=vehicle.make, model=vehicle.model,
                             battery_kwh=vehicle.battery_kwh)


def vehicle_updated(vehicle: Vehicle) -> VehicleUpdated:
    return VehicleUpdated(vehicle_id=vehicle.vehicle_id, plate=vehicle.plate,
                          id_tags=[tag.id_tag for tag in vehicle.id_tags], owner_id=vehicle.owner_id,
                          type=vehicle.kind, version=vehicle.version, make=vehicle.make, model=vehicle.model,
                          battery_kwh=vehicle.battery_kwh)


def vehicle_deleted(vehicle: Vehicle) -> VehicleDeleted:
    return VehicleDeleted(vehicle_id=vehicle.vehicle_id, plate=vehicle.plate,
                          id_tags=[tag.id_tag for tag in vehicle.id_tags], owner_id=vehicle.owner_id,
                          type=vehicle.kind)
