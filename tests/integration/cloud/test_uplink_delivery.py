"""End-to-end delivery over the real Mosquitto: envelopes a broker acknowledged and then lost are found
by the cloud (holes in a category's numbers, and a lost tail from the high-water marks) and sent
again by the edge over the command path; what the edge dropped on purpose is "gone", counted and
not asked for again. The real edge store, site and uplink; the real charging service and its link,
on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from cloud.charging.app import session_messages
from cloud.charging.repository import SqlChargingRepository
from cloud.charging.service import ChargingService
from cloud.platform.db import Database
from cloud.platform.delivery import Delivery
from cloud.platform.metrics import UPLINK_RESEND_REQUESTS
from cloud.platform.mqtt_link import MqttLink
from cloud.platform.outbox import Outbox
from cloud.platform.tables import uplink_streams
from cloud.platform.unit_of_work import sql_units_of_work
from edge.site import Site
from edge.store import Retention, Store
from edge.uplink import Uplink
from mqtt import Command, Envelope, IdTagStatus, SessionStarted, SessionStopped, SiteHighWater, Topics
from tests.integration.cloud.test_session_ingest import NoCache, history_of, publish
from tests.support import services
from tests.support.events import registered
from tests.support.waiting import poll_until

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)


@dataclass
class Cloud:
    service: ChargingService
    link: MqttLink


@pytest.fixture
async def cloud(charging_db: Database, mosquitto: tuple[str, int], topic_root: str) -> AsyncIterator[Cloud]:
    box = Outbox(charging_db)
    service = ChargingService(sql_units_of_work(box, SqlChargingRepository), NoCache())  # type: ignore[arg-type]
    link = MqttLink(service="charging", outbox=box, host=mosquitto[0], port=mosquitto[1], topics=Topics(topic_root),
                    categories=["session"], handler=session_messages(service), username="evpark-cloud",
                    gap_grace=0.3)
    assert link.delivery is not None
    link.delivery.check_every = 0.1
    task = asyncio.create_task(link.run())
    await asyncio.wait_for(link.connected.wait(), 10)
    await service.on_vehicle_registered(registered("veh-1", "TAG1"))
    try:
        yield Cloud(service, link)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def sessions_at_the_edge(store: Store, count: int) -> None:
    async with store.transaction() as tx:
        for n in range(1, count + 1):
            started = T0 + timedelta(hours=n)
            await tx.emit(SessionStarted(charger_id="CP1", connector_id=1, transaction_id=n, id_tag="TAG1",
                                         id_tag_status=IdTagStatus.ACCEPTED, meter_start_wh=0, started_at=started))
            await tx.emit(SessionStopped(charger_id="CP1", transaction_id=n, meter_stop_wh=1_000 * n,
                                         energy_wh=1_000 * n, stopped_at=started + timedelta(minutes=30)))


async def acknowledged_and_lost(store: Store, transaction_ids: set[int]) -> None:
    """What a crashing broker does: it acknowledged these envelopes, and nobody ever receives them."""
    rows = await store.outbox_batch(1_000, sending=True)
    await store.delete_outbox([row.seq for row in rows if row.body.get("transaction_id") in transaction_ids])
    await store.delete_outbox([])  # the rest stays waiting, as it was


async def run_edge(store: Store, site_id: str, mosquitto: tuple[str, int], topic_root: str) -> asyncio.Task[None]:
    site = Site(store, site_id=site_id, heartbeat_interval=60, accept_unknown_chargers=True)
    uplink = Uplink(site, site_id=site_id, host=mosquitto[0], port=mosquitto[1], topic_root=topic_root,
                    username=site_id)
    return asyncio.create_task(uplink.run())


def energies(history: list[dict[str, Any]]) -> list[int]:
    return sorted(s["energy_wh"] for s in history)


async def test_a_hole_and_a_lost_tail_are_asked_for_and_sent_again(
        cloud: Cloud, mosquitto: tuple[str, int], topic_root: str, tmp_path: Path) -> None:
    site_id = services.fresh_name("site-")
    async with await Store.open(tmp_path / "edge.db") as store:
        await sessions_at_the_edge(store, 5)
        await acknowledged_and_lost(store, {2, 5})  # a hole (2) and the tail (5): nothing comes after it
        edge = await run_edge(store, site_id, mosquitto, topic_root)
        try:
            async def all_there() -> bool:
                return energies(await history_of(cloud.service, "veh-1", limit=10)) == [1_000, 2_000, 3_000,
                                                                                         4_000, 5_000]

            assert await poll_until(all_there, within=20, interval=0.1)
            assert cloud.link.delivery is not None
            async def settled() -> bool:
                streams = await cloud.link.delivery.streams(site_id)  # type: ignore[union-attr]
                return [(s["category"], s["done_through"], s["missing"]) for s in streams] == [("session", 10, 0)]

            assert await poll_until(settled, within=10, interval=0.1)
            (stream,) = await cloud.link.delivery.streams(site_id)
            assert stream["store_id"] == store.store_id and stream["gone"] == stream["lost"] == 0
        finally:
            edge.cancel()
            await asyncio.gather(edge, return_exceptions=True)
    history = await history_of(cloud.service, "veh-1", limit=10)
    assert [s["status"] for s in history] == ["completed"] * 5  # every stop arrived: none charging forever


async def test_what_the_edge_no_longer_has_is_gone_counted_and_not_asked_for_again(
        cloud: Cloud, mosquitto: tuple[str, int], topic_root: str, tmp_path: Path) -> None:
    site_id = services.fresh_name("site-")
    # An edge that keeps no acknowledged envelope: what the broker lost cannot be sent again.
    async with await Store.open(tmp_path / "edge.db", retention=Retention(envelopes=0)) as store:
        await sessions_at_the_edge(store, 3)
        await acknowledged_and_lost(store, {2})
        edge = await run_edge(store, site_id, mosquitto, topic_root)
        try:
            assert cloud.link.delivery is not None
            async def told_gone() -> bool:
                streams = await cloud.link.delivery.streams(site_id)  # type: ignore[union-attr]
                return bool(streams) and streams[0]["gone"] == 2 and streams[0]["missing"] == 0

            assert await poll_until(told_gone, within=20, interval=0.1)
            asked = UPLINK_RESEND_REQUESTS.labels("charging", "session")._value.get()
            await asyncio.sleep(1.5)  # several checks and more than the grace: nothing is asked again
            assert UPLINK_RESEND_REQUESTS.labels("charging", "session")._value.get() == asked
            (stream,) = await cloud.link.delivery.streams(site_id)
            assert (stream["done_through"], stream["lost"]) == (6, 0)
        finally:
            edge.cancel()
            await asyncio.gather(edge, return_exceptions=True)
    assert energies(await history_of(cloud.service, "veh-1", limit=10)) == [1_000, 3_000]


async def test_a_replaced_edge_store_is_a_new_stream_and_its_numbers_merge_with_nothing(
        cloud: Cloud, mosquitto: tuple[str, int], topic_root: str, tmp_path: Path) -> None:
    site_id = services.fresh_name("site-")
    stores = []
    for name in ("old.db", "new.db"):  # the same site, its database replaced: numbers start at 1 again
        async with await Store.open(tmp_path / name) as store:
            stores.append(store.store_id)
            await sessions_at_the_edge(store, 2)
            edge = await run_edge(store, site_id, mosquitto, topic_root)
            try:
                assert cloud.link.delivery is not None
                async def done(store_id: str = store.store_id) -> bool:
                    streams = await cloud.link.delivery.streams(site_id)  # type: ignore[union-attr]
                    return any(s["store_id"] == store_id and s["done_through"] == 4 for s in streams)

                assert await poll_until(done, within=20, interval=0.1)
            finally:
                edge.cancel()
                await asyncio.gather(edge, return_exceptions=True)
    assert cloud.link.delivery is not None
    streams = await cloud.link.delivery.streams(site_id)
    assert sorted((s["store_id"], s["done_through"], s["missing"]) for s in streams) == sorted(
        (store_id, 4, 0) for store_id in stores)


async def test_the_gap_state_survives_a_restart_of_the_service(
        charging_db: Database, mosquitto: tuple[str, int], topic_root: str, tmp_path: Path) -> None:
    site_id = services.fresh_name("site-")
    box = Outbox(charging_db)
    service = ChargingService(sql_units_of_work(box, SqlChargingRepository), NoCache())  # type: ignore[arg-type]

    def new_link() -> MqttLink:
        link = MqttLink(service="charging", outbox=box, host=mosquitto[0], port=mosquitto[1],
                        topics=Topics(topic_root), categories=["session"], handler=session_messages(service),
                        username="evpark-cloud", gap_grace=0.3)
        assert link.delivery is not None
        link.delivery.check_every = 0.1
        return link

    async with await Store.open(tmp_path / "edge.db") as store:
        await sessions_at_the_edge(store, 3)
        await acknowledged_and_lost(store, {3})
        first = new_link()
        task = asyncio.create_task(first.run())
        await asyncio.wait_for(first.connected.wait(), 10)
        first.delivery.grace = 3600  # type: ignore[union-attr]  # it learns of the gap, but never asks
        edge = await run_edge(store, site_id, mosquitto, topic_root)
        try:
            async def knows_the_gap() -> bool:
                streams = await first.delivery.streams(site_id)  # type: ignore[union-attr]
                return bool(streams) and streams[0]["missing"] == 2
            assert await poll_until(knows_the_gap, within=20, interval=0.1)
            task.cancel()  # the service stops
            await asyncio.gather(task, return_exceptions=True)
            second = new_link()  # and starts again: what it knew of the gap is in its database
            async with charging_db.session() as session, session.begin():  # (and its time to ask has come)
                await session.execute(update(uplink_streams).values(next_request_at=datetime.now(UTC)))
            task = asyncio.create_task(second.run())

            async def filled() -> bool:
                streams = await second.delivery.streams(site_id)  # type: ignore[union-attr]
                return bool(streams) and streams[0]["missing"] == 0 and streams[0]["done_through"] == 6
            assert await poll_until(filled, within=20, interval=0.1)
        finally:
            task.cancel()
            edge.cancel()
            await asyncio.gather(task, edge, return_exceptions=True)


async def test_a_parked_envelope_is_no_gap_and_is_not_asked_for(
        cloud: Cloud, mosquitto: tuple[str, int], topic_root: str) -> None:
    site_id = services.fresh_name("site-")
    topics = Topics(topic_root)
    store_id = "s" * 32

    def numbered(seq: int, transaction_id: int) -> bytes:
        return Envelope.wrap(site_id, seq, SessionStarted(
            charger_id="CP1", connector_id=1, transaction_id=transaction_id, id_tag="TAG1",
            id_tag_status=IdTagStatus.ACCEPTED, meter_start_wh=0, started_at=T0), store_id=store_id,
            category_seq=seq).to_bytes()

    broken = json.loads(numbered(2, 2))
    broken["body"]["connector_id"] = "not a number"  # breaks the contract: parked
    asked = UPLINK_RESEND_REQUESTS.labels("charging", "session")._value.get()
    await publish(mosquitto, topics, [(topics.up(site_id, "session"), numbered(1, 1)),
                                      (topics.up(site_id, "session"), json.dumps(broken).encode()),
                                      (topics.up(site_id, "session"), numbered(3, 3))])
    assert cloud.link.delivery is not None

    async def booked() -> bool:
        streams = await cloud.link.delivery.streams(site_id)  # type: ignore[union-attr]
        return bool(streams) and (streams[0]["done_through"], streams[0]["missing"]) == (3, 0)

    assert await poll_until(booked, within=10, interval=0.1)
    await asyncio.sleep(1.0)  # more than the grace
    assert UPLINK_RESEND_REQUESTS.labels("charging", "session")._value.get() == asked


async def test_tries_count_only_while_the_site_is_heard_from_then_the_range_is_given_up(
        charging_db: Database) -> None:
    delivery = Delivery(charging_db, consumer="mqtt:test", service="test", categories=["session"], grace=1.0,
                        max_requests=2)
    box = Outbox(charging_db)
    sent: list[Command] = []

    async def send(command: Command) -> None:
        sent.append(command)

    def session(seq: int) -> Envelope:
        return Envelope.wrap("site-t", seq, SessionStopped(charger_id="CP1", transaction_id=seq, meter_stop_wh=1,
                                                           energy_wh=1, stopped_at=T0), store_id="s1", category_seq=seq)

    def high_water() -> Envelope:
        return Envelope.wrap("site-t", 9, SiteHighWater(high_water={"session": 4}, at=T0), store_id="s1",
                             category_seq=9)

    t = datetime.now(UTC)
    async with box.transaction() as tx:
        await delivery.observe(tx, [session(1), session(4)], now=t)  # 2 and 3 missing
    for _ in range(10):  # the site is offline: asked again and again (with back-off), never given up
        t += timedelta(minutes=2)
        await delivery.check(send, now=t)
    (stream,) = await delivery.streams()
    assert (len(sent), stream["requests"], stream["lost"], stream["missing"]) == (10, 1, 0, 2)
    assert {(c.body["first_seq"], c.body["last_seq"], c.type) for c in sent} == {(2, 3, "site.resend")}
    for _ in range(3):  # heard from (its high-water marks), and still no answer: the tries count
        async with box.transaction() as tx:
            await delivery.observe(tx, [high_water()], now=t + timedelta(seconds=1))
        t += timedelta(minutes=2)
        await delivery.check(send, now=t)
    (stream,) = await delivery.streams()
    assert (len(sent), stream["lost"], stream["missing"], stream["done_through"]) == (11, 2, 0, 4)


async def test_a_sites_backlog_is_what_its_edge_numbered_that_did_not_arrive(charging_db: Database) -> None:
    delivery = Delivery(charging_db, consumer="mqtt:test", service="test", categories=["session", "site"])
    box = Outbox(charging_db)

    def session(seq: int, site_id: str = "site-t") -> Envelope:
        return Envelope.wrap(site_id, seq, SessionStopped(charger_id="CP1", transaction_id=seq, meter_stop_wh=1,
                                                          energy_wh=1, stopped_at=T0), store_id="s1", category_seq=seq)

    async with box.transaction() as tx:  # 1 and 4 arrived; the edge says it numbered 6: 2, 3, 5 and 6 missing
        await delivery.observe(tx, [session(1), session(4), session(1, "site-u")], now=T0)
        await delivery.observe(tx, [Envelope.wrap("site-t", 9, SiteHighWater(high_water={"session": 6, "site": 2},
                                                                              at=T0), store_id="s1", category_seq=1)],
                               now=T0 + timedelta(seconds=30))
    backlog = await delivery.backlog()
    assert {site: (link.missing, link.heard_at) for site, link in backlog.items()} == {
        "site-t": ({"session": 4, "site": 1}, T0 + timedelta(seconds=30)), "site-u": ({"session": 0}, T0)}
