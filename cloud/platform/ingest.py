"""Uplink ingest at fleet scale: one MQTT reader, site partitions on RabbitMQ, several replicas per service.

The design (``EVPARK_INGEST=partitioned``; the README's "Scaling" section):

* **The bridge** (``evpark ingest``, :class:`UplinkBridge`) is the cloud's only MQTT client. It reads every
  uplink category a service consumes, and the sites' link status, from a persistent session (client id
  ``evpark-ingest-<root>``), and forwards each message unchanged to the durable direct exchange
  ``edge.uplink`` with routing key ``<category>.<partition>``, where ``partition = crc32(site_id) mod P``
  (:func:`partition_of`); the messages of one read batch that share a routing key travel as one AMQP
  message (:func:`pack`, in their order), so the bridge and the replicas pay per batch, not per
  envelope. It acknowledges a message to the broker (PUBACK, in receive order) only after
  RabbitMQ confirmed it was routed to every bound queue, so nothing is lost between the two brokers; a
  crash in between sends it again, and the services' inbox treats it as done. It also carries commands
  down: services put them on the durable queue ``ingest.downlink`` and the bridge publishes each to its
  site (QoS 1) before it acknowledges it. It holds no state of its own: run one (a second one with the
  same client id would take the session over); while it restarts, the MQTT broker keeps the messages.
* **Partitions**: every consuming service has ``P`` durable queues ``<service>.uplink.pNN`` bound to
  ``<category>.NN`` for its categories, ``site`` and ``status`` (declared by the bridge and by the
  service, so neither needs the other first). One site is always in one partition, and a partition's
  queue keeps the bridge's order, so a site's envelopes are handled in the order the edge sent them.
* **Replicas** (:mod:`cloud.platform.partitions`) share a service's partitions through PostgreSQL
  advisory locks in the service's database: a replica consumes a partition only while it holds the
  partition's lock, takes at most its fair share (``ceil(P / replicas alive)``) and gives back what is
  over it; a replica that dies loses its locks with its database connection, and the others take its
  partitions at their next round (``EVPARK_INGEST_REBALANCE_SECONDS``). The queues are also
  single-active-consumer, so even a replica that lost its lock but not yet its channel can never consume
  a partition beside its new owner. A replica claims partitions only once its platform is up (database
  migrated, event bus connected).

``P`` (``EVPARK_INGEST_PARTITIONS``, default 12) must be the same for the bridge and every replica;
changing it needs a drained ``edge.uplink`` (stop the bridge, let the queues empty, restart all).
"""

from __future__ import annotations

import asyncio
import ssl
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import aio_pika
import aiomqtt
import structlog
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractQueue
from pamqp.common import FieldTable

from cloud.platform.backoff import Backoff
from mqtt import QOS, Topics
from mqtt.client import ack, enable_manual_ack

log = structlog.get_logger(__name__)

EXCHANGE = "edge.uplink"
DOWNLINK_QUEUE = "ingest.downlink"
SITE_HEADER = "x-evpark-site"
STATUS = "status"
"""The routing category of the sites' link status (not an uplink category)."""
QUEUE_ARGUMENTS: FieldTable = {"x-single-active-consumer": True}
MAX_BATCH = 200


BATCH_CONTENT_TYPE = "application/x-evpark-uplink-batch"
_LENGTH = struct.Struct(">I")


def pack(pairs: Sequence[tuple[str, bytes]]) -> bytes:
    """(topic, payload) pairs as one AMQP body: for each, the topic's and the payload's length (4 bytes, big
    endian) and bytes."""
    parts: list[bytes] = []
    for topic, payload in pairs:
        encoded = topic.encode()
        parts += [_LENGTH.pack(len(encoded)), encoded, _LENGTH.pack(len(payload)), payload]
    return b"".join(parts)


def unpack(body: bytes) -> list[tuple[str, bytes]]:
    """The pairs of :func:`pack`; raises ValueError on a body that is not one."""
    pairs = []
    at = 0
    try:
        while at < len(body):
            (size,) = _LENGTH.unpack_from(body, at)
            topic = body[at + 4:at + 4 + size].decode()
            at += 4 + size
            (size,) = _LENGTH.unpack_from(body, at)
            payload = body[at + 4:at + 4 + size]
            if len(payload) != size:
                raise ValueError("truncated uplink batch")
            at += 4 + size
            pairs.append((topic, payload))
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"not an uplink batch: {exc}") from exc
    return pairs


def partition_of(site_id: str, partitions: int) -> int:
    """The partition of a site: stable across processes and releases (not Python's salted ``hash``)."""
    return zlib.crc32(site_id.encode()) % partitions


def partition_queue(service: str, partition: int) -> str:
    return f"{service}.uplink.p{partition:02d}"


def read_categories(categories: Sequence[str]) -> tuple[str, ...]:
    """What a service's link reads: its categories and ``site`` (end-to-end delivery's hellos and marks)."""
    return tuple(dict.fromkeys((*categories, "site")))


async def declare_partitions(channel: AbstractChannel, service: str, categories: Sequence[str],
                             partitions: int) -> list[AbstractQueue]:
    """The service's partition queues and their bindings (idempotent; the bridge and the service both call it)."""
    exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)
    queues = []
    for partition in range(partitions):
        queue = await channel.declare_queue(partition_queue(service, partition), durable=True,
                                            arguments=QUEUE_ARGUMENTS)
        for category in (*read_categories(categories), STATUS):
            await queue.bind(exchange, f"{category}.{partition}")
        queues.append(queue)
    return queues


def routing_of(topics: Topics, topic: str, partitions: int) -> tuple[str, str] | None:
    """(site id, routing key) of an uplink or status topic of this root, or None for anything else."""
    site_id = topics.site_of(topic)
    if site_id is None:
        return None
    if topics.is_status(topic):
        category = STATUS
    else:
        rest = topic[len(f"{topics.root}/sites/{site_id}/"):].split("/")
        if len(rest) < 2 or rest[0] != "up" or not rest[1]:
            return None
        category = rest[1]
    return site_id, f"{category}.{partition_of(site_id, partitions)}"


class UplinkBridge:
    """MQTT → RabbitMQ partitions for the uplink, RabbitMQ → MQTT for commands; see the module docstring."""

    def __init__(self, *, amqp_url: str, mqtt_host: str, mqtt_port: int, topics: Topics,
                 readers: Mapping[str, Sequence[str]], partitions: int, username: str | None = None,
                 password: str | None = None, tls: bool = False, heartbeat: Path | None = None) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self._amqp_url = amqp_url
        self._mqtt_host = mqtt_host
        self._mqtt_port = mqtt_port
        self.topics = topics
        self._readers = {service: tuple(categories) for service, categories in readers.items()}
        self.partitions = partitions
        self._username = username
        self._password = password
        self._tls = tls
        self._heartbeat = heartbeat
        """A file touched every few seconds while both brokers are connected (the container's probes read it)."""
        self.client_id = f"evpark-ingest-{topics.root}"[:128]
        self.connected = asyncio.Event()
        self.forwarded = 0
        """Uplink messages handed to RabbitMQ and acknowledged to the MQTT broker (for tests and benchmarks)."""
        self._backoff = Backoff(initial=0.2, maximum=5.0)

    @property
    def categories(self) -> tuple[str, ...]:
        """Every uplink category some service reads (the bridge subscribes to these and nothing else, so
        every message it forwards has a queue)."""
        return tuple(dict.fromkeys(c for categories in self._readers.values() for c in read_categories(categories)))

    async def run(self) -> None:
        """Forward until cancelled, reconnecting to either broker with jittered back-off."""
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broker away (either side, or both: an ExceptionGroup of the two loops)
                log.warning("ingest bridge down; reconnecting", error=repr(exc))
            finally:
                self.connected.clear()
            await self._backoff.wait()

    async def _session(self) -> None:
        connection = await aio_pika.connect(self._amqp_url, client_properties={"connection_name": "evpark:ingest"})
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            for service, categories in self._readers.items():
                await declare_partitions(channel, service, categories, self.partitions)
            exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)
            downlink_channel = await connection.channel()
            await downlink_channel.set_qos(prefetch_count=1)  # one command at a time, in order
            downlink = await downlink_channel.declare_queue(DOWNLINK_QUEUE, durable=True)
            tls_context = ssl.create_default_context() if self._tls else None
            async with aiomqtt.Client(self._mqtt_host, self._mqtt_port, identifier=self.client_id,
                                      clean_session=False, username=self._username, password=self._password,
                                      tls_context=tls_context, keepalive=30) as client:
                enable_manual_ack(client)
                for category in self.categories:
                    await client.subscribe(self.topics.up_all_sites(category), qos=QOS)
                await client.subscribe(self.topics.status_all_sites(), qos=QOS)
                self.connected.set()
                self._backoff.reset()
                log.info("ingest bridge up", partitions=self.partitions, categories=list(self.categories),
                         services=sorted(self._readers))
                # Uplink, downlink and heartbeat end together: any of them failing (a broker gone) ends the
                # session, and the run loop connects both again.
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._forward(client, exchange), name="ingest.uplink")
                    group.create_task(self._commands(client, downlink), name="ingest.downlink")
                    group.create_task(self._watch(connection), name="ingest.heartbeat")
        finally:
            await connection.close()

    async def _watch(self, connection: aio_pika.abc.AbstractConnection) -> None:
        """Raise once RabbitMQ's connection is closed (the uplink may be idle and not notice); touch the
        heartbeat file while it is open."""
        while not connection.is_closed:
            if self._heartbeat is not None:
                await asyncio.to_thread(self._heartbeat.touch)
            await asyncio.sleep(1 if self._heartbeat is None else 5)
        raise ConnectionError("RabbitMQ connection closed")

    async def _forward(self, client: aiomqtt.Client, exchange: AbstractExchange) -> None:
        messages = client.messages
        async for message in messages:
            batch = [message]
            while len(messages) and len(batch) < MAX_BATCH:  # already received: no wait
                batch.append(await anext(messages))
            groups: dict[str, list[tuple[str, bytes]]] = {}
            for message in batch:
                topic = str(message.topic)
                routing = routing_of(self.topics, topic, self.partitions)
                if routing is None:  # not a topic of ours (the subscriptions exclude it): nothing to store
                    log.warning("ingest bridge ignored a topic", topic=topic)
                    continue
                payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                groups.setdefault(routing[1], []).append((topic, payload))
            # One AMQP message per routing key, published back to back on one channel (RabbitMQ keeps a
            # channel's order); acknowledged to MQTT in receive order once every one of them is confirmed.
            await asyncio.gather(*(self._publish(exchange, key, pairs) for key, pairs in groups.items()))
            for handled in batch:
                ack(client, handled)
            self.forwarded += len(batch)

    @staticmethod
    async def _publish(exchange: AbstractExchange, key: str, pairs: list[tuple[str, bytes]]) -> None:
        await exchange.publish(
            aio_pika.Message(pack(pairs), content_type=BATCH_CONTENT_TYPE,
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=key, mandatory=True, timeout=15)

    async def _commands(self, client: aiomqtt.Client, downlink: AbstractQueue) -> None:
        async with downlink.iterator() as messages:
            async for message in messages:
                await self._command(client, message)
        raise ConnectionError("downlink queue consumer ended")

    async def _command(self, client: aiomqtt.Client, message: AbstractIncomingMessage) -> None:
        site_id = str((message.headers or {}).get(SITE_HEADER) or "")
        try:
            topic = self.topics.down(site_id)
        except ValueError:
            log.error("ingest bridge dropped a command without a valid site", site_id=site_id)
            await message.ack()
            return
        await client.publish(topic, message.body, qos=QOS)  # returns after the broker's PUBACK
        await message.ack()


async def send_down(channel: AbstractChannel, site_id: str, body: bytes) -> None:
    """Hand a command to the bridge (``ingest.downlink``); returns after RabbitMQ confirmed it."""
    await channel.default_exchange.publish(
        aio_pika.Message(body, headers={SITE_HEADER: site_id}, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
        routing_key=DOWNLINK_QUEUE, mandatory=True, timeout=15)
