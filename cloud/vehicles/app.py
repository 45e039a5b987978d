"""Composition root of the vehicle registry."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from cloud.platform.mqtt_link import MqttLink
from cloud.platform.ports import Cache, EventBus
from cloud.platform.runtime import Platform
from cloud.platform.service_app import service_app
from cloud.platform.settings import CloudSettings
from cloud.vehicles.api import router
from cloud.vehicles.service import VehicleService

SERVICE = "vehicles"
MIGRATIONS = Path(__file__).parent / "migrations"


def build_app(settings: CloudSettings, *, bus: EventBus | None = None, cache: Cache | None = None) -> FastAPI:
    async def wire(platform: Platform) -> tuple[object, MqttLink]:
        service = VehicleService(platform.outbox)
        link = MqttLink.from_settings(settings, service=SERVICE, outbox=platform.outbox,
                                      categories=["site", "result"], handler=service.on_site_message)
        platform.start_task(service.run_sync(link), "authlist-sync")
        return service, link

    return service_app(SERVICE, settings, migrations=MIGRATIONS, wire=wire, router=router, bus=bus, cache=cache,
                       description="Vehicles and the RFID idTags that may charge them.")
