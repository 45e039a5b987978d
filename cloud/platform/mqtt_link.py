"""The cloud's side of the edge⇄cloud MQTT link.

:class:`MqttLink` keeps one connection with a persistent session (so QoS 1 messages wait at
the broker while a service restarts), consumes uplink envelopes of chosen categories from
every site exactly once, and publishes commands down to sites.

Exactly once = at-least-once delivery + the inbox: each envelope id is claimed in the same
transaction as the handler's change, and the PUBACK goes out only after that commit.

Batches: the messages already waiting in the client's queue (up to :data:`MAX_BATCH`) are
handled in one database transaction, in arrival order, and acknowledged in that order after its
commit, so a site's backlog after an outage costs one commit per batch, not one per envelope.
The batch's envelope ids are claimed with one statement, and a service that gives a
``batch_handler`` gets the batch's new envelopes at once (set-based reads and bulk writes).
If the batch fails, each of its messages is handled again on its own (with retries and, at
worst, parking), so one bad envelope never holds the others back.

With a ``status_handler``, the link also reads every site's retained link status
(``<root>/sites/+/status``, :mod:`mqtt.link`: online, and offline by goodbye or last will). It is
not an envelope: no inbox claim; the handler must be idempotent (a retained copy comes again on
every subscription).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Sequence

import aiomqtt
import structlog
from pydantic import ValidationError
from sqlalchemy.exc import DataError

from cloud.platform.backoff import Backoff, delay
from cloud.platform.delivery import Delivery
from cloud.platform.metrics import MESSAGES_CONSUMED
from cloud.platform.outbox import Outbox, Transaction
from cloud.platform.parked import ParkedMessages
from cloud.platform.partitions import PartitionedUplink
from cloud.platform.ports import ParkedMessage
from cloud.platform.settings import CloudSettings
from mqtt import QOS, Command, Envelope, MalformedMessage, Topics, decode_envelope
from mqtt.client import ack, enable_manual_ack
from mqtt.link import LinkStatus, MalformedStatus, decode_status
from mqtt.topics import category_of

log = structlog.get_logger(__name__)

EnvelopeHandler = Callable[[Transaction, Envelope], Awaitable[None]]
BatchEnvelopeHandler = Callable[[Transaction, Sequence[Envelope]], Awaitable[None]]
"""Handles the new envelopes of a batch (claimed already, in arrival order) in one transaction: the same effect
as the :data:`EnvelopeHandler` on each in turn, with set-based reads and writes."""
StatusHandler = Callable[[Transaction, str, LinkStatus], Awaitable[None]]
"""Handles a site's link status (site id, status) in a transaction; must be idempotent (retained)."""

MAX_ATTEMPTS = 5
MAX_BATCH = 200


def permanent(exc: BaseException) -> bool:
    """Whether handling a message failed for good: the message itself cannot be stored (a number out of the
    column's range, a string longer than its column, a body that does not fit the contract). Such a message is
    parked at once; anything else (a lost connection, a lock, a serialization failure, a unique-key race) is
    retried."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MalformedMessage | ValidationError | OverflowError | DataError):
            return True  # OverflowError: SQLite's "Python int too large to convert to SQLite INTEGER"
        if str(getattr(current, "sqlstate", None) or getattr(current, "pgcode", None) or "").startswith("22"):
            return True  # PostgreSQL class 22, data exception: value too long, integer out of range, bad text
        if type(current).__name__ == "DataError":
            return True  # asyncpg refusing a query argument before sending it (e.g. out of int64 range)
        current = getattr(current, "orig", None) or current.__cause__
    return False


def _payload(message: aiomqtt.Message) -> bytes:
    return message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()


class NotConnected(RuntimeError):
    """The broker is not reachable right now; the caller keeps its data and retries later."""


class MqttLink:
    def __init__(self, *, service: str, outbox: Outbox, host: str, port: int, topics: Topics,
                 categories: Sequence[str], handler: EnvelopeHandler | None,
                 username: str | None = None, password: str | None = None, tls: bool = False,
                 on_connect: Callable[[], Awaitable[None]] | None = None,
                 parked: ParkedMessages | None = None, status_handler: StatusHandler | None = None,
                 resend: bool = True, gap_grace: float = 5.0,
                 batch_handler: BatchEnvelopeHandler | None = None) -> None:
        if batch_handler is not None and handler is None:
            raise ValueError("a batch handler needs the per-envelope handler too (the fallback of a failed batch)")
        self._service = service
        self._status_handler = status_handler
        self._outbox = outbox
        self._host = host
        self._port = port
        self.topics = topics
        self._categories = list(categories)
        self._handler = handler
        self._batch_handler = batch_handler
        self._username = username
        self._password = password
        self._tls = tls
        self._on_connect = on_connect
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.consumer = f"mqtt:{service}"
        """The inbox consumer and the parked messages' consumer of this link."""
        self._parked = parked or ParkedMessages(outbox.db, service=service)
        self._backoff = Backoff(initial=0.2, maximum=5.0)
        self.delivery: Delivery | None = None
        """The gap tracker of the categories read (end-to-end delivery), unless ``resend`` is off."""
        if handler is not None and resend:
            self.delivery = Delivery(outbox.db, consumer=self.consumer, service=service, categories=categories,
                                     grace=gap_grace)
        # Unique per service and topic root; MQTT 3.1.1 has no shared subscriptions, so direct ingest runs
        # one consuming replica per service; several replicas use partitioned ingest (README, "Scaling").
        self.client_id = f"evpark-{service}-{topics.root}"[:128]
        self.uplink: PartitionedUplink | None = None
        """Set by :meth:`partitioned`: envelopes come from the service's partition queues, not the broker."""

    def partitioned(self, *, amqp_url: str, database_url: str, partitions: int,
                    rebalance: float = 1.0) -> PartitionedUplink:
        """Read the uplink from this replica's share of the partitions the ingest bridge fills, and send
        commands through the bridge (:mod:`cloud.platform.ingest`), instead of an MQTT session."""
        self.uplink = PartitionedUplink(service=self._service, categories=self._categories, amqp_url=amqp_url,
                                        database_url=database_url, partitions=partitions,
                                        handle=self.handle_messages, rebalance=rebalance)
        if self.delivery is not None:
            self.delivery.owns = self.uplink.owns  # ask only for the gaps of the sites this replica reads
            self.delivery.turn_for = self.uplink.turn_for
        self.connected = self.uplink.connected
        return self.uplink

    @classmethod
    def from_settings(cls, settings: CloudSettings, *, service: str, outbox: Outbox, categories: Sequence[str],
                      handler: EnvelopeHandler | None, parked: ParkedMessages | None = None,
                      status_handler: StatusHandler | None = None,
                      batch_handler: BatchEnvelopeHandler | None = None) -> MqttLink:
        username, password = settings.mqtt_login(service)
        link = cls(service=service, outbox=outbox, host=settings.mqtt_host, port=settings.mqtt_port,
                   topics=Topics(settings.mqtt_topic_root), categories=categories, handler=handler,
                   username=username, password=password, tls=settings.mqtt_tls, parked=parked,
                   status_handler=status_handler, resend=settings.mqtt_resend,
                   gap_grace=settings.mqtt_gap_grace_seconds, batch_handler=batch_handler)
        if settings.ingest == "partitioned":
            link.partitioned(amqp_url=settings.amqp_url, database_url=settings.database_url_for(service),
                             partitions=settings.ingest_partitions, rebalance=settings.ingest_rebalance_seconds)
        return link

    async def run(self) -> None:
        """Connect, consume and reconnect forever, with the platform's jittered back-off."""
        if self.uplink is not None:
            await self._run_partitioned(self.uplink)
            return
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except aiomqtt.MqttError as exc:
                log.warning("mqtt link down; reconnecting", service=self._service, error=str(exc))
            finally:
                self._client = None
                self.connected.clear()
            await self._backoff.wait()

    async def _run_partitioned(self, uplink: PartitionedUplink) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(uplink.run(), name=f"uplink:{self._service}")
            if self.delivery is not None:
                await uplink.connected.wait()
                group.create_task(self.delivery.run(self.send_command), name=f"mqtt.gaps:{self._service}")

    async def _session(self) -> None:
        tls_context = ssl.create_default_context() if self._tls else None
        async with aiomqtt.Client(self._host, self._port, identifier=self.client_id, clean_session=False,
                                  username=self._username, password=self._password,
                                  tls_context=tls_context, keepalive=30) as client:
            enable_manual_ack(client)
            if self._handler is not None:
                for category in self._categories:
                    await client.subscribe(self.topics.up_all_sites(category), qos=QOS)
                if self.delivery is not None and "site" not in self._categories:
                    # the hello, the high-water marks and the answers to site.resend
                    await client.subscribe(self.topics.up_all_sites("site"), qos=QOS)
            if self._status_handler is not None:
                await client.subscribe(self.topics.status_all_sites(), qos=QOS)
            self._client = client
            self.connected.set()
            self._backoff.reset()
            log.info("mqtt link up", service=self._service, broker=f"{self._host}:{self._port}")
            if self._on_connect is not None:
                await self._on_connect()
            checker = None if self.delivery is None else asyncio.create_task(
                self.delivery.run(self.send_command), name=f"mqtt.gaps:{self._service}")
            try:
                messages = client.messages
                async for message in messages:
                    batch = [message]
                    while len(messages) and len(batch) < MAX_BATCH:  # already received: no wait
                        batch.append(await anext(messages))
                    pairs = [(str(m.topic), _payload(m)) for m in batch]
                    if self.delivery is None:
                        await self.handle_messages(pairs)
                    else:
                        async with self.delivery.turn:
                            await self.handle_messages(pairs)
                    for handled in batch:  # in receive order (MQTT 3.1.1 §4.6), after the commit
                        ack(client, handled)
            finally:
                if checker is not None:
                    checker.cancel()
                    await asyncio.gather(checker, return_exceptions=True)

    async def handle_messages(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Handle received (topic, payload) pairs, in order: from the broker (direct ingest) or from a
        partition queue (partitioned ingest, :mod:`cloud.platform.partitions`). Returns when every one is
        stored, parked or known as a duplicate, so the caller acknowledges them all."""
        readable: list[tuple[str, bytes, Envelope]] = []
        for topic, payload in messages:
            if self.topics.is_status(topic):
                if self._status_handler is not None:  # before the batch's envelopes: receivers order by connection
                    await self._handle_status(topic, payload)
                continue
            decoded = await self._decode(topic, payload)
            if decoded is not None:
                readable.append(decoded)
        if len(readable) > 1:
            try:
                await self._handle_together(readable)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("envelope batch failed; handling one by one", size=len(readable), error=repr(exc))
        for topic, payload, envelope in readable:
            await self._handle_one(topic, payload, envelope)

    async def _decode(self, topic: str, payload: bytes) -> tuple[str, bytes, Envelope] | None:
        """The message's topic, payload and envelope; a malformed one is parked (and None returned)."""
        try:
            envelope = decode_envelope(payload)
            if self.topics.site_of(topic) != envelope.site_id:
                raise MalformedMessage(f"envelope of site {envelope.site_id!r} published on {topic!r}")
        except MalformedMessage as exc:
            await self._park(topic, payload, str(exc), 1)
            readable = self.delivery.numbered(self.topics.site_of(topic), payload) if self.delivery else None
            if readable is not None:  # its number arrived: an operator replays it, the edge need not resend it
                await self._arrived_parked(readable)
            return None
        return topic, payload, envelope

    async def _handle_status(self, topic: str, payload: bytes) -> None:
        """A site's link status: not an envelope (no id to claim); the handler is idempotent."""
        assert self._status_handler is not None
        site_id = self.topics.site_of(topic)
        if not payload or site_id is None:
            return  # an empty retained message clears the topic: nothing to record
        try:
            status = decode_status(payload)
        except MalformedStatus as exc:
            await self._park(topic, payload, str(exc), 1)
            return
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                async with self._outbox.transaction() as tx:
                    await self._status_handler(tx, site_id, status)
                MESSAGES_CONSUMED.labels(self._service, self.consumer, "handled").inc()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if attempt == MAX_ATTEMPTS:
                    await self._park(topic, payload, f"status handler failed {attempt} times: {exc!r}", attempt)
                    return
                log.warning("link status handling failed; retrying", site_id=site_id, attempt=attempt,
                            error=repr(exc))
                await asyncio.sleep(delay(attempt, initial=0.4, maximum=10.0))

    async def _park(self, topic: str, payload: bytes, error: str, attempts: int) -> None:
        await self._parked.park(ParkedMessage(source=topic, payload=payload.decode("utf-8", "replace"), error=error,
                                              attempts=attempts), consumer=self.consumer)
        MESSAGES_CONSUMED.labels(self._service, self.consumer, "parked").inc()

    async def replay(self, topic: str, payload: str) -> None:
        """Re-deliver a parked envelope once (``evpark events replay``); raises if it still fails."""
        assert self._handler is not None
        envelope = decode_envelope(payload.encode())
        if self.topics.site_of(topic) != envelope.site_id:
            raise MalformedMessage(f"envelope of site {envelope.site_id!r} published on {topic!r}")
        async with self._outbox.transaction() as tx:
            if await tx.claim(str(envelope.id), self.consumer):
                await self._handler(tx, envelope)

    async def _handle_together(self, envelopes: list[tuple[str, bytes, Envelope]]) -> None:
        """The batch in one transaction: one inbox claim for every id (:meth:`Transaction.claim_many`), then the
        new envelopes the service reads, in arrival order, to the batch handler at once (else to the handler one
        after another). An id already processed, or met earlier in the batch, is a duplicate."""
        assert self._handler is not None
        outcomes: list[str] = []
        async with self._outbox.transaction() as tx:
            claimed = await tx.claim_many([str(envelope.id) for _topic, _payload, envelope in envelopes],
                                          self.consumer)
            new: list[Envelope] = []
            for _topic, _payload, envelope in envelopes:
                message_id = str(envelope.id)
                if message_id not in claimed:
                    outcomes.append("duplicate")
                    continue
                claimed.discard(message_id)  # a second copy in this batch is a duplicate
                if self._reads(envelope):
                    new.append(envelope)
                outcomes.append("handled")
            if self._batch_handler is not None:
                if new:
                    await self._batch_handler(tx, new)
            else:
                for envelope in new:
                    await self._handler(tx, envelope)
            if self.delivery is not None:
                await self.delivery.observe(tx, [envelope for _topic, _payload, envelope in envelopes])
        for outcome in outcomes:
            MESSAGES_CONSUMED.labels(self._service, self.consumer, outcome).inc()

    async def _handle_one(self, topic: str, payload: bytes, envelope: Envelope) -> None:
        assert self._handler is not None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                async with self._outbox.transaction() as tx:
                    if not await tx.claim(str(envelope.id), self.consumer):
                        MESSAGES_CONSUMED.labels(self._service, self.consumer, "duplicate").inc()
                        return
                    if self._reads(envelope):
                        await self._handler(tx, envelope)
                    if self.delivery is not None:
                        await self.delivery.observe(tx, [envelope])
                MESSAGES_CONSUMED.labels(self._service, self.consumer, "handled").inc()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if permanent(exc):  # retrying cannot help, and would hold back every message behind it
                    await self._park(topic, payload, f"cannot be stored: {exc!r}", attempt)
                    await self._arrived_parked(envelope)
                    return
                if attempt == MAX_ATTEMPTS:
                    await self._park(topic, payload, f"handler failed {attempt} times: {exc!r}", attempt)
                    await self._arrived_parked(envelope)
                    return
                log.warning("envelope handling failed; retrying", type=envelope.type, id=str(envelope.id),
                            attempt=attempt, error=repr(exc))
                await asyncio.sleep(delay(attempt, initial=0.4, maximum=10.0))

    def _reads(self, envelope: Envelope) -> bool:
        """Whether the handler reads this envelope (the link also reads the site category's delivery
        messages for its gap tracker, whatever the service's categories)."""
        return category_of(envelope.type) in self._categories

    async def _arrived_parked(self, envelope: Envelope) -> None:
        """A parked envelope did arrive: its number is no gap (an operator replays it, not the edge)."""
        if self.delivery is None:
            return
        try:
            async with self._outbox.transaction() as tx:
                await self.delivery.observe(tx, [envelope])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # then it is asked for again, and parked again: bounded by the tries
            log.warning("parked envelope not booked as arrived", id=str(getattr(envelope, "id", None)),
                        error=repr(exc))

    async def send_command(self, command: Command) -> None:
        """Publish a command to its site (QoS 1); returns after the broker's PUBACK (partitioned ingest: after
        RabbitMQ took it for the bridge)."""
        if self.uplink is not None:
            try:
                await self.uplink.send_down(command.site_id, command.to_bytes())
            except Exception as exc:
                raise NotConnected(f"command not handed to the ingest bridge: {exc!r}") from exc
            return
        client = self._client
        if client is None or not self.connected.is_set():
            raise NotConnected("MQTT broker not connected")
        try:
            await client.publish(self.topics.down(command.site_id), command.to_bytes(), qos=QOS)
        except aiomqtt.MqttError as exc:
            raise NotConnected(str(exc)) from exc
