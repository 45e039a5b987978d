"""The power-limit sync loop's rules on a real database (SQLite and PostgreSQL), with a fake MQTT sender."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from cloud.parking.models import Site
from cloud.parking.repository import SqlParkingRepository
from cloud.parking.service import ParkingService
from cloud.platform.cache import MemoryCache
from cloud.platform.db import Database
from cloud.platform.mqtt_link import NotConnected
from cloud.platform.outbox import Outbox
from cloud.platform.unit_of_work import SqlUnitOfWork, sql_units_of_work
from mqtt import Command, Envelope, SiteHello
from tests.integration.cloud.conftest import migrations_of
from tests.support.identity import PRINCIPALS

OPERATOR = PRINCIPALS["operator_1"]
"""An operator of site-1, the site of these tests."""


class Sender:
    def __init__(self) -> None:
        self.sent: list[Command] = []
        self.connected = True

    async def send_command(self, command: Command) -> None:
        if not self.connected:
            raise NotConnected("broker away")
        self.sent.append(command)


@pytest.fixture
async def service(database_url: str) -> AsyncIterator[tuple[ParkingService, Database]]:
    db = Database(database_url)
    await db.connect()
    await db.migrate(migrations_of("parking"))
    parking = ParkingService(sql_units_of_work(Outbox(db), SqlParkingRepository), MemoryCache())
    await hello(parking, db, 1)
    try:
        yield parking, db
    finally:
        await db.close()


async def hello(parking: ParkingService, db: Database, seq: int) -> None:
    async with Outbox(db).transaction() as tx:
        await parking.record_site_message(SqlUnitOfWork(tx, SqlParkingRepository(tx)),
                                          Envelope.wrap("site-1", seq, SiteHello(edge_version="t",
                                                                                 authlist_version=0)))


async def change(db: Database, **values: object) -> None:
    async with Outbox(db).transaction() as tx:
        site = await tx.session.get(Site, "site-1")
        assert site is not None
        for name, value in values.items():
            setattr(site, name, value)


async def test_a_request_nobody_answered_for_a_day_expires_and_is_no_longer_sent(
        service: tuple[ParkingService, Database]) -> None:
    parking, db = service
    sender = Sender()
    await parking.request_power_limit(OPERATOR, "site-1", limit_a=30.0, limit_w=None)
    await change(db, power_requested_at=datetime.now(UTC) - timedelta(hours=24, seconds=1))
    assert await parking.send_due_power_limits(sender) == (0, False)
    assert sender.sent == []
    state = (await parking.power_limit(OPERATOR, "site-1")).model_dump()
    assert state["status"] == "expired"
    assert state["detail"] == ("the site did not answer within 24 h; request the limit again if it is still wanted")
    again = (await parking.request_power_limit(OPERATOR, "site-1", limit_a=30.0, limit_w=None)).model_dump()
    assert again["status"] == "pending", "asking again after expiry is a new request"


async def test_a_command_waits_while_not_connected_and_a_reconnecting_site_gets_a_fresh_one(
        service: tuple[ParkingService, Database]) -> None:
    parking, db = service
    sender = Sender()
    sender.connected = False
    requested = (await parking.request_power_limit(OPERATOR, "site-1", limit_a=30.0, limit_w=None)).model_dump()
    assert await parking.send_due_power_limits(sender) == (0, True)
    assert await parking.send_due_power_limits(sender) == (0, True)
    sender.connected = True
    assert await parking.send_due_power_limits(sender) == (1, False)
    [first] = sender.sent
    assert str(first.id) == requested["command"]["command_id"], "the stored command, not a new one"  # type: ignore[index]
    assert await parking.send_due_power_limits(sender) == (0, False), "not again before it is due"

    await hello(parking, db, 2)  # the site reconnected: what was queued for it may be lost
    assert await parking.send_due_power_limits(sender) == (1, False)
    second = sender.sent[-1]
    assert second.id != first.id and second.body == first.body
    state = (await parking.power_limit(OPERATOR, "site-1")).model_dump()
    assert (state["command"]["command_id"], state["command"]["attempts"]) == (str(second.id), 2)  # type: ignore[index]
