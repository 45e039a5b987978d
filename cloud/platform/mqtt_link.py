"""The cloud's side of the edge⇄cloud MQTT link.

:class:`MqttLink` keeps one connection with a persistent session (so QoS 1 messages wait at
the broker while a service restarts), consumes uplink envelopes of chosen categories from
every site exactly once, and publishes commands down to sites.

Exactly once = at-least-once delivery + the inbox: each envelope id is claimed in the same
transaction as the handler's change, and the PUBACK goes out only after that commit.

Batches: the messages already waiting in the client's queue (up to :data:`MAX_BATCH`) are
handled in one database transaction, in arrival order, and acknowledged in that order after its
commit, so a site's backlog after an outage costs one commit per batch, not one per envelope.
If the batch fails, each of its messages is handled again on its own (with retries and, at
worst, parking), so one bad envelope never holds the others back.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Sequence

import aiomqtt
import structlog

from cloud.platform.backoff import Backoff, delay
from cloud.platform.metrics import MESSAGES_CONSUMED
from cloud.platform.outbox import Outbox, Transaction
from cloud.platform.parked import ParkedMessages
from cloud.platform.ports import ParkedMessage
from cloud.platform.settings import CloudSettings
from mqtt import QOS, Command, Envelope, MalformedMessage, Topics, decode_envelope
from mqtt.client import ack, enable_manual_ack

log = structlog.get_logger(__name__)

EnvelopeHandler = Callable[[Transaction, Envelope], Awaitable[None]]

MAX_ATTEMPTS = 5
MAX_BATCH = 200


class NotConnected(RuntimeError):
    """The broker is not reachable right now; the caller keeps its data and retries later."""


class MqttLink:
    def __init__(self, *, service: str, outbox: Outbox, host: str, port: int, topics: Topics,
                 categories: Sequence[str], handler: EnvelopeHandler | None,
                 username: str | None = None, password: str | None = None, tls: bool = False,
                 on_connect: Callable[[], Awaitable[None]] | None = None,
                 parked: ParkedMessages | None = None) -> None:
        self._service = service
        self._outbox = outbox
        self._host = host
        self._port = port
        self.topics = topics
        self._categories = list(categories)
        self._handler = handler
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
        # Unique per service and topic root; MQTT 3.1.1 has no shared subscriptions, so run
        # one consuming replica per service (see the README, "Scaling").
        self.client_id = f"evpark-{service}-{topics.root}"[:128]

    @classmethod
    def from_settings(cls, settings: CloudSettings, *, service: str, outbox: Outbox, categories: Sequence[str],
                      handler: EnvelopeHandler | None, parked: ParkedMessages | None = None) -> MqttLink:
        password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
        return cls(service=service, outbox=outbox, host=settings.mqtt_host, port=settings.mqtt_port,
                   topics=Topics(settings.mqtt_topic_root), categories=categories, handler=handler,
                   username=settings.mqtt_username, password=password, tls=settings.mqtt_tls, parked=parked)

    async def run(self) -> None:
        """Connect, consume and reconnect forever, with the platform's jittered back-off."""
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

    async def _session(self) -> None:
        tls_context = ssl.create_default_context() if self._tls else None
        async with aiomqtt.Client(self._host, self._port, identifier=self.client_id, clean_session=False,
                                  username=self._username, password=self._password,
                                  tls_context=tls_context, keepalive=30) as client:
            enable_manual_ack(client)
            if self._handler is not None:
                for category in self._categories:
                    await client.subscribe(self.topics.up_all_sites(category), qos=QOS)
            self._client = client
            self.connected.set()
            self._backoff.reset()
            log.info("mqtt link up", service=self._service, broker=f"{self._host}:{self._port}")
            if self._on_connect is not None:
                await self._on_connect()
            messages = client.messages
            async for message in messages:
                batch = [message]
                while len(messages) and len(batch) < MAX_BATCH:  # already received: no wait
                    batch.append(await anext(messages))
                await self._handle_batch(batch)
                for handled in batch:  # in receive order (MQTT 3.1.1 §4.6), after the commit
                    ack(client, handled)

    async def _handle_batch(self, messages: list[aiomqtt.Message]) -> None:
        readable: list[tuple[str, bytes, Envelope]] = []
        for message in messages:
            decoded = await self._decode(message)
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

    async def _decode(self, message: aiomqtt.Message) -> tuple[str, bytes, Envelope] | None:
        """The message's topic, payload and envelope; a malformed one is parked (and None returned)."""
        topic = str(message.topic)
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        try:
            envelope = decode_envelope(payload)
            if self.topics.site_of(topic) != envelope.site_id:
                raise MalformedMessage(f"envelope of site {envelope.site_id!r} published on {topic!r}")
        except MalformedMessage as exc:
            await self._park(topic, payload, str(exc), 1)
            return None
        return topic, payload, envelope

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
        assert self._handler is not None
        outcomes: list[str] = []
        async with self._outbox.transaction() as tx:
            for _topic, _payload, envelope in envelopes:
                if not await tx.claim(str(envelope.id), self.consumer):
                    outcomes.append("duplicate")
                    continue
                await self._handler(tx, envelope)
                outcomes.append("handled")
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
                    await self._handler(tx, envelope)
                MESSAGES_CONSUMED.labels(self._service, self.consumer, "handled").inc()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if attempt == MAX_ATTEMPTS:
                    await self._park(topic, payload, f"handler failed {attempt} times: {exc!r}", attempt)
                    return
                log.warning("envelope handling failed; retrying", type=envelope.type, id=str(envelope.id),
                            attempt=attempt, error=repr(exc))
                await asyncio.sleep(delay(attempt, initial=0.4, maximum=10.0))

    async def send_command(self, command: Command) -> None:
        """Publish a command to its site (QoS 1); returns after the broker's PUBACK."""
        client = self._client
        if client is None or not self.connected.is_set():
            raise NotConnected("MQTT broker not connected")
        try:
            await client.publish(self.topics.down(command.site_id), command.to_bytes(), qos=QOS)
        except aiomqtt.MqttError as exc:
            raise NotConnected(str(exc)) from exc
