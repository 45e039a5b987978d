"""Migration 0002 of analytics on SQLite and PostgreSQL: the vehicles it knew keep their type with make
and battery not known (no earlier event carried them); it downgrades without losing a vehicle."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from cloud.platform.db import Database
from tests.integration.cloud.conftest import migrations_of


async def test_migration_0002_adds_make_and_battery_as_not_known_and_downgrades(database_url: str) -> None:
    db = Database(database_url.replace("service.db", "analytics.db"))
    await db.connect()
    try:
        await db.migrate(migrations_of("analytics"), "0001")
        async with db.engine.begin() as conn:
            await conn.execute(text("INSERT INTO analytics_vehicles (vehicle_id, type, registered, version_at) "
                                    "VALUES ('v-1', 'electric', :yes, :at)"),
                               {"yes": True, "at": datetime(2026, 3, 1, tzinfo=UTC)})
        await db.migrate(migrations_of("analytics"))
        async with db.engine.connect() as conn:
            row = (await conn.execute(text("SELECT type, make, battery_wh FROM analytics_vehicles"))).one()
        assert tuple(row) == ("electric", None, None)

        await downgrade(db, "0001")
        assert {"make", "battery_wh"}.isdisjoint(await vehicle_columns(db))
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM analytics_vehicles"))).scalar() == 1
        await db.migrate(migrations_of("analytics"))
        assert {"make", "battery_wh"} <= await vehicle_columns(db)
    finally:
        await db.close()


async def downgrade(db: Database, revision: str) -> None:
    def run(connection: Connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(migrations_of("analytics")))
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def vehicle_columns(db: Database) -> set[str]:
    def look(connection: Connection) -> set[str]:
        return {c["name"] for c in inspect(connection).get_columns("analytics_vehicles")}

    async with db.engine.connect() as conn:
        return await conn.run_sync(look)
