"""Composition root of the charging service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from cloud.charging import events
from cloud.charging.api import router
from cloud.charging.service import ChargingService
from cloud.platform.mqtt_link import MqttLink
from cloud.platform.ports import Cache, EventBus
from cloud.platform.runtime import Platform
from cloud.platform.service_app import service_app
from cloud.platform.settings import CloudSettings

SERVICE = "charging"
MIGRATIONS = Path(__file__).parent / "migrations"


def build_app(settings: CloudSettings, *, bus: EventBus | None = None, cache: Cache | None = None) -> FastAPI:
    async def wire(platform: Platform) -> tuple[object, MqttLink]:
        service = ChargingService(platform.outbox, platform.cache)
        await platform.bus.subscribe(events.QUEUE, events.CONSUMES, service.on_vehicle_event)
        link = MqttLink.from_settings(settings, service=SERVICE, outbox=platform.outbox, categories=["session"],
                                      handler=service.record_session_message)
        return service, link

    return service_app(SERVICE, settings, migrations=MIGRATIONS, wire=wire, router=router, bus=bus, cache=cache,
                       description="Charging sessions reported by the sites' edge agents.")
