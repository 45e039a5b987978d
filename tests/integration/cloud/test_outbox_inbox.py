"""Outbox and inbox on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from cloud.contracts import UnknownEvent
from cloud.contracts.parking import BayChanged, InventoryChanged
from cloud.platform.db import Database
from cloud.platform.outbox import Outbox, OutboxRelay
from cloud.platform.parked import ParkedMessages
from cloud.platform.ports import Event, ParkedMessage
from cloud.platform.tables import outbox, parked
from tests.integration.cloud.conftest import migrations_of


class RecordingBus:
    """Stands in for the bus to watch what the relay hands it; fails on demand."""

    def __init__(self) -> None:
        self.published: list[Event] = []
        self.fail = False

    async def publish(self, event: Event) -> None:
        if self.fail:
            raise ConnectionError("broker away")
        self.published.append(event)


async def backlog(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(outbox)) or 0)


async def test_events_leave_only_with_a_committed_transaction(charging_db: Database) -> None:
    box = Outbox(charging_db)
    async with box.transaction() as tx:
        tx.emit(InventoryChanged(site_id="s1", bays=1, chargers=0))
    with pytest.raises(RuntimeError):
        async with box.transaction() as tx:
            tx.emit(InventoryChanged(site_id="s1", bays=2, chargers=0))
            raise RuntimeError("use case failed after recording its event")
    assert await backlog(charging_db) == 1


async def test_the_relay_deletes_an_event_only_after_the_bus_took_it(charging_db: Database) -> None:
    box = Outbox(charging_db)
    bus = RecordingBus()
    relay = OutboxRelay(box, bus, service="test")  # type: ignore[arg-type]
    async with box.transaction() as tx:
        for n in range(3):
            tx.emit(InventoryChanged(site_id="s1", bays=n, chargers=0))
    bus.fail = True
    with pytest.raises(ConnectionError):
        await relay.relay_once()
    assert await backlog(charging_db) == 3
    bus.fail = False
    assert await relay.relay_once() == 3
    assert [e.payload["bays"] for e in bus.published] == [0, 1, 2]
    assert {(e.name, e.version) for e in bus.published} == {("parking.inventory_changed", InventoryChanged.VERSION)}
    assert await backlog(charging_db) == 0


async def test_a_message_is_claimed_once_per_consumer(charging_db: Database) -> None:
    box = Outbox(charging_db)
    async with box.transaction() as tx:
        assert await tx.claim("msg-1", "consumer-a")
    async with box.transaction() as tx:
        assert not await tx.claim("msg-1", "consumer-a")
        assert await tx.claim("msg-1", "consumer-b")


async def test_a_claim_rolled_back_with_its_failed_handler_can_be_retried(charging_db: Database) -> None:
    box = Outbox(charging_db)
    with pytest.raises(RuntimeError):
        async with box.transaction() as tx:
            assert await tx.claim("msg-2", "consumer")
            raise RuntimeError("handler failed")
    async with box.transaction() as tx:
        assert await tx.claim("msg-2", "consumer")


async def test_a_service_refuses_to_emit_an_event_its_spec_does_not_declare(charging_db: Database) -> None:
    box = Outbox(charging_db, source="parking", publishes=(InventoryChanged,))
    with pytest.raises(UnknownEvent, match=r"parking\.bay_changed"):
        async with box.transaction() as tx:
            tx.emit(BayChanged(site_id="s1", bay_id="B1", state="free", changed_at=datetime.now(UTC)))
    assert await backlog(charging_db) == 0


async def test_parked_messages_are_kept_for_an_operator(charging_db: Database) -> None:
    store = ParkedMessages(charging_db, service="charging")
    await store.park(ParkedMessage(source="evpark/sites/x/up/session", payload="\ufffd not json", error="not JSON",
                                   attempts=1), consumer="mqtt:charging")
    async with charging_db.session() as session:
        rows = (await session.execute(select(parked.c.source, parked.c.error, parked.c.consumer))).all()
    assert rows == [("evpark/sites/x/up/session", "not JSON", "mqtt:charging")]


async def test_migrations_are_repeatable(database_url: str) -> None:
    db = Database(database_url)
    await db.connect()
    try:
        await db.migrate(migrations_of('vehicles'))
        await db.migrate(migrations_of('vehicles'))
        assert await db.ping()
    finally:
        await db.close()



@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite: one snapshot per transaction
async def test_a_read_in_one_snapshot_sees_no_commit_made_between_its_queries(charging_db: Database) -> None:
    """A read made of two queries (a bay, then its stay) must not show the second query's rows newer than
    the first's: under READ COMMITTED a writer that commits between them is half seen."""
    box = Outbox(charging_db)

    async def commit_one() -> None:
        async with box.transaction() as tx:
            tx.emit(InventoryChanged(site_id="s1", bays=1, chargers=0))

    async def twice(snapshot: bool) -> tuple[int, int]:
        async with box.transaction() as tx:
            if snapshot:
                await tx.one_snapshot()
            first = int(await tx.session.scalar(select(func.count()).select_from(outbox)) or 0)
            await commit_one()
            return first, int(await tx.session.scalar(select(func.count()).select_from(outbox)) or 0)

    assert await twice(snapshot=True) == (0, 0)
    assert await backlog(charging_db) == 1, "the writer's commit is there for the next transaction"
    assert await twice(snapshot=False) == (1, 2), "without the snapshot, the second query sees it"
