"""The notification service's migrations create exactly the tables and columns its models use, on SQLite
and PostgreSQL, and bring a database of the first revision forward keeping what it holds."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect, select

from cloud.notifications.models import metadata, notification_queue, notification_recipients
from cloud.platform.db import Database
from tests.integration.cloud.conftest import migrations_of


async def test_the_migration_creates_exactly_the_models_tables(database_url: str) -> None:
    db = Database(database_url)
    await db.connect()
    try:
        await db.migrate(migrations_of("notifications"))

        def columns(connection: object) -> dict[str, set[str]]:
            found = inspect(connection)
            return {t: {c["name"] for c in found.get_columns(t)} for t in metadata.tables}  # type: ignore[union-attr]

        async with db.engine.connect() as conn:
            have = await conn.run_sync(columns)
        assert have == {name: {c.name for c in table.columns} for name, table in metadata.tables.items()}
    finally:
        await db.close()


async def test_a_message_queued_before_0002_keeps_its_time_and_a_recipient_has_no_bounce(database_url: str) -> None:
    db = Database(database_url)
    await db.connect()
    try:
        await db.migrate(migrations_of("notifications"), "0001")
        held = datetime(2026, 3, 11, 6, 0, tzinfo=UTC)
        async with db.engine.begin() as conn:  # the columns 0001 has
            await conn.execute(notification_queue.insert().values(notification_id="n-1", due_at=held))
            await conn.execute(notification_recipients.insert().values(
                account_id="a", email="a@example.org", name="A", language="en", time_zone="UTC", roles="driver",
                sites="", disabled=False))
        await db.migrate(migrations_of("notifications"))
        async with db.engine.connect() as conn:
            queued = (await conn.execute(select(notification_queue))).one()
            recipient = (await conn.execute(select(notification_recipients))).one()
        assert (queued.due_at, queued.not_before) == (held, held), "held until 07:00 Berlin: not released earlier"
        assert (recipient.bounced_email, recipient.bounced_at) == (None, None)
    finally:
        await db.close()
