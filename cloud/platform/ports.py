"""The ports every cloud service talks to, each with an embedded and a production adapter.

==========  =============================  ==============================
port        embedded default               production
==========  =============================  ==============================
EventBus    InProcessBus (events.py)       RabbitMQBus (rabbitmq.py)
Cache       MemoryCache (cache.py)         RedisCache (cache.py)
Database    SQLite file (db.py)            PostgreSQL per service (db.py)
==========  =============================  ==============================
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field


class Event(BaseModel):
    """A domain event travelling between services.

    ``name`` is the routing key (``charging.session_completed``); its first segment names
    the topic exchange it is published on (``charging.events``).
    """

    model_config = ConfigDict(frozen=True)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    name: str
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    source: str = ""
    payload: dict[str, Any] = Field(default_factory=dict)

    @property
    def exchange(self) -> str:
        return exchange_for(self.name)


def exchange_for(routing_key: str) -> str:
    """``vehicle.registered`` → ``vehicle.events``."""
    domain = routing_key.split(".", 1)[0]
    if not domain or domain == routing_key:
        raise ValueError(f"event name {routing_key!r} must look like '<domain>.<what_happened>'")
    return f"{domain}.events"


EventHandler = Callable[[Event], Awaitable[None]]
"""Handles one event. Raising means: not handled, redeliver later (or park after retries)."""


class PoisonEvent(Exception):
    """Raised by a handler for an event that can never be handled: park it, don't retry."""


class EventBus(Protocol):
    async def start(self) -> None:
        """Connect; declare exchanges. Idempotent."""

    async def close(self) -> None: ...

    async def publish(self, event: Event) -> None:
        """Return only once the broker has confirmed the event (durably queued)."""

    async def subscribe(self, queue: str, routing_keys: Sequence[str], handler: EventHandler) -> None:
        """Consume ``routing_keys`` (topic patterns, e.g. ``vehicle.*``) into a durable ``queue``.

        The exchange of each pattern is derived from its first segment. A message is
        acknowledged after ``handler`` returns; a handler exception redelivers it, up to a
        few attempts, then the message is parked in ``<queue>.parked``; PoisonEvent parks it
        at once. Events with a malformed body are parked as well.
        """

    async def healthy(self) -> bool: ...


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def incr(self, key: str, ttl_seconds: float) -> int:
        """Increment a counter; the TTL is set when the counter is created (fixed window)."""

    async def close(self) -> None: ...

    async def healthy(self) -> bool: ...
