"""The inbox retention job on SQLite and PostgreSQL: old claims go in chunks, recent ones stay and still
recognise a redelivered message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, inspect, select, text

from cloud.platform.db import Database
from cloud.platform.outbox import Outbox
from cloud.platform.retention import InboxRetention
from cloud.platform.tables import inbox
from tests.integration.cloud.conftest import migrations_of

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def claims(db: Database) -> list[str]:
    async with db.session() as session:
        return sorted((await session.execute(select(inbox.c.message_id))).scalars())


async def test_pruning_deletes_claims_past_the_window_and_keeps_the_recent_ones(charging_db: Database) -> None:
    ages = {"old-1": 30, "old-2": 20, "old-3": 15, "old-4": 14.01, "old-5": 40, "kept-1": 13.9, "kept-2": 1,
            "kept-3": 0}
    async with charging_db.session() as session, session.begin():
        await session.execute(insert(inbox), [
            {"message_id": name, "consumer": consumer, "processed_at": NOW - timedelta(days=days)}
            for name, days in ages.items() for consumer in ("mqtt:charging", "charging.vehicle-events")])
    retention = InboxRetention(charging_db, service="charging", days=14, chunk=3, clock=lambda: NOW)

    assert await retention.prune_once() == 10  # five old claims of two consumers, three per transaction
    assert await claims(charging_db) == sorted(["kept-1", "kept-2", "kept-3"] * 2)
    assert await retention.prune_once() == 0

    async with Outbox(charging_db).transaction() as tx:  # a recent message redelivered is still known
        assert await tx.claim_many(["kept-1", "old-1"], "mqtt:charging") == {"old-1"}


async def test_the_claim_time_is_indexed(charging_db: Database) -> None:
    async with charging_db.engine.connect() as connection:
        indexes = await connection.run_sync(lambda sync: inspect(sync).get_indexes("inbox"))
    assert [(i["name"], i["column_names"]) for i in indexes] == [("ix_inbox_processed_at", ["processed_at"])]


async def test_a_database_of_before_the_index_gets_it_when_migrated(database_url: str) -> None:
    db = Database(database_url)
    await db.connect()
    try:
        await db.migrate(migrations_of("charging"), "0007")
        async with db.engine.begin() as connection:  # as a database created before the index existed
            await connection.execute(text("DROP INDEX ix_inbox_processed_at"))
        await db.migrate(migrations_of("charging"))
        async with db.engine.connect() as connection:
            indexes = await connection.run_sync(lambda sync: inspect(sync).get_indexes("inbox"))
        assert [i["name"] for i in indexes] == ["ix_inbox_processed_at"]
    finally:
        await db.close()
