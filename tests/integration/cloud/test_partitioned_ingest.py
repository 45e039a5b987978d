"""Partitioned ingest (EVPARK_INGEST=partitioned) on the real Mosquitto, RabbitMQ and PostgreSQL: the bridge
forwards every site's uplink into partition queues, two or three replicas of a service share them, every
envelope is handled exactly once and in its site's order, no replica handles a partition another holds, and a
replica that stops hands its partitions over within seconds."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiomqtt
import asyncpg
import pytest
from sqlalchemy import text

from cloud.platform.db import Database
from cloud.platform.ingest import UplinkBridge, partition_of
from cloud.platform.mqtt_link import MqttLink
from cloud.platform.outbox import Outbox, Transaction
from cloud.platform.partitions import PartitionedUplink
from cloud.platform.supervisor import Supervisor
from mqtt import Envelope, Topics
from mqtt.payloads import SessionMeter
from tests.integration.cloud.conftest import migrations_of
from tests.support import services

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PARTITIONS = 6
SITES = [f"site-{n:02d}" for n in range(18)]


@pytest.fixture
async def database() -> AsyncIterator[str]:
    services.require("PostgreSQL", services.POSTGRES)
    name = services.fresh_name("evpark_ingest_")
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    db = Database(url)
    await db.connect()
    await db.migrate(migrations_of("charging"))  # the inbox, parked messages and delivery tables
    async with db.session() as session, session.begin():
        await session.execute(text("CREATE TABLE seen (n bigserial PRIMARY KEY, envelope_id text NOT NULL, "
                                   "site_id text NOT NULL, seq integer NOT NULL, replica text NOT NULL)"))
    await db.close()
    try:
        yield url
    finally:
        connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()


@dataclass
class Replica:
    name: str
    db: Database
    link: MqttLink
    uplink: PartitionedUplink
    supervisor: Supervisor  # as in a service: the link restarted with back-off when it dies


@dataclass
class System:
    database_url: str
    amqp_url: str
    mosquitto: tuple[str, int]
    topics: Topics
    replicas: list[Replica] = field(default_factory=list)

    async def start_replica(self, name: str) -> Replica:
        db = Database(self.database_url)
        await db.connect()

        async def record(tx: Transaction, envelope: Envelope) -> None:
            await tx.session.execute(text("INSERT INTO seen (envelope_id, site_id, seq, replica) "
                                          "VALUES (:id, :site, :seq, :replica)"),
                                     {"id": str(envelope.id), "site": envelope.site_id, "seq": envelope.seq,
                                      "replica": name})

        link = MqttLink(service="charging", outbox=Outbox(db), host=self.mosquitto[0], port=self.mosquitto[1],
                        topics=self.topics, categories=["session"], handler=record, resend=False)
        uplink = link.partitioned(amqp_url=self.amqp_url, database_url=self.database_url, partitions=PARTITIONS,
                                  rebalance=0.2)
        replica = Replica(name, db, link, uplink, Supervisor(f"charging-{name}", initial_delay=0.2, max_delay=1.0))
        replica.supervisor.start("mqtt-link", link.run)
        await asyncio.wait_for(link.connected.wait(), 15)
        self.replicas.append(replica)
        return replica

    async def stop_replica(self, replica: Replica) -> None:
        await replica.supervisor.stop()
        await replica.db.close()
        self.replicas.remove(replica)

    async def balanced(self, limit_s: float = 20.0) -> float:
        """Seconds until the live replicas hold every partition, each its fair share."""
        start = time.monotonic()
        while time.monotonic() - start < limit_s:
            held = [set(r.uplink.held) for r in self.replicas]
            share = -(-PARTITIONS // len(self.replicas))
            every = set().union(*held)
            if every == set(range(PARTITIONS)) and sum(map(len, held)) == PARTITIONS \
                    and all(len(h) <= share for h in held):
                return time.monotonic() - start
            await asyncio.sleep(0.05)
        raise AssertionError(f"partitions never balanced: {[sorted(r.uplink.held) for r in self.replicas]}")

    async def rows(self) -> list[asyncpg.Record]:
        connection = await asyncpg.connect(self.database_url.replace("+asyncpg", ""))
        try:
            return list(await connection.fetch("SELECT envelope_id, site_id, seq, replica FROM seen ORDER BY n"))
        finally:
            await connection.close()


@pytest.fixture
async def system(database: str, rabbitmq_url: str, mosquitto: tuple[str, int],
                 topic_root: str) -> AsyncIterator[System]:
    topics = Topics(topic_root)
    bridge = UplinkBridge(amqp_url=rabbitmq_url, mqtt_host=mosquitto[0], mqtt_port=mosquitto[1], topics=topics,
                          readers={"charging": ["session"]}, partitions=PARTITIONS)
    bridge_task = asyncio.create_task(bridge.run(), name="bridge")
    await asyncio.wait_for(bridge.connected.wait(), 15)
    the_system = System(database, rabbitmq_url, mosquitto, topics)
    try:
        yield the_system
    finally:
        for replica in list(the_system.replicas):
            await the_system.stop_replica(replica)
        bridge_task.cancel()
        await asyncio.gather(bridge_task, return_exceptions=True)


def meter_values(site: str, seq: int) -> Envelope:
    return Envelope.wrap(site, seq, SessionMeter(charger_id="CP1", connector_id=1, transaction_id=7,
                                                  energy_register_wh=seq * 10,
                                                  sampled_at=datetime(2026, 12, 7, 12, 0, tzinfo=UTC)))


async def publish(system: System, first_seq: int, count: int) -> list[Envelope]:
    """``count`` envelopes per site, interleaved across sites, as a fleet of edges would send them."""
    sent = []
    async with aiomqtt.Client(*system.mosquitto, identifier=services.fresh_name("edges-")) as client:
        for seq in range(first_seq, first_seq + count):
            for site in SITES:
                envelope = meter_values(site, seq)
                await client.publish(system.topics.up_for_type(site, envelope.type), envelope.to_bytes(), qos=1)
                sent.append(envelope)
    return sent


async def all_handled(system: System, sent: list[Envelope], limit_s: float = 30.0) -> list[asyncpg.Record]:
    deadline = time.monotonic() + limit_s
    while True:
        rows = await system.rows()
        if len(rows) >= len(sent) or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.1)


def assert_exactly_once_in_order(rows: list[asyncpg.Record], sent: list[Envelope]) -> None:
    ids = [row["envelope_id"] for row in rows]
    assert len(ids) == len(set(ids)), "an envelope was handled twice"
    assert set(ids) == {str(e.id) for e in sent}, "an envelope was lost"
    by_site: dict[str, list[int]] = {}
    for row in rows:
        by_site.setdefault(row["site_id"], []).append(row["seq"])
    for site, seqs in by_site.items():
        assert seqs == sorted(seqs), f"{site}: handled out of order: {seqs}"


@pytest.mark.parametrize("replicas", [2, 3])
async def test_replicas_share_the_partitions_and_handle_each_envelope_once_in_site_order(
        system: System, replicas: int) -> None:
    for n in range(replicas):
        await system.start_replica(f"r{n}")
    await system.balanced()

    sent = await publish(system, 1, 12)
    rows = await all_handled(system, sent)

    assert_exactly_once_in_order(rows, sent)
    owner = {p: r.name for r in system.replicas for p in r.uplink.held}
    for row in rows:  # no replica ever handled a partition another one held
        assert row["replica"] == owner[partition_of(row["site_id"], PARTITIONS)], row
    assert len({row["replica"] for row in rows}) == replicas  # the work is shared


async def test_a_stopped_replica_hands_its_partitions_over_within_seconds_and_nothing_is_lost(
        system: System) -> None:
    first, second, third = [await system.start_replica(name) for name in ("r0", "r1", "r2")]
    await system.balanced()
    sent = await publish(system, 1, 6)

    await system.stop_replica(second)  # its unacknowledged messages go back to its partitions' queues
    handover = await system.balanced(limit_s=10)
    sent += await publish(system, 7, 6)
    rows = await all_handled(system, sent)

    assert handover < 5.0, f"partitions of a stopped replica taken over after {handover:.1f} s"
    assert_exactly_once_in_order(rows, sent)
    assert {first.name, third.name} <= {row["replica"] for row in rows[-len(SITES):]}


async def test_a_replica_whose_database_connection_dies_loses_its_partitions_to_the_others(
        system: System) -> None:
    first, second = await system.start_replica("r0"), await system.start_replica("r1")
    await system.balanced()
    lost = set(second.uplink.held)

    leases = second.uplink._leases  # a crash as PostgreSQL sees it: the lock connection is gone
    assert leases is not None and leases._conn is not None
    leases._conn.terminate()
    start = time.monotonic()
    for _ in range(200):  # 10 s
        if lost <= set(first.uplink.held):
            break
        await asyncio.sleep(0.05)

    assert lost <= set(first.uplink.held), "the first replica never took the partitions of the dead one"
    assert time.monotonic() - start < 5.0
    await system.balanced()  # the second one, restarted by its supervisor, takes its share again
    sent = await publish(system, 1, 4)
    rows = await all_handled(system, sent)
    assert_exactly_once_in_order(rows, sent)


async def test_when_rabbitmq_drops_every_connection_the_bridge_and_replicas_reconnect_and_lose_nothing(
        system: System, rabbitmq_url: str) -> None:
    for name in ("r0", "r1"):
        await system.start_replica(name)
    await system.balanced()
    sent = await publish(system, 1, 4)
    rows = await all_handled(system, sent)
    assert len(rows) == len(sent)

    vhost = rabbitmq_url.rsplit("/", 1)[1]
    await asyncio.to_thread(subprocess.run, ["rabbitmqctl", "-q", "close_all_connections", "-p", vhost,
                                             "test: broker restart"], check=True, capture_output=True, timeout=60)
    sent += await publish(system, 5, 4)  # while the bridge and the replicas reconnect
    await system.balanced(limit_s=30)
    sent += await publish(system, 9, 4)
    rows = await all_handled(system, sent)

    assert_exactly_once_in_order(rows, sent)
    assert all(r.supervisor.loops["mqtt-link"].restarts >= 1 for r in system.replicas)  # they did lose RabbitMQ
