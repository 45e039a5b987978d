"""The vehicle registry: what a vehicle is and whose it is, its RFID idTags and every site's
authorization list, the vehicle-type catalogue, and where each vehicle is (from parking's and
charging's events)."""

from pathlib import Path

from cloud.contracts.charging import ChargingCompleted, ChargingStarted
from cloud.contracts.parking import BayChanged, BayIdleEnded, BayIdleStarted, BayOverstayEnded, BayOverstayStarted
from cloud.contracts.vehicles import VehicleDeleted, VehicleRegistered, VehicleUpdated
from cloud.platform.spec import ServiceSpec

SPEC = ServiceSpec(
    name="vehicles",
    port=8102,
    app="cloud.vehicles.app:build_app",
    description="Vehicles, the RFID idTags that may charge them, and where they are.",
    prefixes=("/vehicles",),
    migrations=Path(__file__).parent / "migrations",
    publishes=(VehicleRegistered, VehicleUpdated, VehicleDeleted),
    consumes=(ChargingStarted, ChargingCompleted, BayChanged, BayIdleStarted, BayIdleEnded, BayOverstayStarted,
              BayOverstayEnded),
    mqtt_categories=("site", "result"),
    replicas=2,
)
