"""The one composition skeleton every domain service shares.

A service says only how it wires its use cases onto the platform (``wire``); this module
opens the platform, starts the MQTT link the wiring returns (supervised, with its parked
envelopes replayable), exposes both to the routers and readiness probe, and builds the app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from cloud.platform.app import create_app, service_readiness
from cloud.platform.mqtt_link import MqttLink
from cloud.platform.ops import service_figures
from cloud.platform.ports import Cache, EventBus
from cloud.platform.runtime import Platform, open_platform
from cloud.platform.settings import CloudSettings
from cloud.platform.spec import ServiceSpec

Wiring = Callable[[Platform], Awaitable[tuple[object, MqttLink | None]]]
"""Builds the service's use cases on the platform; returns them and the service's MQTT link, if any."""


def service_app(spec: ServiceSpec, settings: CloudSettings, *, wire: Wiring, router: APIRouter,
                bus: EventBus | None = None, cache: Cache | None = None) -> FastAPI:
    """The app of one service; routers find its use cases as ``request.app.state.<service>``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_platform(spec, settings, bus=bus, cache=cache) as platform:
            use_cases, link = await wire(platform)
            if link is not None:
                platform.replay_with(link.consumer, link.replay)
                platform.start_task("mqtt-link", link.run)
            setattr(app.state, spec.name, use_cases)
            app.state.platform = platform
            app.state.verifier = platform.verifier
            app.state.mqtt_link = link
            yield

    return create_app(spec.name, routers=[router], lifespan=lifespan, readiness=service_readiness,
                      status=service_figures, description=spec.description, settings=settings)
