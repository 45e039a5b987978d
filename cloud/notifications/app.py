"""Composition root of the notification service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI

from cloud.notifications import SPEC
from cloud.notifications.api import router
from cloud.notifications.channels import Email, Resolver, Webhook, system_resolver
from cloud.notifications.domain import webhook_url_problem
from cloud.notifications.repository import SqlNotificationRepository
from cloud.notifications.service import QUEUE, NotificationService
from cloud.notifications.settings import NotificationSettings
from cloud.platform.ports import Cache, EventBus
from cloud.platform.runtime import Platform
from cloud.platform.service_app import service_app
from cloud.platform.settings import CloudSettings
from cloud.platform.unit_of_work import sql_units_of_work


def build_app(settings: CloudSettings, *, bus: EventBus | None = None, cache: Cache | None = None,
              notifications: NotificationSettings | None = None,
              clock: Callable[[], datetime] | None = None, resolve: Resolver | None = None) -> FastAPI:
    """``notifications``: the service's own settings (default: from ``EVPARK_NOTIFICATIONS_*``); ``clock``: for
    tests of quiet hours and reminders; ``resolve``: how webhook hosts are resolved (default: the system's), for
    tests of a name that points somewhere it may not."""
    chosen = notifications or NotificationSettings()
    production = settings.env == "production"
    for url in chosen.webhook_urls:
        problem = webhook_url_problem(url, production=production)
        if problem:
            raise ValueError(f"EVPARK_NOTIFICATIONS_WEBHOOK_URLS: {url!r} {problem}")
    clients: list[httpx.AsyncClient] = []

    async def wire(platform: Platform) -> tuple[object, None]:
        client = httpx.AsyncClient(follow_redirects=False)
        clients.append(client)
        service = NotificationService(sql_units_of_work(platform.outbox, SqlNotificationRepository), chosen,
                                      email=Email(chosen, settings.data_dir),
                                      webhook=Webhook(chosen, client, production=production,
                                                      resolve=resolve or system_resolver),
                                      now=clock or (lambda: datetime.now(UTC)), production=production)
        await platform.consume(QUEUE, dict.fromkeys(SPEC.consumes, service.on_event))
        platform.start_task("delivery", lambda: service.run_delivery())
        return service, None  # no MQTT link: notifications learn everything from events

    app = service_app(SPEC, settings, wire=wire, router=router, bus=bus, cache=cache)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[None]:
        async with inner(a):
            try:
                yield
            finally:
                while clients:
                    await clients.pop().aclose()

    app.router.lifespan_context = lifespan
    return app
