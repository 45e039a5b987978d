"""The charging service: sessions, the chargers' live state, remote start/stop and station commands."""

from pathlib import Path

from cloud.contracts.charging import (
    ChargerFaulted,
    ChargerOffline,
    ChargerOnline,
    ChargingAnomaly,
    ChargingCompleted,
    ChargingFailed,
    ChargingStarted,
    EnergyFinished,
)
from cloud.contracts.payments import PaymentCompleted, PaymentFailed, TariffChanged
from cloud.contracts.vehicles import VehicleDeleted, VehicleRegistered, VehicleUpdated
from cloud.platform.spec import ServiceSpec

SPEC = ServiceSpec(
    name="charging",
    port=8101,
    app="cloud.charging.app:build_app",
    description="Charging sessions, chargers' live state and remote commands.",
    prefixes=("/charging",),
    command_paths=("/charging/start", "/charging/stop", "/charging/stations/{site_id}/{charger_id}/unlock",
                   "/charging/stations/{site_id}/{charger_id}/reset",
                   "/charging/stations/{site_id}/{charger_id}/availability"),
    migrations=Path(__file__).parent / "migrations",
    publishes=(ChargingStarted, ChargingCompleted, ChargingAnomaly, ChargingFailed, EnergyFinished, ChargerFaulted,
               ChargerOffline, ChargerOnline),
    consumes=(VehicleRegistered, VehicleUpdated, VehicleDeleted, TariffChanged, PaymentFailed, PaymentCompleted),
    mqtt_categories=("session", "charger", "result", "site"),
    replicas=3,
)
