"""The notification service's migration creates exactly the tables and columns its models use, on SQLite
and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import inspect

from cloud.notifications.models import metadata
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
