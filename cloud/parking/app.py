"""Composition root of the parking service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from cloud.parking.api import router
from cloud.parking.service import ParkingService
from cloud.platform.mqtt_link import MqttLink
from cloud.platform.ports import Cache, EventBus
from cloud.platform.runtime import Platform
from cloud.platform.service_app import service_app
from cloud.platform.settings import CloudSettings

SERVICE = "parking"
MIGRATIONS = Path(__file__).parent / "migrations"


def build_app(settings: CloudSettings, *, bus: EventBus | None = None, cache: Cache | None = None) -> FastAPI:
    async def wire(platform: Platform) -> tuple[object, MqttLink]:
        service = ParkingService(platform.outbox, platform.cache)
        link = MqttLink.from_settings(settings, service=SERVICE, outbox=platform.outbox,
                                      categories=["bay", "site", "result"], handler=service.record_site_message)
        platform.start_task(service.run_power_limit_sync(link), "power-limit-sync")
        return service, link

    return service_app(SERVICE, settings, migrations=MIGRATIONS, wire=wire, router=router, bus=bus, cache=cache,
                       description="Parking bays, their occupancy and charger usage as the sites report "
                                   "them; the sites' power limits.")
