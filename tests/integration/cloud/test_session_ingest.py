"""The charging service consumes the edge's session messages from the real Mosquitto, once each."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import pytest
from sqlalchemy import func, select

from cloud.charging.app import session_messages
from cloud.charging.repository import SqlChargingRepository
from cloud.charging.service import ChargingService
from cloud.platform.db import Database
from cloud.platform.mqtt_link import MqttLink
from cloud.platform.outbox import Outbox
from cloud.platform.tables import outbox, parked
from cloud.platform.unit_of_work import sql_units_of_work
from mqtt import Envelope, IdTagStatus, SessionStarted, SessionStopped, Topics
from tests.support.events import registered
from tests.support.identity import PRINCIPALS


class NoCache:
    async def get(self, key: str) -> bytes | None:
        return None

    async def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None:
        return None

    async def delete(self, key: str) -> None:
        return None


@pytest.fixture
async def ingest(charging_db: Database, mosquitto: tuple[str, int], topic_root: str) -> AsyncIterator[ChargingService]:
    box = Outbox(charging_db)
    service = ChargingService(sql_units_of_work(box, SqlChargingRepository), NoCache())  # type: ignore[arg-type]
    link = MqttLink(service="charging", outbox=box, host=mosquitto[0], port=mosquitto[1], topics=Topics(topic_root),
                    categories=["session"], handler=session_messages(service), username="evpark-cloud")
    task = asyncio.create_task(link.run())
    await asyncio.wait_for(link.connected.wait(), 10)
    await service.on_vehicle_registered(registered("veh-1", "TAG1"))
    try:
        yield service
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def envelopes(site: str) -> list[Envelope]:
    t0 = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
    return [
        Envelope.wrap(site, 1, SessionStarted(charger_id="CP1", connector_id=1, transaction_id=41, id_tag="TAG1",
                                              id_tag_status=IdTagStatus.ACCEPTED, meter_start_wh=1_000,
                                              started_at=t0)),
        Envelope.wrap(site, 2, SessionStopped(charger_id="CP1", transaction_id=41, meter_stop_wh=8_500,
                                              energy_wh=7_500, stopped_at=t0.replace(hour=19))),
    ]


async def publish(mosquitto: tuple[str, int], topics: Topics, items: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client(*mosquitto, username="site-test") as client:
        for topic, payload in items:
            await client.publish(topic, payload, qos=1)


async def history_of(service: ChargingService, vehicle_id: str, *, limit: int) -> list[dict[str, Any]]:
    """The vehicle's completed sessions as the REST API shows them (to an admin: these vehicles of
    1.0 events belong to no driver)."""
    page = await service.history(PRINCIPALS["admin"], vehicle_id, limit=limit, offset=0)
    return [s.model_dump(mode="json") for s in page.sessions]


async def wait_for(predicate, limit_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + limit_s
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_redelivered_session_message_changes_nothing(
        ingest: ChargingService, charging_db: Database, mosquitto: tuple[str, int], topic_root: str) -> None:
    topics = Topics(topic_root)
    started, stopped = envelopes("site-a")
    topic = topics.up("site-a", "session")
    # Each message twice, as after a lost PUBACK, and the stop once more at the end.
    await publish(mosquitto, topics, [(topic, started.to_bytes()), (topic, started.to_bytes()),
                                      (topic, stopped.to_bytes()), (topic, stopped.to_bytes()),
                                      (topic, stopped.to_bytes())])

    async def completed() -> bool:
        return bool(await history_of(ingest, "veh-1", limit=10))

    await wait_for(completed)
    await asyncio.sleep(0.5)
    history = await history_of(ingest, "veh-1", limit=10)
    assert [(s["energy_wh"], s["status"]) for s in history] == [(7_500, "completed")]
    async with charging_db.session() as session:
        events = (await session.execute(select(outbox.c.name).order_by(outbox.c.id))).scalars().all()
    assert events == ["charging.started", "charging.completed"]


async def test_a_malformed_message_is_parked_and_the_next_one_still_handled(
        ingest: ChargingService, charging_db: Database, mosquitto: tuple[str, int], topic_root: str) -> None:
    topics = Topics(topic_root)
    started, stopped = envelopes("site-b")
    wrong_site = Envelope.wrap("site-c", 3, SessionStopped(charger_id="CP9", transaction_id=9, meter_stop_wh=1,
                                                           energy_wh=1, stopped_at=datetime.now(UTC)))
    topic = topics.up("site-b", "session")
    await publish(mosquitto, topics, [(topic, b"{not json"), (topic, b'{"id": "x"}'), (topic, wrong_site.to_bytes()),
                                      (topic, started.to_bytes()), (topic, stopped.to_bytes())])

    async def completed() -> bool:
        return bool(await history_of(ingest, "veh-1", limit=10))

    await wait_for(completed)
    async with charging_db.session() as session:
        count = await session.scalar(select(func.count()).select_from(parked))
    assert count == 3


async def test_a_backlog_is_taken_in_batches_and_one_poison_envelope_holds_nothing_back(
        charging_db: Database, mosquitto: tuple[str, int], topic_root: str) -> None:
    """A site's backlog after an outage arrives back to back: every session lands once; an envelope
    whose handling always fails is parked and the rest of its batch is still handled."""
    box = Outbox(charging_db)
    service = ChargingService(sql_units_of_work(box, SqlChargingRepository), NoCache())  # type: ignore[arg-type]
    record = session_messages(service)
    calls: list[str] = []

    async def handler(tx, envelope: Envelope) -> None:  # type: ignore[no-untyped-def]
        calls.append(envelope.type)
        if envelope.body.get("charger_id") == "POISON":
            raise RuntimeError("this envelope can never be handled")
        await record(tx, envelope)

    link = MqttLink(service="charging", outbox=box, host=mosquitto[0], port=mosquitto[1], topics=Topics(topic_root),
                    categories=["session"], handler=handler, username="evpark-cloud")
    await service.on_vehicle_registered(registered("veh-9", "TAG9"))
    t0 = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
    items: list[tuple[str, bytes]] = []
    topic = Topics(topic_root).up("site-z", "session")
    for n in range(1, 301):
        started = Envelope.wrap("site-z", 2 * n, SessionStarted(
            charger_id="CP1", connector_id=1, transaction_id=n, id_tag="TAG9", id_tag_status=IdTagStatus.ACCEPTED,
            meter_start_wh=0, started_at=t0))
        stopped = Envelope.wrap("site-z", 2 * n + 1, SessionStopped(
            charger_id="CP1", transaction_id=n, meter_stop_wh=n, energy_wh=n, stopped_at=t0.replace(hour=19)))
        items += [(topic, started.to_bytes()), (topic, stopped.to_bytes())]
        if n == 150:
            poison = Envelope.wrap("site-z", 10_000, SessionStopped(
                charger_id="POISON", transaction_id=1, meter_stop_wh=1, energy_wh=1, stopped_at=t0))
            items.append((topic, poison.to_bytes()))
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 10)
        await publish(mosquitto, Topics(topic_root), items)  # back to back, as a replayed backlog
        async def all_in() -> bool:
            return len(await history_of(service, "veh-9", limit=500)) == 300

        await wait_for(all_in, limit_s=60)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    history = await history_of(service, "veh-9", limit=500)
    assert sorted(s["energy_wh"] for s in history) == list(range(1, 301))
    async with charging_db.session() as session:
        parked_rows = (await session.execute(select(parked.c.payload))).scalars().all()
    assert len(parked_rows) == 1 and "POISON" in parked_rows[0]
