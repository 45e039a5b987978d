"""The charging service: sessions reported by the sites' edge agents."""

from pathlib import Path

from cloud.contracts.charging import ChargingAnomaly, ChargingCompleted, ChargingStarted
from cloud.contracts.vehicles import VehicleDeleted, VehicleRegistered, VehicleUpdated
from cloud.platform.spec import ServiceSpec

SPEC = ServiceSpec(
    name="charging",
    port=8101,
    app="cloud.charging.app:build_app",
    description="Charging sessions reported by the sites' edge agents.",
    prefixes=("/charging",),
    migrations=Path(__file__).parent / "migrations",
    publishes=(ChargingStarted, ChargingCompleted, ChargingAnomaly),
    consumes=(VehicleRegistered, VehicleUpdated, VehicleDeleted),
    mqtt_categories=("session",),
)
