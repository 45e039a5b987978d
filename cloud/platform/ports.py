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

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cloud.contracts.base import Event, exchange_for

__all__ = ["Cache", "Event", "EventBus", "EventHandler", "ParkSink", "ParkedMessage", "PoisonEvent", "exchange_for"]


EventHandler = Callable[[Event], Awaitable[None]]
"""Handles one event. Raising means: not handled, redeliver later (or park after retries)."""


class PoisonEvent(Exception):
    """Raised by a handler for an event that can never be handled: park it, don't retry."""


@dataclass(frozen=True)
class ParkedMessage:
    """A message a consumer gave up on, as the bus hands it to a :data:`ParkSink`."""

    source: str
    """The queue (or, for MQTT, the topic) it came from."""
    payload: str
    """The whole message as it arrived (an event's JSON envelope)."""
    error: str
    attempts: int


ParkSink = Callable[[ParkedMessage], Awaitable[None]]
"""Stores a parked message durably (the consuming service's parked-message table). Raising
means it could not: the bus keeps the message (RabbitMQ requeues it) rather than lose it."""


class EventBus(Protocol):
    async def start(self) -> None:
        """Connect; declare exchanges. Idempotent."""

    async def close(self) -> None: ...

    async def publish(self, event: Event) -> None:
        """Return only once the broker has confirmed the event (durably queued)."""

    async def subscribe(self, queue: str, routing_keys: Sequence[str], handler: EventHandler, *,
                        park: ParkSink | None = None) -> None:
        """Consume ``routing_keys`` (topic patterns, e.g. ``vehicle.*``) into a durable ``queue``.

        The exchange of each pattern is derived from its first segment. A message is
        acknowledged after ``handler`` returns; a handler exception redelivers it, up to a
        few attempts, then the message is parked; PoisonEvent parks it at once. Events with a
        malformed body are parked as well. Parked means: handed to ``park`` (the service's
        parked-message table, from which ``evpark events replay`` re-delivers it), or without
        one kept by the adapter (``<queue>.parked`` on RabbitMQ, ``bus.parked`` in process).
        """

    async def healthy(self) -> bool: ...

    async def waiting(self, queues: Sequence[str]) -> dict[str, int | None]:
        """How many messages wait in each of ``queues`` to be delivered to its consumer (the consumer
        lag); None for a queue the broker did not report. The in-process bus hands each event to its
        consumers as it is published, so nothing waits there: 0."""


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def delete_many(self, keys: Iterable[str]) -> None:
        """Delete every key at once (one round trip: Redis ``DEL k1 k2 …``); a missing key is no error."""

    async def incr(self, key: str, ttl_seconds: float) -> int:
        """Increment a counter; the TTL is set when the counter is created (fixed window)."""

    async def close(self) -> None: ...

    async def healthy(self) -> bool: ...
