"""The parking service: bays, their occupancy and charger usage; reservations and stays; the lots;
the sites' power limits."""

from pathlib import Path

from cloud.contracts.charging import ChargingCompleted, ChargingStarted
from cloud.contracts.parking import (
    Arrived,
    BayChanged,
    BayIdleEnded,
    BayIdleStarted,
    BayOverstayEnded,
    BayOverstayStarted,
    Cancelled,
    InventoryChanged,
    LotConfigured,
    NoShow,
    Overstay,
    Released,
    Reserved,
    SiteOffline,
    SiteOnline,
)
from cloud.contracts.payments import PaymentCompleted, PaymentFailed
from cloud.contracts.vehicles import VehicleDeleted, VehicleRegistered, VehicleUpdated
from cloud.platform.spec import ServiceSpec

SPEC = ServiceSpec(
    name="parking",
    port=8103,
    app="cloud.parking.app:build_app",
    description="Parking bays, their occupancy and charger usage as the sites report them; reservations, "
                "stays and lot configuration; the list of sites, their link state and power limits.",
    prefixes=("/parking",),
    migrations=Path(__file__).parent / "migrations",
    publishes=(BayChanged, InventoryChanged, BayIdleStarted, BayIdleEnded, BayOverstayStarted, BayOverstayEnded,
               SiteOnline, SiteOffline, LotConfigured, Reserved, Cancelled, NoShow, Arrived, Released, Overstay),
    consumes=(ChargingStarted, ChargingCompleted, VehicleRegistered, VehicleUpdated, VehicleDeleted, PaymentFailed,
              PaymentCompleted),
    mqtt_categories=("bay", "site", "result"),
    replicas=3,
)
