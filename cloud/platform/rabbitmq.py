"""The production event bus: RabbitMQ topic exchanges, through aio-pika.

Wire format (one per event): published on the durable topic exchange ``<domain>.events``
with routing key and AMQP ``type`` = the event name, ``message_id`` = the event id, content
type ``application/json``, persistent, body = ``Event.model_dump_json()``. :meth:`publish`
returns only after the broker confirmed the message (publisher confirms), i.e. after it was
routed to every bound durable queue.

Consuming (:meth:`RabbitMQBus.subscribe`): a durable queue bound to the patterns, plus a
durable ``<queue>.parked``. A message is acked after the handler returned. When the handler
raises, the message is held for a back-off, re-published to the *tail of its own queue*
(default exchange, so no other queue sees it again) with the header
``x-evpark-attempts`` counting the failed deliveries, and only then acked; so a failing
event never hot-loops and never blocks the events behind it. After ``max_attempts``
deliveries, on :class:`~cloud.platform.ports.PoisonEvent`, or when the body is not an
event, the message is parked and then acked: handed to the subscription's park sink (the
consuming service's parked-message table) when it has one, else copied into ``<queue>.parked``
with ``x-evpark-error``. If the sink fails, the message is handed back to the broker.
Each re-publish waits for its confirm before the ack, so a crash in between duplicates a
message but never loses one. Delivery is at least once: the same event id may arrive again,
and consumers dedupe by event id in their inbox.

Reconnects: the connection is ``connect_robust``. When it drops, in-flight handlers are
cancelled and their unacked messages go back to the queue on the broker (and come again,
marked redelivered). aio-pika reconnects at once and then every ``reconnect_interval``
seconds (jittered per bus, so a restarted broker is not hit by every service in the same
instant); once connected it re-opens each channel, restores its prefetch, re-declares its
exchanges, queues and bindings and re-starts its consumers with the same handler, so a
subscription outlives a dropped connection or a broker restart without help (queues and
persistent messages are durable, so a restart keeps them). A ``publish`` during the outage
raises; its caller (the outbox relay) keeps the event and retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
    ConsumerTag,
)
from pydantic import ValidationError
from yarl import URL

from cloud.platform.backoff import delay
from cloud.platform.events import MAX_ATTEMPTS, exchange_for_pattern
from cloud.platform.metrics import MESSAGES_CONSUMED
from cloud.platform.ports import Event, EventHandler, ParkedMessage, ParkSink, PoisonEvent, exchange_for

log = structlog.get_logger(__name__)

ATTEMPTS_HEADER = "x-evpark-attempts"
"""Failed deliveries of this message so far (absent on the first delivery)."""
ERROR_HEADER = "x-evpark-error"
"""Why a parked message was parked."""
QUEUE_HEADER = "x-evpark-queue"
"""The queue a parked message was parked from."""
PARKED_AT_HEADER = "x-evpark-parked-at"

_MAX_BACKOFF_SECONDS = 30.0


def parked_queue(queue: str) -> str:
    return f"{queue}.parked"


@dataclass
class _Subscription:
    queue: str
    handler: EventHandler
    turn: asyncio.Semaphore
    park: ParkSink | None = None


@dataclass
class _Consumer:
    channel: AbstractRobustChannel
    queue: AbstractQueue
    tag: ConsumerTag


class RabbitMQBus:
    """The production :class:`~cloud.platform.ports.EventBus`; see the module docstring.

    ``prefetch`` is how many unacked messages the broker sends ahead to one subscription;
    ``concurrency`` how many of them its handler works on at once. The default 1 handles a
    queue's events in their order (a retried event moves behind the ones published after it).
    ``retry_delay`` is the first back-off before a failed message is re-queued; it doubles
    per attempt.
    """

    def __init__(self, url: str, *, service: str, prefetch: int = 32, concurrency: int = 1,
                 max_attempts: int = MAX_ATTEMPTS, retry_delay: float = 0.5, publish_timeout: float = 15.0,
                 reconnect_interval: float = 5.0) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 1 <= concurrency <= prefetch:
            raise ValueError("need 1 <= concurrency <= prefetch")
        self._url = url
        self._service = service
        self._prefetch = prefetch
        self._concurrency = concurrency
        self._max_attempts = max_attempts
        self._retry_delay = retry_delay
        self._publish_timeout = publish_timeout
        self._reconnect_interval = reconnect_interval
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._consumers: list[_Consumer] = []
        self._inflight: set[asyncio.Task[Any]] = set()
        self._start_lock = asyncio.Lock()

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        async with self._start_lock:
            if self._connection is not None:
                return
            connection = await aio_pika.connect_robust(
                self._url, client_properties={"connection_name": f"evpark:{self._service}"},
                # aio-pika retries at a fixed interval; jittered once per bus by the platform's back-off
                reconnect_interval=delay(1, initial=self._reconnect_interval, maximum=self._reconnect_interval * 1.2,
                                         jitter=0.2),
            )
            try:
                # on_return_raises: a retry or park copy that reaches no queue must fail, not vanish.
                publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
            except BaseException:
                await connection.close()
                raise
            self._connection, self._publisher = connection, publisher
            log.info("event bus connected", service=self._service, broker=_without_password(self._url))

    async def close(self, drain_seconds: float = 5.0) -> None:
        """Stop consuming, let in-flight handlers finish (up to ``drain_seconds``), disconnect."""
        connection = self._connection
        if connection is None:
            return
        for consumer in self._consumers:
            try:
                async with asyncio.timeout(2):
                    await consumer.queue.cancel(consumer.tag)
            except Exception as exc:  # connection already down: the broker requeues on its own
                log.debug("consumer cancel failed", queue=consumer.queue.name, error=repr(exc))
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=drain_seconds)
        self._connection, self._publisher = None, None
        self._exchanges.clear()
        self._consumers.clear()
        # Handlers still running are cancelled here; their messages are unacked and requeued.
        await connection.close()

    async def healthy(self) -> bool:
        connection, publisher = self._connection, self._publisher
        if connection is None or publisher is None or connection.is_closed or publisher.is_closed:
            return False
        connected = getattr(connection, "connected", None)  # cleared by aio-pika while reconnecting
        return connected is None or bool(connected.is_set())

    async def waiting(self, queues: Sequence[str]) -> dict[str, int | None]:
        """Ready messages of each queue, by a passive declare on a channel of its own (a queue that does
        not exist closes the channel it is asked on: never the publisher's or a consumer's)."""
        connection = self._started()[0]
        counts: dict[str, int | None] = {}
        for queue in queues:
            try:
                async with asyncio.timeout(5), connection.channel() as channel:
                    declared = await channel.declare_queue(queue, passive=True, robust=False)
                    counts[queue] = declared.declaration_result.message_count
            except Exception as exc:  # no such queue, or the broker away: unknown, not an error of the caller
                log.debug("queue depth unknown", queue=queue, error=repr(exc))
                counts[queue] = None
        return counts

    # --- publishing ------------------------------------------------------------------

    async def publish(self, event: Event) -> None:
        publisher = self._started()[1]
        exchange = await self._exchange(publisher, exchange_for(event.name))
        message = aio_pika.Message(
            event.model_dump_json().encode(), content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=str(event.id), type=event.name,
            timestamp=event.occurred_at, app_id=self._service,
        )
        async with asyncio.timeout(self._publish_timeout):
            # Not mandatory: an event no queue is bound to is dropped, as designed.
            await exchange.publish(message, routing_key=event.name, mandatory=False)

    async def _exchange(self, channel: AbstractRobustChannel, name: str) -> AbstractExchange:
        exchange = self._exchanges.get(name)
        if exchange is None:
            exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
            self._exchanges[name] = exchange
        return exchange

    # --- consuming -------------------------------------------------------------------

    async def subscribe(self, queue: str, routing_keys: Sequence[str], handler: EventHandler, *,
                        park: ParkSink | None = None) -> None:
        connection = self._started()[0]
        if isinstance(routing_keys, str):
            raise TypeError("routing_keys must be a sequence of patterns, not one string")
        if not routing_keys:
            raise ValueError(f"queue {queue!r} needs at least one routing key")
        bindings = {pattern: exchange_for_pattern(pattern) for pattern in routing_keys}
        subscription = _Subscription(queue, handler, asyncio.Semaphore(self._concurrency), park)
        channel = await connection.channel()
        try:
            await channel.set_qos(prefetch_count=self._prefetch)
            await channel.declare_queue(parked_queue(queue), durable=True)
            amqp_queue = await channel.declare_queue(queue, durable=True)
            for pattern, exchange_name in bindings.items():
                # Declared on this channel too, so a reconnect restores the exchange before the binding.
                exchange = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC,
                                                          durable=True)
                await amqp_queue.bind(exchange, pattern)
            tag = await amqp_queue.consume(partial(self._on_message, subscription))
        except BaseException:
            await channel.close()
            raise
        self._consumers.append(_Consumer(channel, amqp_queue, tag))
        log.info("consuming", queue=queue, routing_keys=list(bindings), service=self._service)

    async def _on_message(self, subscription: _Subscription, message: AbstractIncomingMessage) -> None:
        # aio-pika runs each delivery in its own task, in delivery order; the semaphore (FIFO)
        # keeps them in that order when concurrency is 1.
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            async with subscription.turn:
                retry = await self._handle(subscription, message)
            if retry is not None:
                # Outside the turn: the back-off of one failing event does not hold up the others.
                await self._settle(message, self._retry(subscription.queue, message, retry))
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _handle(self, subscription: _Subscription, message: AbstractIncomingMessage) -> int | None:
        """Handle one delivery; ack or park it, or return the attempt number to retry."""
        queue = subscription.queue
        attempt = _failed_attempts(message) + 1
        try:
            event = Event.model_validate_json(message.body)
        except ValidationError as exc:
            await self._settle(message, self._park(subscription, message, f"undecodable event: {exc}", attempt))
            return None
        try:
            await subscription.handler(event)
        except PoisonEvent as exc:
            await self._settle(message, self._park(subscription, message, str(exc), attempt))
        except Exception as exc:
            if attempt < self._max_attempts:
                log.warning("event handler failed; retrying", queue=queue, name=event.name, id=str(event.id),
                            attempt=attempt, error=repr(exc))
                return attempt
            error = f"handler failed {attempt} times: {exc!r}"
            await self._settle(message, self._park(subscription, message, error, attempt))
        else:
            await self._settle(message, message.ack())
            MESSAGES_CONSUMED.labels(self._service, queue, "handled").inc()
        return None

    async def _settle(self, message: AbstractIncomingMessage, step: Awaitable[Any]) -> None:
        """Ack, retry or park; if that fails, hand the message back to the broker, never drop it."""
        try:
            await step
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("could not settle message; it will be redelivered", id=message.message_id,
                        error=repr(exc))
            await asyncio.sleep(self._retry_delay)  # do not spin if e.g. the parked queue was deleted
            with suppress(Exception):  # channel gone: the broker requeues every unacked message itself
                await message.nack(requeue=True)

    async def _retry(self, queue: str, message: AbstractIncomingMessage, attempt: int) -> None:
        await asyncio.sleep(delay(attempt, initial=self._retry_delay, maximum=_MAX_BACKOFF_SECONDS))
        await self._republish(message, queue, {ATTEMPTS_HEADER: attempt})
        await message.ack()

    async def _park(self, subscription: _Subscription, message: AbstractIncomingMessage, error: str,
                    attempt: int) -> None:
        queue = subscription.queue
        if subscription.park is not None:
            await subscription.park(ParkedMessage(source=queue, payload=message.body.decode("utf-8", "replace"),
                                                  error=error, attempts=attempt))
        else:
            headers = {ATTEMPTS_HEADER: attempt, ERROR_HEADER: error[:2000], QUEUE_HEADER: queue,
                       PARKED_AT_HEADER: datetime.now(UTC).isoformat()}
            await self._republish(message, parked_queue(queue), headers)
        await message.ack()
        MESSAGES_CONSUMED.labels(self._service, queue, "parked").inc()
        log.error("event parked", queue=queue, name=message.type, id=message.message_id, attempts=attempt,
                  error=error)

    async def _republish(self, message: AbstractIncomingMessage, queue: str, headers: dict[str, Any]) -> None:
        publisher = self._started()[1]
        copy = aio_pika.Message(
            message.body, headers={**(message.headers or {}), **headers}, content_type=message.content_type,
            content_encoding=message.content_encoding, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id, timestamp=message.timestamp, type=message.type,
            app_id=message.app_id, correlation_id=message.correlation_id,
        )
        async with asyncio.timeout(self._publish_timeout):
            # Mandatory: if the target queue is gone the publish fails and the original stays unacked.
            await publisher.default_exchange.publish(copy, routing_key=queue, mandatory=True)

    def _started(self) -> tuple[AbstractRobustConnection, AbstractRobustChannel]:
        if self._connection is None or self._publisher is None:
            raise RuntimeError("RabbitMQBus.start() has not been called (or the bus was closed)")
        return self._connection, self._publisher


def _failed_attempts(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get(ATTEMPTS_HEADER, 0)
    try:
        return max(0, int(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0


def _without_password(url: str) -> str:
    return str(URL(url).with_password(None))
