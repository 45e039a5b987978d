"""The composition root of a cloud service: builds its adapters from settings.

Nothing here runs at import time. ``open_platform`` connects the database (and migrates it),
the event bus and the cache, and runs the outbox relay, the replay of parked messages and the inbox
retention (:mod:`cloud.platform.retention`) under supervision; a service's wiring then adds its use
cases, consumers and loops on top.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog

from cloud.contracts.base import EventBody
from cloud.platform.cache import MemoryCache, RedisCache
from cloud.platform.consumers import Handler, TypedConsumer
from cloud.platform.db import Database
from cloud.platform.events import InProcessBus
from cloud.platform.identity import TokenVerifier
from cloud.platform.outbox import Outbox, OutboxRelay
from cloud.platform.parked import ParkedMessages, Replayer, ReplayHandler
from cloud.platform.ports import Cache, EventBus
from cloud.platform.rabbitmq import RabbitMQBus
from cloud.platform.retention import InboxRetention
from cloud.platform.settings import CloudSettings
from cloud.platform.spec import ServiceSpec
from cloud.platform.supervisor import LoopFactory, Supervisor

log = structlog.get_logger(__name__)


@dataclass
class Platform:
    spec: ServiceSpec
    settings: CloudSettings
    db: Database
    outbox: Outbox
    bus: EventBus
    cache: Cache
    parked: ParkedMessages
    supervisor: Supervisor
    replayer: Replayer
    verifier: TokenVerifier
    """Checks the access token of every request (``CurrentUser``)."""
    consumers: list[TypedConsumer] = field(default_factory=list)

    @property
    def service(self) -> str:
        return self.spec.name

    def start_task(self, name: str, loop: LoopFactory) -> Any:
        """Run a long-lived loop of this service, supervised: restarted with back-off if it dies,
        reported by ``/ready`` while it is down, cancelled when the platform closes."""
        return self.supervisor.start(name, loop)

    def replay_with(self, consumer: str, handler: ReplayHandler) -> None:
        """Tell the replay loop how to re-deliver a parked message of ``consumer`` (e.g. the MQTT link)."""
        self.replayer.register(consumer, handler)

    async def consume(self, queue: str, handlers: Mapping[type[EventBody], Handler]) -> TypedConsumer:
        """Consume typed events into the durable ``queue``; what cannot be handled is parked in this
        service's database with the reason, and ``evpark events replay`` re-delivers it."""
        if not queue.startswith(self.spec.queue_prefix):
            raise ValueError(f"queue {queue!r} of {self.service} must start with {self.spec.queue_prefix!r}")
        undeclared = [model.__name__ for model in handlers if model not in self.spec.consumes]
        if undeclared:
            raise ValueError(f"{self.service} consumes {', '.join(undeclared)} but its SPEC.consumes does not say so")
        consumer = TypedConsumer(queue, handlers)
        await self.bus.subscribe(queue, consumer.routing_keys, consumer, park=self.parked.sink(queue))
        self.replay_with(queue, consumer.replay)
        self.consumers.append(consumer)
        return consumer

    def readiness(self) -> dict[str, bool]:
        return {f"loop:{name}": up for name, up in self.supervisor.status().items()}


def build_bus(settings: CloudSettings, service: str) -> EventBus:
    if settings.amqp_url:
        return RabbitMQBus(settings.amqp_url, service=service)
    return InProcessBus()


def build_verifier(settings: CloudSettings) -> TokenVerifier:
    url = settings.jwks_endpoint()
    return TokenVerifier(issuer=settings.jwt_issuer, audience=settings.jwt_audience, jwks_url=url or None,
                         jwks=None if url else {"keys": []},  # no issuer configured: no token is valid
                         roles_claim=settings.jwt_roles_claim, sites_claim=settings.jwt_sites_claim)


def build_cache(settings: CloudSettings) -> Cache:
    if settings.redis_url:
        return RedisCache(settings.redis_url, prefix=settings.cache_prefix)
    return MemoryCache()


@asynccontextmanager
async def open_platform(spec: ServiceSpec, settings: CloudSettings, *, bus: EventBus | None = None,
                        cache: Cache | None = None) -> AsyncIterator[Platform]:
    """Adapters for one service. ``bus``/``cache`` given by the caller are shared, not closed here."""
    service = spec.name
    db = Database(settings.database_url_for(service))
    await db.connect()
    own_bus = bus is None
    own_cache = cache is None
    the_bus = bus or build_bus(settings, service)
    the_cache = cache or build_cache(settings)
    supervisor = Supervisor(service)
    try:
        if spec.migrations is not None and settings.migrate_on_start:
            await db.migrate(spec.migrations)
        if own_bus:
            await the_bus.start()
        outbox = Outbox(db, source=service, publishes=spec.publishes)
        parked = ParkedMessages(db, service=service)
        replayer = Replayer(parked)
        platform = Platform(spec, settings, db, outbox, the_bus, the_cache, parked, supervisor, replayer,
                            build_verifier(settings))
        relay = OutboxRelay(outbox, the_bus, service=service)
        platform.start_task("outbox-relay", relay.run)
        platform.start_task("parked-replay", replayer.run)
        retention = InboxRetention(db, service=service, days=settings.inbox_retention_days)
        platform.start_task("inbox-retention", retention.run)
        yield platform
    finally:
        await supervisor.stop()
        if own_bus:
            await the_bus.close()
        if own_cache:
            await the_cache.close()
        await db.close()
