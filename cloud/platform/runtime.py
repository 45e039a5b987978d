"""The composition root of a cloud service: builds its adapters from settings.

Nothing here runs at import time. ``open_platform`` connects the database (and migrates it),
the event bus, the cache, and runs the outbox relay; a service's ``bootstrap`` then wires its
use cases and consumers on top.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from cloud.platform.cache import MemoryCache, RedisCache
from cloud.platform.db import Database
from cloud.platform.events import InProcessBus
from cloud.platform.outbox import Outbox, OutboxRelay
from cloud.platform.ports import Cache, EventBus
from cloud.platform.rabbitmq import RabbitMQBus
from cloud.platform.settings import CloudSettings

log = structlog.get_logger(__name__)


@dataclass
class Platform:
    service: str
    settings: CloudSettings
    db: Database
    outbox: Outbox
    bus: EventBus
    cache: Cache
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def start_task(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """Run a long-lived loop of this service; the platform keeps the reference and cancels it."""
        task = asyncio.create_task(coro, name=f"{self.service}:{name}")
        self.tasks.append(task)
        task.add_done_callback(_report_crash)
        return task


def _report_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task died", task=task.get_name(), error=repr(task.exception()))


def build_bus(settings: CloudSettings, service: str) -> EventBus:
    if settings.amqp_url:
        return RabbitMQBus(settings.amqp_url, service=service)
    return InProcessBus()


def build_cache(settings: CloudSettings) -> Cache:
    if settings.redis_url:
        return RedisCache(settings.redis_url, prefix=settings.cache_prefix)
    return MemoryCache()


@asynccontextmanager
async def open_platform(service: str, settings: CloudSettings, migrations: Path | None, *,
                        bus: EventBus | None = None, cache: Cache | None = None) -> AsyncIterator[Platform]:
    """Adapters for one service. ``bus``/``cache`` given by the caller are shared, not closed here."""
    db = Database(settings.database_url_for(service))
    await db.connect()
    own_bus = bus is None
    own_cache = cache is None
    the_bus = bus or build_bus(settings, service)
    the_cache = cache or build_cache(settings)
    platform: Platform | None = None
    try:
        if migrations is not None and settings.migrate_on_start:
            await db.migrate(migrations)
        if own_bus:
            await the_bus.start()
        outbox = Outbox(db)
        platform = Platform(service, settings, db, outbox, the_bus, the_cache)
        relay = OutboxRelay(outbox, the_bus, service=service)
        platform.start_task(relay.run(), "outbox-relay")
        yield platform
    finally:
        if platform is not None:
            for task in platform.tasks:
                task.cancel()
            await asyncio.gather(*platform.tasks, return_exceptions=True)
        if own_bus:
            await the_bus.close()
        if own_cache:
            await the_cache.close()
        await db.close()

