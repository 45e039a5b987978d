"""Composition root of the vehicle registry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from cloud.platform.app import create_app, service_readiness
from cloud.platform.mqtt_link import MqttLink
from cloud.platform.ports import Cache, EventBus
from cloud.platform.runtime import open_platform
from cloud.platform.settings import CloudSettings
from cloud.vehicles.api import router
from cloud.vehicles.service import VehicleService

SERVICE = "vehicles"
MIGRATIONS = Path(__file__).parent / "migrations"


def build_app(settings: CloudSettings, *, bus: EventBus | None = None, cache: Cache | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_platform(SERVICE, settings, MIGRATIONS, bus=bus, cache=cache) as platform:
            service = VehicleService(platform.outbox)
            link = MqttLink.from_settings(settings, service=SERVICE, outbox=platform.outbox,
                                          categories=["site", "result"], handler=service.on_site_message)
            platform.start_task(link.run(), "mqtt-link")
            platform.start_task(service.run_sync(link), "authlist-sync")
            app.state.vehicles = service
            app.state.platform = platform
            app.state.mqtt_link = link
            yield


    return create_app(SERVICE, routers=[router], lifespan=lifespan, readiness=service_readiness,
                      description="Vehicles and the RFID idTags that may charge them.")
