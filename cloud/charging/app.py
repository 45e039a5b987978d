"""Composition root of the charging service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from cloud.charging import events
from cloud.charging.api import router
from cloud.charging.service import ChargingService
from cloud.platform.app import create_app, service_readiness
from cloud.platform.mqtt_link import MqttLink
from cloud.platform.ports import Cache, EventBus
from cloud.platform.runtime import open_platform
from cloud.platform.settings import CloudSettings

SERVICE = "charging"
MIGRATIONS = Path(__file__).parent / "migrations"


def build_app(settings: CloudSettings, *, bus: EventBus | None = None, cache: Cache | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_platform(SERVICE, settings, MIGRATIONS, bus=bus, cache=cache) as platform:
            service = ChargingService(platform.outbox, platform.cache)
            await platform.bus.subscribe(events.QUEUE, events.CONSUMES, service.on_vehicle_event)
            link = MqttLink.from_settings(settings, service=SERVICE, outbox=platform.outbox,
                                          categories=["session"], handler=service.record_session_message)
            platform.start_task(link.run(), "mqtt-link")
            app.state.charging = service
            app.state.platform = platform
            app.state.mqtt_link = link
            yield


    return create_app(SERVICE, routers=[router], lifespan=lifespan, readiness=service_readiness,
                      description="Charging sessions reported by the sites' edge agents.")
