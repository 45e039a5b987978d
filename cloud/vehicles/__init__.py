"""The vehicle registry: vehicles, their RFID idTags, and every site's authorization list."""

from pathlib import Path

from cloud.contracts.vehicles import VehicleRegistered
from cloud.platform.spec import ServiceSpec

SPEC = ServiceSpec(
    name="vehicles",
    port=8102,
    app="cloud.vehicles.app:build_app",
    description="Vehicles and the RFID idTags that may charge them.",
    prefixes=("/vehicles",),
    migrations=Path(__file__).parent / "migrations",
    publishes=(VehicleRegistered,),
    mqtt_categories=("site", "result"),
)
