"""A service replica's share of the uplink partitions (``EVPARK_INGEST=partitioned``; :mod:`cloud.platform.ingest`).

:class:`PartitionLeases` holds partitions as PostgreSQL session advisory locks in the service's own database,
on one connection of its own: a lock is held exactly as long as that connection lives, so a replica that is
killed gives its partitions back the moment PostgreSQL sees the connection close, without a lease table to
expire. Each live replica also holds one *member* lock; ``pg_locks`` counts them, which gives the fair share.

:class:`PartitionedUplink` is the replica's consumer: every ``rebalance`` seconds it renews nothing (locks do
not expire) but takes free partitions up to its share and gives back what is over it. A partition is
consumed on a channel of its own, one batch at a time (the messages already delivered, up to ``MAX_BATCH``),
side by side with the replica's other partitions,
through the MQTT link's handling (inbox claim, handler, delivery tracking, parking — the same code as the
direct MQTT path), and acknowledged after the batch's commit. Giving a partition back closes its channel
first (its unacknowledged messages return to the queue) and unlocks it after, so two replicas never work
on one partition; the queue's single-active-consumer setting guards the same from the broker's side.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import socket
import zlib
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass

import aio_pika
import asyncpg
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from cloud.platform.ingest import (
    DOWNLINK_QUEUE,
    MAX_BATCH,
    declare_partitions,
    partition_of,
    partition_queue,
    send_down,
    unpack,
)

log = structlog.get_logger(__name__)

MessageBatchHandler = Callable[[list[tuple[str, bytes]]], Awaitable[None]]
"""Handles (topic, payload) pairs of one partition in one transaction where it can (the MQTT link's)."""


def _key(text: str) -> int:
    return zlib.crc32(text.encode()) & 0x7FFFFFFF  # advisory lock keys are int4; pg_locks shows them as oid


def postgres_dsn(database_url: str) -> str:
    """asyncpg's DSN of an SQLAlchemy URL (``postgresql+asyncpg://`` → ``postgresql://``)."""
    scheme, sep, rest = database_url.partition("://")
    if not sep or not scheme.startswith("postgresql"):
        raise ValueError("partitioned ingest needs PostgreSQL (EVPARK_DATABASE_URL): its replicas share "
                         "partitions through advisory locks")
    return f"postgresql://{rest}"


class PartitionLeases:
    """Partitions held as advisory locks on one connection; see the module docstring."""

    def __init__(self, dsn: str, *, service: str) -> None:
        self._dsn = dsn
        self._namespace = _key(f"evpark-ingest:{service}")
        self._members = _key(f"evpark-ingest-members:{service}")
        self._conn: asyncpg.Connection | None = None
        self.slot = random.randrange(1, 2**31 - 1)

    async def open(self) -> None:
        self._conn = await asyncpg.connect(self._dsn)
        while not await self._conn.fetchval("SELECT pg_try_advisory_lock($1::int, $2::int)", self._members, self.slot):
            self.slot = random.randrange(1, 2**31 - 1)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)

    def _live(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            raise ConnectionError("partition leases: database connection lost")
        return self._conn

    async def members(self) -> int:
        """Replicas of this service alive now (each holds one member lock)."""
        count = await self._live().fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2"
            " AND classid = $1::bigint::oid"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())", self._members)
        return max(1, int(count))

    async def take(self, partition: int) -> bool:
        return bool(await self._live().fetchval("SELECT pg_try_advisory_lock($1::int, $2::int)",
                                                self._namespace, partition))

    async def give_back(self, partition: int) -> None:
        await self._live().fetchval("SELECT pg_advisory_unlock($1::int, $2::int)", self._namespace, partition)


@dataclass
class _Partition:
    number: int
    channel: AbstractChannel
    inbox: asyncio.Queue[AbstractIncomingMessage]
    worker: asyncio.Task[None]
    tag: str = ""


def _pairs(message: AbstractIncomingMessage) -> list[tuple[str, bytes]]:
    try:
        return unpack(message.body)
    except ValueError as exc:  # not the bridge's: nothing of ours to handle (an operator's stray publish)
        log.error("uplink partition: a message that is no uplink batch was dropped", error=str(exc))
        return []


def replica_name() -> str:
    """This replica's name in logs and connection names: the pod's host name and the process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class PartitionedUplink:
    """One replica's consumer of its service's uplink partitions; see the module docstring."""

    def __init__(self, *, service: str, categories: Sequence[str], amqp_url: str, database_url: str,
                 partitions: int, handle: MessageBatchHandler, rebalance: float = 1.0) -> None:
        self.service = service
        self._categories = tuple(categories)
        self._amqp_url = amqp_url
        self._dsn = postgres_dsn(database_url)
        self.partitions = partitions
        self._handle = handle
        self._rebalance = rebalance
        self._turns = [asyncio.Lock() for _ in range(partitions)]
        self.replica = replica_name()
        self.held: dict[int, _Partition] = {}
        self.connected = asyncio.Event()
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractChannel | None = None
        self._leases: PartitionLeases | None = None
        self.handled = 0
        """Messages this replica handled (acknowledged after their commit), for tests and benchmarks."""

    def owns(self, site_id: str) -> bool:
        """Whether this replica consumes the site's partition now."""
        return partition_of(site_id, self.partitions) in self.held

    def turn_for(self, site_id: str) -> asyncio.Lock:
        """Held around each batch of the site's partition: what else touches the site's delivery state in this
        process (the gap check) waits for it. Partitions run side by side (PostgreSQL locks the rows)."""
        return self._turns[partition_of(site_id, self.partitions)]

    async def run(self) -> None:
        """Hold a fair share of the partitions until cancelled; any failure gives everything back (the
        supervisor runs it again with back-off)."""
        connection = await aio_pika.connect(self._amqp_url,
                                            client_properties={"connection_name": f"evpark:{self.service}:uplink"})
        self._connection = connection  # type: ignore[assignment]
        leases = PartitionLeases(self._dsn, service=self.service)
        try:
            setup = await connection.channel()
            await declare_partitions(setup, self.service, self._categories, self.partitions)
            await setup.declare_queue(DOWNLINK_QUEUE, durable=True)
            await setup.close()
            self._publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await leases.open()
            self._leases = leases
            self.connected.set()
            log.info("uplink partitions: joined", service=self.service, replica=self.replica,
                     partitions=self.partitions)
            while True:
                if connection.is_closed:
                    raise ConnectionError("uplink partitions: RabbitMQ connection closed")
                await self._balance(leases)
                for partition in list(self.held.values()):
                    if partition.worker.done():  # its handling failed for good: start again from scratch
                        partition.worker.result()
                    if partition.channel.is_closed:
                        raise ConnectionError(f"uplink partition {partition.number}: channel closed")
                await asyncio.sleep(self._rebalance)
        finally:
            self.connected.clear()
            for number in sorted(self.held, reverse=True):
                with suppress(Exception):
                    await self._stop(number)
            self.held.clear()
            self._leases = None
            await leases.close()  # every lock goes with the connection
            self._publisher = None
            self._connection = None
            with suppress(Exception):
                await connection.close()

    async def _balance(self, leases: PartitionLeases) -> None:
        share = math.ceil(self.partitions / await leases.members())
        while len(self.held) > share:
            number = max(self.held)
            await self._stop(number)
            await leases.give_back(number)
            log.info("uplink partition given back", service=self.service, replica=self.replica, partition=number)
        if len(self.held) >= share:
            return
        start = leases.slot % self.partitions  # replicas start their search in different places
        for offset in range(self.partitions):
            number = (start + offset) % self.partitions
            if number in self.held:
                continue
            if await leases.take(number):
                try:
                    await self._start(number)
                except BaseException:
                    await leases.give_back(number)
                    raise
                log.info("uplink partition taken", service=self.service, replica=self.replica, partition=number)
                if len(self.held) >= share:
                    return

    async def _start(self, number: int) -> None:
        assert self._connection is not None
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=MAX_BATCH // 4)
        queue = await channel.get_queue(partition_queue(self.service, number), ensure=False)
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

        async def deliver(message: AbstractIncomingMessage) -> None:
            inbox.put_nowait(message)

        worker = asyncio.create_task(self._work(number, inbox), name=f"uplink:{self.service}:p{number:02d}")
        partition = _Partition(number, channel, inbox, worker)
        self.held[number] = partition
        partition.tag = await queue.consume(deliver)

    async def _stop(self, number: int) -> None:
        partition = self.held.pop(number)
        queue = await partition.channel.get_queue(partition_queue(self.service, number), ensure=False)
        with suppress(Exception):
            await asyncio.wait_for(queue.cancel(partition.tag), 5)
        async with self._turns[number]:  # the batch in hand finishes (and is acknowledged) first
            partition.worker.cancel()
        await asyncio.gather(partition.worker, return_exceptions=True)
        with suppress(Exception):
            await asyncio.wait_for(partition.channel.close(), 5)  # what was delivered and not handled goes back

    async def _work(self, number: int, inbox: asyncio.Queue[AbstractIncomingMessage]) -> None:
        while True:
            batch = [await inbox.get()]
            while not inbox.empty() and len(batch) < MAX_BATCH // 8:  # each carries a batch of the bridge's
                batch.append(inbox.get_nowait())
            pairs = [pair for m in batch for pair in _pairs(m)]
            async with self._turns[number]:
                await self._handle(pairs)
                await batch[-1].ack(multiple=True)  # this channel's deliveries up to the last, all handled
            self.handled += len(batch)

    async def send_down(self, site_id: str, body: bytes) -> None:
        """A command for a site, through the bridge; returns after RabbitMQ confirmed it."""
        publisher = self._publisher
        if publisher is None or publisher.is_closed:
            raise ConnectionError("uplink partitions: not connected to RabbitMQ")
        await send_down(publisher, site_id, body)
