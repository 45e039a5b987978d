"""Cloud ingest at fleet scale (issue 22): the edge's relay rate, the charging service's ingest rate with one,
two and three replicas, and how long a 100,000-envelope backlog takes to drain — one run, one load generator.

Everything is real and runs on this machine: a private Mosquitto (with ``mqtt/mosquitto.conf``'s queue
settings), RabbitMQ (a fresh vhost), PostgreSQL (a fresh database), and each part as its own process:
``evpark ingest`` (the bridge) and ``evpark serve charging`` per replica (``EVPARK_INGEST=partitioned``).
The baseline, measured in the same run with the same load, is direct ingest: one ``evpark serve charging``
reading MQTT itself (``EVPARK_INGEST=direct``, the path before partitions).

The load generator plays a fleet's edges: ``--sites`` sites (default 40) with ``--chargers`` chargers each
(default 50: 2,000 chargers), each charger a session started and then meter values, ``--envelopes`` in all
(default 100,000), interleaved across sites as many edges would send them. Each configuration starts its
processes (so the MQTT session and the partition queues exist), stops the charging replicas — an outage of
the cloud service — and publishes the backlog as fast as the broker takes it; it waits there (in the
service's MQTT session, or forwarded by the bridge into the partition queues). Then the replicas start
again, and the bench prints how long until the service has every envelope in its inbox (process start
included) and the ingest rate (envelopes handled from the first one to the last, per second). The edge's
own relay rate (one edge replaying its store to the broker, ``bench_replay``) is printed first, with what
a fleet of 2,000 chargers with a meter value every 4 s sends (500 envelopes/s). Beside each configuration
it prints how busy the machine was while it drained and the CPU of each process (the bridge, each replica,
PostgreSQL, RabbitMQ, Mosquitto; ``bench/_cpu.py``): when the two cores are full, another replica cannot add
throughput, whatever the design (``--no-cpu`` leaves it out).

Targets on this machine: one replica ingests at least 500 envelopes/s (the backlog stays bounded); two
replicas at least 1.6x one; a 100k backlog drains in under 60 s.

    .venv/bin/python bench/bench_ingest.py
    .venv/bin/python bench/bench_ingest.py --envelopes 20000 --replicas 1 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
import aiomqtt
import asyncpg
import httpx
from _cpu import CpuMeter
from bench_replay import private_broker, replay

from cloud.platform.db import Database
from cloud.platform.ingest import partition_queue
from mqtt import Envelope, IdTagStatus, SessionMeter, SessionStarted, Topics

ROOT = Path(__file__).resolve().parents[1]
EVPARK = str(ROOT / ".venv" / "bin" / "evpark")
PG = "postgresql://postgres@127.0.0.1:5432"
PARTITIONS = 12  # EVPARK_INGEST_PARTITIONS' default
FLEET_RATE = 2_000 / 4  # 2,000 chargers, a meter value every 4 s
TARGET_BACKLOG_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fleet(sites: int, chargers: int, envelopes: int) -> list[tuple[str, bytes]]:
    """(topic, payload) of the backlog, in the order a fleet's edges would send it."""
    root_sites = [f"bench-{n:03d}" for n in range(sites)]
    seq = dict.fromkeys(root_sites, 0)
    t0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    out: list[tuple[str, Envelope]] = []
    rounds = 0
    while len(out) < envelopes:
        for charger in range(chargers):
            for site in root_sites:
                if len(out) >= envelopes:
                    break
                seq[site] += 1
                if rounds == 0:
                    body: SessionStarted | SessionMeter = SessionStarted(
                        charger_id=f"CP-{charger:03d}", connector_id=1, transaction_id=charger + 1,
                        id_tag=f"TAG-{site}-{charger}", id_tag_status=IdTagStatus.ACCEPTED, meter_start_wh=0,
                        started_at=t0)
                else:
                    body = SessionMeter(charger_id=f"CP-{charger:03d}", connector_id=1, transaction_id=charger + 1,
                                        energy_register_wh=rounds * 250, power_w=7_400.0,
                                        sampled_at=t0 + timedelta(seconds=4 * rounds))
                out.append((site, Envelope.wrap(site, seq[site], body, store_id="bench-store")))
        rounds += 1
    return [(site, envelope.to_bytes()) for site, envelope in out]


async def _stop(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 15)
    except TimeoutError:
        process.kill()


async def rabbitmqctl(*args: str) -> None:
    process = await asyncio.create_subprocess_exec("rabbitmqctl", "-q", *args, stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL)
    if await process.wait() != 0 and args[0] != "delete_vhost":
        raise SystemExit(f"rabbitmqctl {' '.join(args)} failed")


class Run:
    """One configuration: a fresh database, vhost and topic root; the bridge and the replicas as processes."""

    def __init__(self, broker: tuple[str, int], *, mode: str, replicas: int) -> None:
        self.broker = broker
        self.mode = mode
        self.replicas = replicas
        self.name = f"evpark_bench_ingest_{uuid.uuid4().hex[:8]}"
        self.vhost = self.name
        self.root = f"bench-{uuid.uuid4().hex[:8]}"
        self.processes: list[asyncio.subprocess.Process] = []
        self.bridge: asyncio.subprocess.Process | None = None
        self.ports: list[int] = []

    def env(self) -> dict[str, str]:
        return {**os.environ, "EVPARK_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.name}",
                "EVPARK_AMQP_URL": f"amqp://guest:guest@127.0.0.1:5672/{self.vhost}",
                "EVPARK_MQTT_HOST": self.broker[0], "EVPARK_MQTT_PORT": str(self.broker[1]),
                "EVPARK_MQTT_TOPIC_ROOT": self.root, "EVPARK_MIGRATE_ON_START": "false",
                "EVPARK_INGEST": self.mode, "EVPARK_LOG_LEVEL": "WARNING", "EVPARK_MQTT_RESEND": "false"}

    @contextlib.asynccontextmanager
    async def started(self) -> AsyncIterator[Run]:
        await self._create()
        try:
            if self.mode == "partitioned":
                self.bridge = await asyncio.create_subprocess_exec(EVPARK, "ingest", env=self.env(),
                                                                   stdout=subprocess.DEVNULL)
            self.ports = [free_port() for _ in range(self.replicas)]
            await self.start_replicas()
            await self._ready()
            yield self
        finally:
            await self.stop_replicas()
            if self.bridge is not None:
                await _stop(self.bridge)
            await self._drop()

    async def start_replicas(self) -> None:
        for port in self.ports:
            self.processes.append(await asyncio.create_subprocess_exec(
                EVPARK, "serve", "charging", "--port", str(port), env=self.env(), stdout=subprocess.DEVNULL))

    async def stop_replicas(self) -> None:
        """Down, as in an outage of the cloud: direct ingest's session and the partition queues keep what comes."""
        await asyncio.gather(*(_stop(process) for process in self.processes))
        self.processes.clear()

    async def _create(self) -> None:
        connection = await asyncpg.connect(f"{PG}/postgres")
        try:
            await connection.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await connection.close()
        db = Database(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.name}")
        await db.connect()
        try:
            await db.migrate(ROOT / "cloud" / "charging" / "migrations")
        finally:
            await db.close()
        await rabbitmqctl("add_vhost", self.vhost)
        await rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")

    async def _drop(self) -> None:
        await rabbitmqctl("delete_vhost", self.vhost)
        connection = await asyncpg.connect(f"{PG}/postgres")
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await connection.close()

    async def _ready(self) -> None:
        deadline = time.monotonic() + 120
        async with httpx.AsyncClient() as client:
            for port in self.ports:
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"http://127.0.0.1:{port}/ready", timeout=2)).status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise SystemExit(f"charging on :{port} never became ready")
                    await asyncio.sleep(0.3)
        await asyncio.sleep(3 if self.mode == "partitioned" else 1)  # bridge session up, partitions shared

    async def handled(self, connection: asyncpg.Connection) -> int:
        return int(await connection.fetchval("SELECT count(*) FROM inbox WHERE consumer = 'mqtt:charging'"))


async def publish(broker: tuple[str, int], topics: Topics, backlog: list[tuple[str, bytes]]) -> float:
    started = time.perf_counter()
    async with aiomqtt.Client(*broker, identifier=f"bench-fleet-{uuid.uuid4().hex[:6]}",
                              max_inflight_messages=1_000) as client:
        client.pending_calls_threshold = 10 * len(backlog)  # a window of publishes in flight is the point
        window = 500
        for first in range(0, len(backlog), window):
            await asyncio.gather(*(client.publish(topics.up(site, "session"), payload, qos=1)
                                   for site, payload in backlog[first:first + window]))
    return time.perf_counter() - started


async def queued(run: Run) -> int:
    """Messages waiting in the service's partition queues (each a batch of the bridge's)."""
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:5672/{run.vhost}")
    try:
        channel = await connection.channel()
        total = 0
        for partition in range(PARTITIONS):
            queue = await channel.declare_queue(partition_queue("charging", partition), passive=True)
            total += queue.declaration_result.message_count or 0
        return total
    finally:
        await connection.close()


async def measure(broker: tuple[str, int], backlog: list[tuple[str, bytes]], *, mode: str,
                  replicas: int) -> tuple[float, float, float, int, CpuMeter]:
    """(publish seconds, drain seconds, ingest rate, handled, CPU during the drain) of one configuration: the
    service is down while the backlog is published (waiting in its MQTT session, or forwarded by the bridge into
    its partitions), then its replicas start and drain it."""
    run = Run(broker, mode=mode, replicas=replicas)
    async with run.started():
        connection = await asyncpg.connect(f"{PG}/{run.name}")
        try:
            await run.stop_replicas()
            publish_s = await publish(broker, Topics(run.root), backlog)
            if mode == "partitioned":  # the bridge forwards what the broker still holds for it
                last, steady = -1, 0
                while steady < 6:
                    depth = await queued(run)
                    steady = steady + 1 if depth == last else 0
                    last = depth
                    await asyncio.sleep(0.25)
            started = time.perf_counter()
            await run.start_replicas()
            meter = CpuMeter({**({"evpark ingest (bridge)": run.bridge.pid} if run.bridge else {}),
                              **{f"charging replica {n}": p.pid for n, p in enumerate(run.processes, start=1)}})
            meter.begin()
            deadline = started + 600
            handled, first_at, first_count = 0, None, 0
            while time.perf_counter() < deadline:
                handled = await run.handled(connection)
                if first_at is None and handled:
                    first_at, first_count = time.perf_counter(), handled
                if handled >= len(backlog):
                    break
                await asyncio.sleep(0.1)
            finished = time.perf_counter()
            meter.end()
            rate = (handled - first_count) / (finished - first_at) if first_at and finished > first_at else 0.0
            return publish_s, finished - started, rate, handled, meter
        finally:
            await connection.close()


async def bench(args: argparse.Namespace, broker: tuple[str, int]) -> None:
    print(f"== the edge's relay rate (one edge replaying {args.edge_events:,} envelopes to the broker)")
    await replay(args.edge_events, broker)
    print(f"   a fleet of 2,000 chargers with a meter value every 4 s sends {FLEET_RATE:,.0f} envelopes/s")
    backlog = fleet(args.sites, args.chargers, args.envelopes)
    print(f"== ingest of a {len(backlog):,}-envelope backlog from {args.sites} sites x {args.chargers} chargers "
          f"(session starts, then meter values), os load {os.getloadavg()[0]:.1f}")
    results: dict[str, float] = {}
    drains: dict[str, float] = {}
    configurations = [("direct", 1)] + [("partitioned", n) for n in args.replicas]
    for mode, replicas in configurations:
        label = "baseline: direct MQTT, 1 service" if mode == "direct" else \
            f"partitioned, {replicas} replica{'s' if replicas > 1 else ''}"
        publish_s, drain_s, rate, handled, meter = await measure(broker, backlog, mode=mode, replicas=replicas)
        results[f"{mode}{replicas}"] = rate
        drains[f"{mode}{replicas}"] = drain_s
        complete = "" if handled == len(backlog) else f"  INCOMPLETE: {handled:,} of {len(backlog):,} after 600 s"
        print(f"  {label:36} backlog published in {publish_s:5.1f} s; drained {drain_s:6.1f} s after the start "
              f"(process start included); ingest {rate:7,.0f} envelopes/s{complete}")
        if args.cpu:
            thousands = max(1, handled // 1000)
            print(f"    CPU while it drained: the machine {meter.busy():.0%} busy of {meter.cores} cores, "
                  f"{meter.spent['(machine)'] / thousands * 1000:,.0f} ms per 1,000 envelopes in all; by process:")
            for line in meter.lines(thousands, "1,000 envelopes"):
                print(f"  {line}")
    one = results.get("partitioned1")
    if one:
        print(f"  one replica vs the fleet's {FLEET_RATE:,.0f}/s: {'met' if one >= FLEET_RATE else 'NOT MET'}; "
              f"vs the baseline: {one / results['direct1']:.2f}x")
        two = results.get("partitioned2")
        if two:
            verdict = "met" if two >= 1.6 * one else "NOT MET"
            print(f"  two replicas vs one: {two / one:.2f}x (target >= 1.6x: {verdict})")
        three = results.get("partitioned3")
        if three:
            print(f"  three replicas vs one: {three / one:.2f}x")
    for key, drain_s in drains.items():
        if key != "direct1":
            scaled = drain_s * 100_000 / len(backlog)
            print(f"  {key.removeprefix('partitioned')} replica(s): a 100,000 backlog drains in {scaled:.0f} s "
                  f"(target < {TARGET_BACKLOG_S:.0f} s: {'met' if scaled < TARGET_BACKLOG_S else 'NOT MET'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envelopes", type=int, default=100_000)
    parser.add_argument("--sites", type=int, default=40)
    parser.add_argument("--chargers", type=int, default=50)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--no-cpu", dest="cpu", action="store_false",
                        help="leave out each configuration's CPU use by process while it drains")
    parser.add_argument("--edge-events", type=int, default=20_000, help="backlog of the edge relay measurement")
    args = parser.parse_args()
    with private_broker() as broker:
        asyncio.run(bench(args, broker))


if __name__ == "__main__":
    main()
