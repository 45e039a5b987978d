"""The embedded event bus, with the topic routing of RabbitMQ, and the topic matcher both share.

:class:`InProcessBus` is what ``evpark up`` runs on: every service of the process shares one
bus. It routes exactly like a RabbitMQ topic exchange (:func:`topic_matches`): a queue is
bound to patterns, ``*`` is one word, ``#`` zero or more words; every bound queue gets an
event once, even when several of its patterns match.

There is no broker to hold an event durably, so :meth:`InProcessBus.publish` hands the event
to each bound queue's handler itself and returns only when every handler has finished. A
handler that raises is retried with the platform's back-off; after ``max_attempts`` (or at
once on :class:`~cloud.platform.ports.PoisonEvent`) the event is parked: handed to the queue's
park sink (the consuming service's parked-message table, from which ``evpark events replay``
re-delivers it), or, without a sink or when the sink fails, kept in ``bus.parked[queue]`` and
logged at error with the whole event: it is never dropped silently. Like RabbitMQ, the bus delivers at least
once and may deliver an event id again (a retried publish); consumers dedupe by event id in
their inbox, not here.

Each queue's handler gets its own copy of the event, decoded from the JSON a broker would
carry, so a payload behaves the same on both adapters (a ``Decimal`` arrives as a string)
and a payload that cannot be serialised fails at ``publish`` on both.

Because ``publish`` waits for the handlers, the events of one publisher reach a queue in
order, and a handler may itself publish on the bus (no lock is held). ``bus.parked`` lives
in memory only, so the error log of a parked event carries the whole event as JSON: after a
restart of the embedded process, that log line is what is left of it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

import structlog

from cloud.platform.backoff import delay
from cloud.platform.metrics import MESSAGES_CONSUMED
from cloud.platform.ports import Event, EventHandler, ParkedMessage, ParkSink, PoisonEvent, exchange_for

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 5
"""Deliveries of one event to one queue before it is parked (both adapters)."""

_WILDCARDS = frozenset({"*", "#"})


def topic_matches(pattern: str, routing_key: str) -> bool:
    """Whether a RabbitMQ topic binding ``pattern`` matches ``routing_key``.

    Words are separated by dots; a whole word ``*`` matches exactly one word, a whole word
    ``#`` matches zero or more words; anything else matches itself literally.
    """
    keys = routing_key.split(".")
    positions = {0}  # how many words of the key the pattern read so far may have consumed
    for word in _words(pattern):
        following: set[int] = set()
        for at in positions:
            if word == "#":
                following.update(range(at, len(keys) + 1))
            elif at < len(keys) and (word == "*" or word == keys[at]):
                following.add(at + 1)
        if not following:
            return False
        positions = following
    return len(keys) in positions


@lru_cache(maxsize=1024)
def _words(pattern: str) -> tuple[str, ...]:
    return tuple(pattern.split("."))


def exchange_for_pattern(pattern: str) -> str:
    """The exchange a binding pattern belongs to: ``vehicle.*`` → ``vehicle.events``.

    The first word names the domain, so it must be literal: ``*.registered`` or ``#`` would
    have to be bound to every exchange, which the bus does not do.
    """
    domain = pattern.split(".", 1)[0]
    if domain in _WILDCARDS:
        raise ValueError(f"pattern {pattern!r} must start with a domain, e.g. 'vehicle.*'")
    return exchange_for(pattern)


@dataclass(frozen=True)
class ParkedEvent:
    """An event a queue's handler could not handle, kept for an operator."""

    event: Event
    error: str
    attempts: int
    parked_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class _Queue:
    name: str
    patterns: list[str] = field(default_factory=list)
    handlers: list[EventHandler] = field(default_factory=list)
    park: ParkSink | None = None
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    def routes(self, routing_key: str) -> bool:
        return any(topic_matches(pattern, routing_key) for pattern in self.patterns)

    def next_handler(self) -> EventHandler:
        # Several subscribers of one queue compete for its events, round-robin, as on RabbitMQ.
        return self.handlers[next(self._turn) % len(self.handlers)]


class InProcessBus:
    """The embedded :class:`~cloud.platform.ports.EventBus`; see the module docstring."""

    def __init__(self, *, max_attempts: int = MAX_ATTEMPTS, retry_delay: float = 0.05,
                 service: str = "embedded") -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._max_attempts = max_attempts
        self._retry_delay = retry_delay
        self._service = service
        self._queues: dict[str, _Queue] = {}
        self._closed = False
        self.parked: defaultdict[str, list[ParkedEvent]] = defaultdict(list)
        """Events each queue gave up on, oldest first."""

    async def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    async def healthy(self) -> bool:
        return not self._closed

    async def waiting(self, queues: Sequence[str]) -> dict[str, int | None]:
        """Always 0: :meth:`publish` returns only once every queue handled (or parked) the event."""
        return dict.fromkeys(queues, 0)

    async def subscribe(self, queue: str, routing_keys: Sequence[str], handler: EventHandler, *,
                        park: ParkSink | None = None) -> None:
        if isinstance(routing_keys, str):
            raise TypeError("routing_keys must be a sequence of patterns, not one string")
        if not routing_keys:
            raise ValueError(f"queue {queue!r} needs at least one routing key")
        for pattern in routing_keys:
            exchange_for_pattern(pattern)
        bound = self._queues.setdefault(queue, _Queue(queue))
        bound.patterns.extend(p for p in routing_keys if p not in bound.patterns)
        bound.handlers.append(handler)
        if park is not None:
            bound.park = park

    async def publish(self, event: Event) -> None:
        """Deliver ``event`` to every bound queue; return when each handled or parked it."""
        if self._closed:
            raise RuntimeError("the event bus is closed")
        exchange_for(event.name)  # a name without a domain fails here, as on the broker adapter
        wire = event.model_dump_json()
        targets = [queue for queue in self._queues.values() if queue.routes(event.name)]
        if not targets:
            log.debug("event routed to no queue", name=event.name, id=str(event.id))
            return
        # A task group, not gather: a publisher cancelled (its service stopping) waits for the handlers to finish
        # their cleanup instead of leaving them behind, still writing to databases about to close.
        async with asyncio.TaskGroup() as group:
            for queue in targets:
                group.create_task(self._deliver(queue, Event.model_validate_json(wire)))

    async def _deliver(self, queue: _Queue, event: Event) -> None:
        for attempt in range(1, self._max_attempts + 1):
            try:
                await queue.next_handler()(event)
            except PoisonEvent as exc:
                await self._park(queue, event, str(exc), attempt)
                return
            except Exception as exc:
                if attempt == self._max_attempts:
                    await self._park(queue, event, f"handler failed {attempt} times: {exc!r}", attempt)
                    return
                log.warning("event handler failed; retrying", queue=queue.name, name=event.name,
                            id=str(event.id), attempt=attempt, error=repr(exc))
                await asyncio.sleep(delay(attempt, initial=self._retry_delay, maximum=30.0))
            else:
                MESSAGES_CONSUMED.labels(self._service, queue.name, "handled").inc()
                return

    async def _park(self, queue: _Queue, event: Event, error: str, attempts: int) -> None:
        if queue.park is not None:
            try:
                await queue.park(ParkedMessage(source=queue.name, payload=event.model_dump_json(), error=error,
                                               attempts=attempts))
                MESSAGES_CONSUMED.labels(self._service, queue.name, "parked").inc()
                return
            except Exception as exc:  # the service's database is away: keep it here, in the log too
                error = f"{error} (and the park sink failed: {exc!r})"
        self.parked[queue.name].append(ParkedEvent(event, error, attempts))
        MESSAGES_CONSUMED.labels(self._service, queue.name, "parked").inc()
        log.error("event parked", queue=queue.name, name=event.name, id=str(event.id), attempts=attempts,
                  error=error, event_json=event.model_dump_json())
