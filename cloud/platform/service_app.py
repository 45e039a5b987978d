"""The one composition skeleton every domain service shares.

A service says only how it wires its use cases onto the platform (``wire``); this module
opens the platform, starts the MQTT link the wiring returns, exposes both to the routers and
readiness probe, and builds the FastAPI app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI

from cloud.platform.app import create_app, service_readiness
from cloud.platform.mqtt_link import MqttLink
from cloud.platform.ports import Cache, EventBus
from cloud.platform.runtime import Platform, open_platform
from cloud.platform.settings import CloudSettings

Wiring = Callable[[Platform], Awaitable[tuple[object, MqttLink]]]
"""Builds the service's use cases on the platform; returns them and the service's MQTT link."""


def service_app(service: str, settings: CloudSettings, *, migrations: Path, wire: Wiring, router: APIRouter,
                description: str, bus: EventBus | None = None, cache: Cache | None = None) -> FastAPI:
    """The app of one service; routers find its use cases as ``request.app.state.<service>``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_platform(service, settings, migrations, bus=bus, cache=cache) as platform:
            use_cases, link = await wire(platform)
            platform.start_task(link.run(), "mqtt-link")
            setattr(app.state, service, use_cases)
            app.state.platform = platform
            app.state.mqtt_link = link
            yield

    return create_app(service, routers=[router], lifespan=lifespan, readiness=service_readiness,
                      description=description)
