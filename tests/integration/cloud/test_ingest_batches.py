"""Set-based MQTT batches on SQLite and PostgreSQL: one inbox claim for a batch's ids, the charging service's batch
handler with the same effect as one envelope after another, and the one-by-one fallback of a failed batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from cloud.charging import SPEC
from cloud.charging.app import session_batches, session_messages
from cloud.charging.models import ChargerStationRow, ChargingHistoryRow, ChargingSession
from cloud.charging.repository import SqlChargingRepository
from cloud.charging.service import ChargingService
from cloud.parking import SPEC as PARKING
from cloud.parking import models as parking_models
from cloud.parking.app import site_handlers
from cloud.parking.booking_repository import SqlBookingRepository
from cloud.parking.booking_service import BookingService
from cloud.parking.repository import SqlParkingRepository
from cloud.parking.service import ParkingService
from cloud.platform.cache import MemoryCache
from cloud.platform.db import Database
from cloud.platform.mqtt_link import MqttLink
from cloud.platform.outbox import Outbox
from cloud.platform.tables import inbox, outbox, parked
from cloud.platform.unit_of_work import sql_units_of_work
from mqtt import (
    BayOccupancy,
    ChargerStatus,
    Envelope,
    IdTagStatus,
    OpenTransaction,
    SessionMeter,
    SessionsOpen,
    SessionStarted,
    SessionStopped,
    Topics,
)
from mqtt.topics import category_of
from tests.integration.cloud.conftest import migrations_of
from tests.support.events import registered

T0 = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
ROOT = "evpark-batches"


class Ingest:
    """The charging service behind an MQTT link (no broker: the tests hand the link its batches)."""

    def __init__(self, db: Database, *, batches: bool = True) -> None:
        self.db = db
        self.box = Outbox(db, source="charging")
        self.cache = MemoryCache()
        self.service = ChargingService(sql_units_of_work(self.box, SqlChargingRepository), self.cache)
        self.link = MqttLink(service="charging", outbox=self.box, host="127.0.0.1", port=1, topics=Topics(ROOT),
                             categories=SPEC.mqtt_categories, handler=session_messages(self.service),
                             batch_handler=session_batches(self.service) if batches else None, resend=False)

        self.singles = 0
        """Envelopes handled one by one (the fallback of a failed batch)."""
        single = self.link._handle_one

        async def counted(topic: str, payload: bytes, envelope: Envelope) -> None:
            self.singles += 1
            await single(topic, payload, envelope)

        self.link._handle_one = counted  # type: ignore[method-assign]

    def topic(self, envelope: Envelope) -> str:
        return self.link.topics.up(envelope.site_id, category_of(envelope.type))

    async def batch(self, envelopes: list[Envelope]) -> None:
        """One batch as the link reads it from the broker."""
        await self.link.handle_messages([(self.topic(e), e.to_bytes()) for e in envelopes])

    async def one_by_one(self, envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            await self.link.handle_messages([(self.topic(envelope), envelope.to_bytes())])

    async def rows(self, model: Any, *, site_id: str) -> list[dict[str, Any]]:
        table = model.__table__
        async with self.db.session() as session:
            found = (await session.execute(select(table).where(table.c.site_id == site_id))).mappings().all()
        return [dict(row) for row in found]

    async def events(self) -> list[str]:
        async with self.db.session() as session:
            return list((await session.execute(select(outbox.c.name).order_by(outbox.c.id))).scalars())


def session_of(site: str, seq: int, charger: str, tx: int, tag: str, *, meters: int = 2,
               stop: bool = True) -> list[Envelope]:
    """A session's messages: start, meter values, a connector status, and (``stop``) its stop."""
    out = [Envelope.wrap(site, seq, SessionStarted(
        charger_id=charger, connector_id=1, transaction_id=tx, id_tag=tag, id_tag_status=IdTagStatus.ACCEPTED,
        meter_start_wh=1_000, started_at=T0))]
    for n in range(1, meters + 1):
        out.append(Envelope.wrap(site, seq + n, SessionMeter(
            charger_id=charger, connector_id=1, transaction_id=tx, energy_register_wh=1_000 + 500 * n,
            power_w=7_000.0, sampled_at=T0 + timedelta(minutes=n))))
    out.append(Envelope.wrap(site, seq + meters + 1, ChargerStatus(
        charger_id=charger, connector_id=1, status="Charging", observed_at=T0 + timedelta(seconds=30))))
    if stop:
        out.append(Envelope.wrap(site, seq + meters + 2, SessionStopped(
            charger_id=charger, transaction_id=tx, meter_stop_wh=1_000 + 500 * meters + 100,
            energy_wh=500 * meters + 100, stopped_at=T0 + timedelta(hours=1), reason="Local")))
    return out


def comparable(rows: list[dict[str, Any]], *drop: str) -> list[dict[str, Any]]:
    """Rows without what differs between two sites by construction (ids derived from the site, the site,
    the time they were written)."""
    gone = {"id", "session_id", "site_id", "updated_at", *drop}
    kept = [{k: v for k, v in row.items() if k not in gone} for row in rows]
    return sorted(kept, key=repr)


async def test_claim_many_claims_each_new_id_once(charging_db: Database) -> None:
    box = Outbox(charging_db)
    async with box.transaction() as tx:
        assert await tx.claim("m-1", "mqtt:charging")
    async with box.transaction() as tx:
        claimed = await tx.claim_many(["m-1", "m-2", "m-3", "m-2"], "mqtt:charging")
        assert claimed == {"m-2", "m-3"}  # m-1 was processed already; m-2 twice counts once
        assert await tx.claim_many([], "mqtt:charging") == set()
    async with box.transaction() as tx:
        assert await tx.claim_many(["m-1", "m-2", "m-4"], "mqtt:charging") == {"m-4"}
        assert await tx.claim_many(["m-1"], "queue:other") == {"m-1"}  # each consumer has its own inbox
    async with charging_db.session() as session:
        assert await session.scalar(select(func.count()).select_from(inbox)) == 5


async def test_a_batch_of_many_sessions_leaves_the_rows_one_by_one_handling_leaves(charging_db: Database) -> None:
    ingest = Ingest(charging_db)
    await ingest.service.on_vehicle_registered(registered("veh-1", "TAG1"))
    await ingest.service.on_vehicle_registered(registered("veh-2", "TAG2"))

    def messages(site: str) -> list[Envelope]:
        out: list[Envelope] = []
        for n in range(12):  # interleaved: a session's messages in order, sessions mixed
            out += session_of(site, 1 + 10 * n, f"CP{n % 3}", 100 + n, f"TAG{1 + n % 2}", stop=n % 4 != 0)
        return sorted(out, key=lambda e: (e.seq % 10, e.seq))

    await ingest.one_by_one(messages("site-one"))
    for start in range(0, len(messages("site-all")), 25):  # batches of 25, as they come
        await ingest.batch(messages("site-all")[start:start + 25])

    assert ingest.singles == len(messages("site-one"))  # the one-by-one run only: no batch fell back
    for model in (ChargingSession, ChargerStationRow, ChargingHistoryRow):
        one = await ingest.rows(model, site_id="site-one")
        together = await ingest.rows(model, site_id="site-all")
        assert one, model
        assert comparable(together) == comparable(one), model
    events = await ingest.events()
    assert events.count("charging.started") == 24 and events.count("charging.completed") == 18


async def test_two_messages_of_one_session_in_one_batch_apply_in_order(charging_db: Database) -> None:
    ingest = Ingest(charging_db)
    await ingest.service.on_vehicle_registered(registered("veh-1", "TAG1"))
    await ingest.cache.set("charging:status:veh-1", b"cached view")
    started, meter_1, meter_2, status, stopped = session_of("site-a", 1, "CP1", 7, "TAG1")

    await ingest.batch([started, meter_1, meter_2, status])
    [running] = await ingest.rows(ChargingSession, site_id="site-a")
    assert (running["status"], running["meter_last_wh"], running["energy_wh"]) == ("active", 2_000, 1_000)
    assert await ingest.cache.get("charging:status:veh-1") is None  # the vehicle's status cache dropped
    assert ingest.singles == 0

    await ingest.batch([meter_1, stopped, meter_2])  # a repeat, the stop, a repeat: only the stop is new
    [done] = await ingest.rows(ChargingSession, site_id="site-a")
    assert (done["status"], done["energy_wh"], done["meter_stop_wh"]) == ("completed", 1_100, 2_100)
    assert await ingest.events() == ["charging.started", "charging.charger_online", "charging.completed"]


async def test_a_reconciliation_in_a_batch_sees_the_sessions_the_batch_opened(charging_db: Database) -> None:
    ingest = Ingest(charging_db)
    first = session_of("site-a", 1, "CP1", 1, "TAG1", meters=1, stop=False)
    second = session_of("site-a", 10, "CP2", 2, "TAG2", meters=1, stop=False)
    report = Envelope.wrap("site-a", 20, SessionsOpen(
        open=[OpenTransaction(charger_id="CP2", connector_id=1, transaction_id=2)], last_transaction_id=2,
        at=T0 + timedelta(hours=2)))
    late_meter = Envelope.wrap("site-a", 21, SessionMeter(
        charger_id="CP2", connector_id=1, transaction_id=2, energy_register_wh=4_000, power_w=7_000.0,
        sampled_at=T0 + timedelta(hours=2)))
    await ingest.batch([*first, *second, report, late_meter])  # none of them written before the report

    assert ingest.singles == 0
    rows = sorted(await ingest.rows(ChargingSession, site_id="site-a"), key=lambda r: r["transaction_id"])
    assert [(r["transaction_id"], r["status"], r["closed_by"], r["energy_wh"]) for r in rows] == [
        (1, "completed", "reconciliation", 500), (2, "active", None, 3_000)]
    events = await ingest.events()
    assert events.count("charging.completed") == 1 and "charging.anomaly" in events


async def test_a_duplicate_in_a_batch_counts_once(charging_db: Database) -> None:
    ingest = Ingest(charging_db)
    started, meter_1, _meter_2, _status, stopped = session_of("site-a", 1, "CP1", 8, "TAG9")
    await ingest.batch([started, meter_1, started, stopped, stopped, meter_1])

    [done] = await ingest.rows(ChargingSession, site_id="site-a")
    assert (done["status"], done["energy_wh"]) == ("completed", 1_100)
    assert len(await ingest.rows(ChargingHistoryRow, site_id="site-a")) == 1
    assert ingest.singles == 0
    assert await ingest.events() == ["charging.started", "charging.completed"]
    async with charging_db.session() as session:
        assert await session.scalar(select(func.count()).select_from(inbox)) == 3


async def test_a_batch_with_an_envelope_that_cannot_be_stored_falls_back_one_by_one(charging_db: Database) -> None:
    ingest = Ingest(charging_db)
    good = session_of("site-a", 1, "CP1", 9, "TAG1", meters=1)
    bad = Envelope.wrap("site-a", 50, SessionStarted(
        charger_id="CP2", connector_id=1, transaction_id=2**63, id_tag="TAG2", id_tag_status=IdTagStatus.ACCEPTED,
        meter_start_wh=0, started_at=T0))  # a transaction id beyond a 64-bit column
    await ingest.batch([good[0], good[1], bad, *good[2:]])

    [done] = await ingest.rows(ChargingSession, site_id="site-a")
    assert (done["transaction_id"], done["status"], done["energy_wh"]) == (9, "completed", 600)
    async with charging_db.session() as session:
        held = (await session.execute(select(parked.c.payload, parked.c.consumer))).all()
    assert [(str(bad.id) in payload, consumer) for payload, consumer in held] == [(True, "mqtt:charging")]
    assert ingest.singles == len(good) + 1  # the batch failed as a whole, then each envelope on its own
    assert await ingest.events() == ["charging.started", "charging.charger_online", "charging.completed"]


async def test_a_link_without_a_batch_handler_claims_the_batch_at_once_too(charging_db: Database) -> None:
    ingest = Ingest(charging_db, batches=False)
    started, meter_1, meter_2, _status, stopped = session_of("site-a", 1, "CP1", 10, "TAG1")
    await ingest.batch([started, meter_1, meter_2, meter_2, stopped])
    assert ingest.singles == 0

    [done] = await ingest.rows(ChargingSession, site_id="site-a")
    assert (done["status"], done["energy_wh"]) == ("completed", 1_100)
    assert await ingest.events() == ["charging.started", "charging.completed"]


async def test_parking_batches_of_bay_reports_leave_the_rows_one_by_one_handling_leaves(database_url: str) -> None:
    db = Database(database_url)
    await db.connect()
    try:
        await db.migrate(migrations_of("parking"))
        box = Outbox(db, source="parking")
        cache = MemoryCache()
        service = ParkingService(sql_units_of_work(box, SqlParkingRepository), cache)
        bookings = BookingService(sql_units_of_work(box, SqlBookingRepository), cache)
        one, together = site_handlers(service, bookings)
        link = MqttLink(service="parking", outbox=box, host="127.0.0.1", port=1, topics=Topics(ROOT),
                        categories=PARKING.mqtt_categories, handler=one, batch_handler=together, resend=False)
        await cache.set("parking:availability:site-all", b"cached")

        def reports(site: str) -> list[tuple[str, bytes]]:
            out = []
            for n in range(30):  # bays of a site changing, some several times in a batch, one report repeated
                body = BayOccupancy(bay_id=f"B{n % 7}", state="occupied" if n % 3 else "free",
                                    changed_at=T0 + timedelta(minutes=n))
                envelope = Envelope.wrap(site, n + 1, body)
                out.append((link.topics.up(site, "bay"), envelope.to_bytes()))
            return [*out[:10], out[4], *out[10:]]

        for pair in reports("site-one"):
            await link.handle_messages([pair])
        calls: list[int] = []

        async def counted(tx: Any, envelopes: Any) -> None:
            calls.append(len(envelopes))
            await together(tx, envelopes)

        link._batch_handler = counted
        batched = reports("site-all")
        await link.handle_messages(batched[:16])
        await link.handle_messages(batched[16:])

        assert calls == [15, 15]  # every new report went through the batch handler (the repeat was skipped)
        async with db.session() as session:
            table = parking_models.Bay.__table__  # type: ignore[attr-defined]
            rows = {site: comparable([dict(r) for r in (await session.execute(
                select(table).where(table.c.site_id == site))).mappings()], "slot_id")
                for site in ("site-one", "site-all")}
            payloads = list((await session.execute(select(outbox.c.payload).order_by(outbox.c.id))).scalars())
        assert rows["site-all"] == rows["site-one"] and len(rows["site-one"]) == 7
        per_site = [sum(f'"site_id":"{site}"' in p for p in payloads) for site in ("site-one", "site-all")]
        assert per_site[0] == per_site[1] > 7  # the same events, once each
        assert await cache.get("parking:availability:site-all") is None
    finally:
        await db.close()
