"""What the event-bus contract tests need from each adapter, behind one small interface.

The contract is written once against :class:`BusHarness`; the in-process harness hands out
its one bus (a process has one), the RabbitMQ harness a new connection per ``bus()`` on the
test's fresh vhost.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aio_pika

from cloud.platform.events import InProcessBus
from cloud.platform.ports import Event, EventBus, PoisonEvent
from cloud.platform.rabbitmq import ATTEMPTS_HEADER, ERROR_HEADER, RabbitMQBus, parked_queue

RETRY_DELAY = 0.01  # keeps retry tests fast; production uses the adapters' defaults


async def eventually(check: Callable[[], object], within: float = 10.0, what: str = "condition") -> None:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Recorder:
    """An event handler that remembers each call; it can fail its first calls on purpose."""

    fail_first: int = 0
    poison: bool = False
    always_fail: bool = False
    calls: list[Event] = field(default_factory=list)
    handled: list[Event] = field(default_factory=list)

    async def __call__(self, event: Event) -> None:
        self.calls.append(event)
        if self.poison:
            raise PoisonEvent("payload can never be handled")
        if self.always_fail or len(self.calls) <= self.fail_first:
            raise RuntimeError(f"handler failure #{len(self.calls)}")
        self.handled.append(event)

    def names(self) -> list[str]:
        return [event.name for event in self.handled]


@dataclass(frozen=True)
class Parked:
    event_id: str | None
    error: str
    attempts: int
    body: bytes = b""


class BusHarness(Protocol):
    has_broker: bool
    """True when events outlive the bus object (a broker holds them)."""

    async def bus(self) -> EventBus: ...

    async def stop(self, bus: EventBus) -> None: ...

    async def parked(self, queue: str) -> list[Parked]: ...

    async def close(self) -> None: ...


class InProcessHarness:
    has_broker = False

    def __init__(self) -> None:
        self._bus = InProcessBus(retry_delay=RETRY_DELAY)

    async def bus(self) -> EventBus:
        await self._bus.start()
        return self._bus

    async def stop(self, bus: EventBus) -> None:
        """An embedded bus cannot be stopped and come back with its queues; nothing to do."""

    async def parked(self, queue: str) -> list[Parked]:
        return [Parked(str(p.event.id), p.error, p.attempts) for p in self._bus.parked.get(queue, [])]

    async def close(self) -> None:
        await self._bus.close()


class RabbitMQHarness:
    has_broker = True

    def __init__(self, url: str) -> None:
        self.url = url
        self._buses: list[RabbitMQBus] = []

    async def bus(self, **options: Any) -> RabbitMQBus:
        settings: dict[str, Any] = {"retry_delay": RETRY_DELAY, "reconnect_interval": 0.3, **options}
        bus = RabbitMQBus(self.url, service="contract-test", **settings)
        await bus.start()
        self._buses.append(bus)
        return bus

    async def stop(self, bus: EventBus) -> None:
        await bus.close()

    async def parked(self, queue: str) -> list[Parked]:
        """Read ``<queue>.parked`` without consuming it (nothing is acked)."""
        found: list[Parked] = []
        connection = await aio_pika.connect(self.url)
        try:
            channel = await connection.channel()
            amqp_queue = await channel.declare_queue(parked_queue(queue), durable=True)
            while (message := await amqp_queue.get(no_ack=False, fail=False)) is not None:
                headers = message.headers or {}
                found.append(Parked(message.message_id, str(headers.get(ERROR_HEADER, "")),
                                    int(headers.get(ATTEMPTS_HEADER, 0)), message.body))  # type: ignore[arg-type]
        finally:
            await connection.close()  # unacked: they stay parked
        return found

    async def depth(self, queue: str) -> int:
        """Messages ready in ``queue``; call after the consumers were stopped (unacked count then too)."""
        connection = await aio_pika.connect(self.url)
        try:
            channel = await connection.channel()
            amqp_queue = await channel.declare_queue(queue, durable=True)
            return int(amqp_queue.declaration_result.message_count or 0)
        finally:
            await connection.close()

    async def close(self) -> None:
        for bus in self._buses:
            await bus.close()
