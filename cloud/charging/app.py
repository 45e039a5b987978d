"""Composition root of the charging service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from cloud.charging import events
from cloud.charging.api import router
from cloud.charging.service import ChargingService
from cloud.platform.app import create_app
from cloud.platform.mqtt_link import MqttLink
from cloud.platform.ports import Cache, EventBus
from cloud.platform.runtime import open_platform
from cloud.platform.settings import CloudSettings
from mqtt import Topics

SERVICE = "charging"
MIGRATIONS = Path(__file__).parent / "migrations"


def build_app(settings: CloudSettings, *, bus: EventBus | None = None, cache: Cache | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_platform(SERVICE, settings, MIGRATIONS, bus=bus, cache=cache) as platform:
            service = ChargingService(platform.outbox, platform.cache)
            await platform.bus.subscribe(events.QUEUE, events.CONSUMES, service.on_vehicle_event)
            link = MqttLink(service=SERVICE, outbox=platform.outbox, host=settings.mqtt_host,
                            port=settings.mqtt_port, topics=Topics(settings.mqtt_topic_root),
                            categories=["session"], handler=service.record_session_message,
                            username=settings.mqtt_username,
                            password=settings.mqtt_password.get_secret_value() if settings.mqtt_password else None,
                            tls=settings.mqtt_tls)
            platform.start_task(link.run(), "mqtt-link")
            app.state.charging = service
            app.state.platform = platform
            app.state.mqtt_link = link
            yield

    async def readiness(app: FastAPI) -> dict[str, bool]:
        platform = app.state.platform
        return {"database": await platform.db.ping(), "event_bus": await platform.bus.healthy(),
                "cache": await platform.cache.healthy(), "mqtt": app.state.mqtt_link.connected.is_set()}

    return create_app(SERVICE, routers=[router], lifespan=lifespan, readiness=readiness,
                      description="Charging sessions reported by the sites' edge agents.")
