"""Migrations of analytics on SQLite and PostgreSQL: 0002, the vehicles it knew keep their type with make
and battery not known (no earlier event carried them); 0004, the visitors are filled from the arrivals
logged before it. Each downgrades without losing what was there before it."""

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


async def test_migration_0004_fills_the_visitors_from_the_logged_arrivals_and_downgrades(database_url: str) -> None:
    db = Database(database_url.replace("service.db", "analytics.db"))
    await db.connect()
    try:
        await db.migrate(migrations_of("analytics"), "0003")
        async with db.engine.begin() as conn:
            for n, (site, vehicle, day) in enumerate((("site-1", "v-1", 3), ("site-1", "v-1", 1), ("site-2", "v-1", 2),
                                                      ("site-1", None, 2))):
                await conn.execute(text(
                    "INSERT INTO event_logs (event_id, name, version, occurred_at, site_id, subject, related, "
                    "payload, logged_at) VALUES (:id, 'parking.arrived', '1.0', :at, :site, :stay, :vehicle, '{}', "
                    ":at)"), {"id": f"e-{n}", "at": datetime(2026, 3, day, 8, tzinfo=UTC), "site": site,
                              "stay": f"st-{n}", "vehicle": vehicle})
        await db.migrate(migrations_of("analytics"))
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT site_id, vehicle_id, first_at, last_at FROM analytics_visitors "
                                            "ORDER BY site_id"))).all()
        assert [(r[0], r[1], _day(r[2]), _day(r[3])) for r in rows] == [("site-1", "v-1", 1, 3),
                                                                          ("site-2", "v-1", 2, 2)]

        await downgrade(db, "0003")
        assert "analytics_visitors" not in await tables(db)
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM event_logs"))).scalar() == 4
        await db.migrate(migrations_of("analytics"))
        assert "analytics_visitors" in await tables(db)
    finally:
        await db.close()


def _day(value: datetime | str) -> int:
    """The day of the month of a timestamp as read back by plain SQL (SQLite: its text)."""
    return value.day if isinstance(value, datetime) else int(value[8:10])


async def tables(db: Database) -> set[str]:
    def look(connection: Connection) -> set[str]:
        return set(inspect(connection).get_table_names())

    async with db.engine.connect() as conn:
        return await conn.run_sync(look)


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
