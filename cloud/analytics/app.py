"""Composition root of the analytics service."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from cloud.analytics import SPEC
from cloud.analytics.api import router
from cloud.analytics.repository import SqlAnalyticsRepository
from cloud.analytics.service import QUEUE, AnalyticsService, Prober
from cloud.analytics.views import ServiceHealth
from cloud.platform.ports import Cache, EventBus
from cloud.platform.runtime import Platform
from cloud.platform.service_app import service_app
from cloud.platform.settings import CloudSettings
from cloud.platform.unit_of_work import sql_units_of_work
from cloud.registry import domain_services


def prober(settings: CloudSettings) -> Prober:
    """Every other service's /health and /ready, asked at once (1.5 s each at most)."""

    async def probe() -> list[ServiceHealth]:
        async with httpx.AsyncClient(timeout=1.5) as client:
            async def one(name: str) -> ServiceHealth:
                base = settings.upstream_url(name)
                try:
                    alive = (await client.get(f"{base}/health")).status_code == 200
                    ready = await client.get(f"{base}/ready")
                    checks = ready.json().get("checks", {}) if ready.headers.get("content-type", "").startswith(
                        "application/json") else {}
                    return ServiceHealth(service=name, healthy=alive, ready=ready.status_code == 200,
                                         checks={k: bool(v) for k, v in checks.items()} if isinstance(checks, dict)
                                         else {})
                except (httpx.HTTPError, ValueError):
                    return ServiceHealth(service=name, healthy=False, ready=False)

            return list(await asyncio.gather(*(one(s.name) for s in domain_services() if s.name != SPEC.name)))

    return probe


def build_app(settings: CloudSettings, *, bus: EventBus | None = None, cache: Cache | None = None) -> FastAPI:
    async def wire(platform: Platform) -> tuple[object, None]:
        service = AnalyticsService(sql_units_of_work(platform.outbox, SqlAnalyticsRepository),
                                   probe=prober(settings))
        await platform.consume(QUEUE, dict.fromkeys(SPEC.consumes, service.on_event))
        return service, None  # no MQTT link: analytics learns everything from events

    return service_app(SPEC, settings, wire=wire, router=router, bus=bus, cache=cache)
