"""Composition root of the parking service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from cloud.parking.api import router
from cloud.parking.service import ParkingService
from cloud.platform.app import create_app, service_readiness
from cloud.platform.mqtt_link import MqttLink
from cloud.platform.ports import Cache, EventBus
from cloud.platform.runtime import open_platform
from cloud.platform.settings import CloudSettings

SERVICE = "parking"
MIGRATIONS = Path(__file__).parent / "migrations"


def build_app(settings: CloudSettings, *, bus: EventBus | None = None, cache: Cache | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_platform(SERVICE, settings, MIGRATIONS, bus=bus, cache=cache) as platform:
            service = ParkingService(platform.outbox, platform.cache)
            link = MqttLink.from_settings(settings, service=SERVICE, outbox=platform.outbox,
                                          categories=["bay", "site"], handler=service.record_site_message)
            platform.start_task(link.run(), "mqtt-link")
            app.state.parking = service
            app.state.platform = platform
            app.state.mqtt_link = link
            yield


    return create_app(SERVICE, routers=[router], lifespan=lifespan, readiness=service_readiness,
                      description="Parking bays and their occupancy, reported by the sites' sensors.")
