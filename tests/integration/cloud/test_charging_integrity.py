"""Issue 12 in the charging service, on SQLite and PostgreSQL and the real Mosquitto: sessions of an old
database moved to the "legacy" store, and a message that cannot be stored parked at once while the other
sites' sessions go on."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from cloud.charging.app import session_messages
from cloud.charging.repository import SqlChargingRepository
from cloud.charging.service import ChargingService
from cloud.platform.db import Database
from cloud.platform.mqtt_link import MqttLink
from cloud.platform.outbox import Outbox
from cloud.platform.tables import parked
from cloud.platform.unit_of_work import sql_units_of_work
from mqtt import Envelope, IdTagStatus, SessionStarted, SessionStopped, Topics
from tests.integration.cloud.conftest import migrations_of
from tests.integration.cloud.test_session_ingest import NoCache, history_of, publish
from tests.support.events import registered

T0 = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)


def started(transaction_id: int, charger_id: str = "CP1", meter_start_wh: int = 0) -> SessionStarted:
    return SessionStarted(charger_id=charger_id, connector_id=1, transaction_id=transaction_id, id_tag="TAG1",
                          id_tag_status=IdTagStatus.ACCEPTED, meter_start_wh=meter_start_wh, started_at=T0)


def stopped(transaction_id: int, energy_wh: int, charger_id: str = "CP1") -> SessionStopped:
    return SessionStopped(charger_id=charger_id, transaction_id=transaction_id, meter_start_wh=0,
                          meter_stop_wh=energy_wh, energy_wh=energy_wh, stopped_at=T0.replace(hour=19))


async def test_sessions_of_before_store_ids_move_to_the_legacy_store_keeping_their_ids(database_url: str) -> None:
    db = Database(database_url)
    await db.connect()
    try:
        await db.migrate(migrations_of("charging"), "0003")
        async with db.engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO charging_sessions (id, site_id, transaction_id, charger_id, connector_id, id_tag, status,"
                " started_at, meter_start_wh, meter_last_wh, energy_wh, clock_suspect, reconciled, updated_at)"
                " VALUES ('site-a:7', 'site-a', 7, 'CP1', 1, 'TAG1', 'active', :t, 0, 0, 0, false, false, :t)"),
                {"t": T0})
        await db.migrate(migrations_of("charging"))
        service = ChargingService(sql_units_of_work(Outbox(db), SqlChargingRepository), NoCache())  # type: ignore[arg-type]
        await service.on_vehicle_registered(registered("veh-1", "TAG1"))
        record = session_messages(service)
        box = Outbox(db)
        # the old edge (no store id) stops it; a new store's transaction 7 is another session
        for envelope in (Envelope.wrap("site-a", 1, stopped(7, 5_000)),
                         Envelope.wrap("site-a", 1, started(7), store_id="c" * 32),
                         Envelope.wrap("site-a", 2, stopped(7, 900), store_id="c" * 32)):
            async with box.transaction() as tx:
                await record(tx, envelope)
        history = {s["store_id"]: s for s in await history_of(service, "veh-1", limit=10)}
        assert sorted(history) == ["c" * 32, "legacy"]
        assert (history["legacy"]["session_id"], history["legacy"]["energy_wh"]) == ("site-a:7", 5_000)
        assert history["c" * 32]["session_id"].startswith("cs_") and history["c" * 32]["energy_wh"] == 900
    finally:
        await db.close()


@pytest.mark.timeout(60)
async def test_a_message_that_cannot_be_stored_is_parked_at_once_and_other_sites_go_on(
        charging_db: Database, mosquitto: tuple[str, int], topic_root: str) -> None:
    """An old edge's absurd meter value (outside the contract: refused at decoding), and a message inside the
    contract that the database refuses (a charger id longer than its column: PostgreSQL says so, SQLite stores
    it): each costs the other site's session less than a second."""
    box = Outbox(charging_db)
    service = ChargingService(sql_units_of_work(box, SqlChargingRepository), NoCache())  # type: ignore[arg-type]
    await service.on_vehicle_registered(registered("veh-1", "TAG1"))
    link = MqttLink(service="charging", outbox=box, host=mosquitto[0], port=mosquitto[1], topics=Topics(topic_root),
                    categories=["session"], handler=session_messages(service), username="evpark-cloud")
    topics = Topics(topic_root)
    absurd = Envelope.wrap("site-bad", 1, stopped(1, 1)).model_dump(mode="json")
    absurd["body"]["meter_stop_wh"] = absurd["body"]["energy_wh"] = 99999999999999999999
    too_long = Envelope.wrap("site-bad", 2, started(2, charger_id="C" * 300), store_id="d" * 32)
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 10)
        delays = []
        for n, poison in enumerate((json.dumps(absurd).encode(), too_long.to_bytes()), start=1):
            good = [Envelope.wrap("site-good", 2 * n - 1, started(n), store_id="e" * 32),
                    Envelope.wrap("site-good", 2 * n, stopped(n, 1_000 * n), store_id="e" * 32)]
            sent = time.monotonic()
            await publish(mosquitto, topics, [(topics.up("site-bad", "session"), poison),
                                              *[(topics.up("site-good", "session"), e.to_bytes()) for e in good]])
            while len(await history_of(service, "veh-1", limit=10)) < n:
                assert time.monotonic() - sent < 10, "the good site's session never arrived"
                await asyncio.sleep(0.01)
            delays.append(time.monotonic() - sent)
        print(f"other site's session recorded {delays[0]:.3f} s after an absurd value, "
              f"{delays[1]:.3f} s after a message the database refuses ({charging_db.url.get_backend_name()})")
        assert max(delays) < 1.0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    async with charging_db.session() as session:
        errors = (await session.execute(select(parked.c.error, parked.c.attempts))).all()
    assert any("less than or equal" in e for e, _ in errors)  # refused by the contract
    if not charging_db.is_sqlite:  # PostgreSQL refuses the long charger id: parked after one attempt
        assert any("cannot be stored" in e and attempts == 1 for e, attempts in errors), errors
