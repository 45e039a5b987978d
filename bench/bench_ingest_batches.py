"""Envelopes per second through the MQTT link into the charging service, on PostgreSQL and Redis.

    .venv/bin/python bench/bench_ingest_batches.py [--envelopes 5000] [--batch 200] [--sites 25]

The same meter values (``session.meter`` of running sessions, round-robin over the sites' chargers as they come
in production) are handed to ``MqttLink.handle_messages`` in batches, three ways, each on a fresh database:

- ``per-envelope``: the link as it was: an inbox claim, then ``record_session_message``, envelope after envelope;
- ``claim_many``: one inbox claim for the batch, the handler still envelope after envelope;
- ``set-based``: one claim, then ``record_session_messages`` (one read per table, one upsert per table, one
  cache invalidation).

No broker: the MQTT client's share is the same in all three (the issue's 205-430/s was end to end).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cloud.charging import SPEC
from cloud.charging.app import session_batches, session_messages
from cloud.charging.repository import SqlChargingRepository
from cloud.charging.service import ChargingService
from cloud.contracts import Received
from cloud.contracts.vehicles import VehicleRegistered
from cloud.platform.cache import RedisCache
from cloud.platform.db import Database
from cloud.platform.mqtt_link import MqttLink
from cloud.platform.outbox import Outbox
from cloud.platform.unit_of_work import sql_units_of_work
from mqtt import Envelope, IdTagStatus, SessionMeter, SessionStarted, Topics
from mqtt.topics import category_of

PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
ROOT = "bench-ingest"
MIGRATIONS = Path(__file__).resolve().parent.parent / "cloud" / "charging" / "migrations"


class PerEnvelopeLink(MqttLink):
    """The link's batch as it was before claim_many: a claim and the handler, one envelope after another."""

    async def _handle_together(self, envelopes: list[tuple[str, bytes, Envelope]]) -> None:
        assert self._handler is not None
        async with self._outbox.transaction() as tx:
            for _topic, _payload, envelope in envelopes:
                if not await tx.claim(str(envelope.id), self.consumer):
                    continue
                if self._reads(envelope):
                    await self._handler(tx, envelope)
            if self.delivery is not None:
                await self.delivery.observe(tx, [envelope for _topic, _payload, envelope in envelopes])


def workload(sites: int, chargers: int, meters: int) -> tuple[list[Envelope], list[Envelope]]:
    """The sessions' starts, and ``meters`` meter values of each session, interleaved as they arrive."""
    starts, values = [], []
    seq: dict[str, int] = {}

    def next_seq(site: str) -> int:
        seq[site] = seq.get(site, 0) + 1
        return seq[site]

    for s in range(sites):
        site = f"bench-{s:03d}"
        for c in range(chargers):
            seq_n = next_seq(site)
            starts.append(Envelope.wrap(site, seq_n, SessionStarted(
                charger_id=f"CP{c:02d}", connector_id=1, transaction_id=1 + c, id_tag=f"TAG{s:03d}{c:02d}",
                id_tag_status=IdTagStatus.ACCEPTED, meter_start_wh=10_000, started_at=T0),
                store_id="benchstore", category_seq=seq_n))
    for n in range(1, meters + 1):
        for s in range(sites):
            site = f"bench-{s:03d}"
            for c in range(chargers):
                seq_n = next_seq(site)
                values.append(Envelope.wrap(site, seq_n, SessionMeter(
                    charger_id=f"CP{c:02d}", connector_id=1, transaction_id=1 + c,
                    energy_register_wh=10_000 + 120 * n, power_w=7_200.0, sampled_at=T0 + timedelta(minutes=n)),
                    store_id="benchstore", category_seq=seq_n))
    return starts, values


async def run(mode: str, starts: list[Envelope], values: list[Envelope], batch: int) -> float:
    name = f"evpark_bench_ingest_{uuid.uuid4().hex[:8]}"
    db = Database(PG.format(name=name))
    await db.connect()
    cache = RedisCache("redis://127.0.0.1:6379/0", prefix=f"bench-ingest-{uuid.uuid4().hex[:8]}:")
    try:
        await db.migrate(MIGRATIONS)
        box = Outbox(db, source="charging")
        service = ChargingService(sql_units_of_work(box, SqlChargingRepository), cache)
        kind = PerEnvelopeLink if mode == "per-envelope" else MqttLink
        link = kind(service="charging", outbox=box, host="127.0.0.1", port=1, topics=Topics(ROOT),
                    categories=SPEC.mqtt_categories, handler=session_messages(service),
                    batch_handler=session_batches(service) if mode == "set-based" else None)
        for e in starts:  # every idTag a known vehicle: the per-envelope path reads it for each value
            tag = e.body["id_tag"]
            body = VehicleRegistered(vehicle_id=f"veh-{tag}", plate=tag, id_tags=[tag], owner_id="acc-bench")
            await service.on_vehicle_registered(Received(id=uuid.uuid4(), name=body.NAME, version=body.VERSION,
                                                         occurred_at=T0, source="vehicles", body=body))

        def pairs(envelopes: list[Envelope]) -> list[tuple[str, bytes]]:
            return [(link.topics.up(e.site_id, category_of(e.type)), e.to_bytes()) for e in envelopes]

        for start in range(0, len(starts), batch):
            await link.handle_messages(pairs(starts[start:start + batch]))
        chunks = [pairs(values[start:start + batch]) for start in range(0, len(values), batch)]
        began = time.perf_counter()
        for chunk in chunks:
            await link.handle_messages(chunk)
        return len(values) / (time.perf_counter() - began)
    finally:
        await cache.close()
        await db.close()
        admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envelopes", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--sites", type=int, default=25)
    parser.add_argument("--chargers", type=int, default=10, help="chargers per site, one session each")
    parser.add_argument("--modes", default="per-envelope,claim_many,set-based")
    args = parser.parse_args()
    sessions = args.sites * args.chargers
    starts, values = workload(args.sites, args.chargers, max(1, args.envelopes // sessions))
    print(f"{len(values)} meter values of {sessions} sessions at {args.sites} sites, batches of {args.batch}, "
          "PostgreSQL + Redis")
    for mode in args.modes.split(","):
        rate = await run(mode, starts, values, args.batch)
        print(f"  {mode:<13} {rate:8.0f} envelopes/s")


if __name__ == "__main__":
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    asyncio.run(main())
