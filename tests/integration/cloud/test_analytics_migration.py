"""Migrations of analytics on SQLite and PostgreSQL: 0002, the vehicles it knew keep their type with make
and battery not known (no earlier event carried them); 0004, the visitors are filled from the arrivals
logged before it; 0005, the local day and peak rollups are filled from the hourly rows in each site's
time zone; 0006, the registered vehicles are counted per group; 0008, every site's hours summed; 0009, each
visitor once with its vehicle. Each downgrades without losing what was there before it."""

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


async def test_migration_0005_fills_the_local_day_and_peak_rollups_from_the_hourly_rows_and_downgrades(
        database_url: str) -> None:
    db = Database(database_url.replace("service.db", "analytics.db"))
    await db.connect()
    try:
        await db.migrate(migrations_of("analytics"), "0004")
        async with db.engine.begin() as conn:
            await conn.execute(text("INSERT INTO analytics_sites (site_id, time_zone) VALUES ('site-1', 'Asia/Tokyo')"))
            for site, hour, stays, wh in (("site-1", 14, 1, 100), ("site-1", 15, 2, 200), ("site-1", 16, 0, 50),
                                          ("site-2", 23, 4, 0)):  # site-2: no site row, UTC
                await conn.execute(text("INSERT INTO usage_metrics (site_id, bay_type, hour, stays, energy_wh) "
                                        "VALUES (:site, 'ev', :hour, :stays, :wh)"),
                                   {"site": site, "hour": datetime(2026, 3, 10, hour, tzinfo=UTC), "stays": stays,
                                    "wh": wh})
        await db.migrate(migrations_of("analytics"))
        async with db.engine.connect() as conn:
            daily = (await conn.execute(text("SELECT site_id, day, stays, energy_wh FROM usage_daily "
                                             "ORDER BY site_id, day"))).all()
            peak = (await conn.execute(text("SELECT site_id, month, weekday, local_hour, energy_wh FROM usage_peak "
                                            "ORDER BY site_id, weekday, local_hour"))).all()
        # 14:00 UTC is 23:00 on Tuesday the 10th in Tokyo; 15:00 and 16:00 are Wednesday the 11th
        assert [(r[0], str(r[1])[:10], r[2], r[3]) for r in daily] == [
            ("site-1", "2026-03-10", 1, 100), ("site-1", "2026-03-11", 2, 250), ("site-2", "2026-03-10", 4, 0)]
        assert [(r[0], str(r[1])[:10], r[2], r[3], r[4]) for r in peak] == [
            ("site-1", "2026-03-01", 2, 23, 100), ("site-1", "2026-03-01", 3, 0, 200),
            ("site-1", "2026-03-01", 3, 1, 50), ("site-2", "2026-03-01", 2, 23, 0)]

        await downgrade(db, "0004")
        assert {"usage_daily", "usage_peak"}.isdisjoint(await tables(db))
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM usage_metrics"))).scalar() == 4
        await db.migrate(migrations_of("analytics"))
        assert {"usage_daily", "usage_peak"} <= await tables(db)
    finally:
        await db.close()


async def test_migration_0006_counts_the_registered_vehicles_known_before_it_and_downgrades(
        database_url: str) -> None:
    db = Database(database_url.replace("service.db", "analytics.db"))
    await db.connect()
    try:
        await db.migrate(migrations_of("analytics"), "0005")
        async with db.engine.begin() as conn:
            for n, (kind, make, battery, registered) in enumerate((("electric", "Kia", 64_000, True),
                                                                   ("electric", "Kia", 64_000, True),
                                                                   ("electric", None, None, True),
                                                                   ("hybrid", "Kia", None, False))):
                await conn.execute(text("INSERT INTO analytics_vehicles (vehicle_id, type, make, battery_wh, "
                                        "registered, version_at) VALUES (:id, :kind, :make, :battery, :registered, "
                                        ":at)"), {"id": f"v-{n}", "kind": kind, "make": make, "battery": battery,
                                                  "registered": registered, "at": datetime(2026, 3, 1, tzinfo=UTC)})
        await db.migrate(migrations_of("analytics"))
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT type, make, battery_wh, vehicles FROM analytics_vehicle_counts "
                                            "ORDER BY make"))).all()
        assert [tuple(r) for r in rows] == [("electric", "", -1, 1), ("electric", "Kia", 64_000, 2)]

        await downgrade(db, "0005")
        assert "analytics_vehicle_counts" not in await tables(db)
        await db.migrate(migrations_of("analytics"))
        assert "analytics_vehicle_counts" in await tables(db)
    finally:
        await db.close()



async def test_migration_0008_sums_every_known_site_by_hour_and_downgrades(database_url: str) -> None:
    db = Database(database_url.replace("service.db", "analytics.db"))
    await db.connect()
    try:
        await db.migrate(migrations_of("analytics"), "0007")
        async with db.engine.begin() as conn:
            for site in ("site-1", "site-2"):
                await conn.execute(text("INSERT INTO analytics_sites (site_id) VALUES (:site)"), {"site": site})
            for site, hour, bay_type, stays, wh in (("site-1", 14, "ev", 1, 100), ("site-2", 14, "ev", 2, 200),
                                                    ("site-2", 14, "regular", 5, 0), ("site-1", 15, "ev", 0, 50),
                                                    ("site-3", 14, "ev", 9, 900)):  # site-3: not known
                await conn.execute(text("INSERT INTO usage_metrics (site_id, bay_type, hour, stays, energy_wh) "
                                        "VALUES (:site, :bay_type, :hour, :stays, :wh)"),
                                   {"site": site, "bay_type": bay_type, "stays": stays, "wh": wh,
                                    "hour": datetime(2026, 3, 10, hour, tzinfo=UTC)})
        await db.migrate(migrations_of("analytics"))
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT hour, bay_type, stays, energy_wh FROM usage_network "
                                            "ORDER BY hour, bay_type"))).all()
        assert [(_hour(r[0]), r[1], r[2], r[3]) for r in rows] == [(14, "ev", 3, 300), (14, "regular", 5, 0),
                                                                   (15, "ev", 0, 50)]

        await downgrade(db, "0007")
        assert "usage_network" not in await tables(db)
        await db.migrate(migrations_of("analytics"))
        assert "usage_network" in await tables(db)
    finally:
        await db.close()


async def test_migration_0009_keeps_each_visitor_once_with_its_vehicle_and_downgrades(database_url: str) -> None:
    db = Database(database_url.replace("service.db", "analytics.db"))
    await db.connect()
    try:
        await db.migrate(migrations_of("analytics"), "0008")
        async with db.engine.begin() as conn:
            for site, vehicle, first, last in (("site-1", "v-1", 8, 12), ("site-2", "v-1", 6, 10),
                                               ("site-1", "v-2", 9, 9)):  # v-2: a vehicle never registered
                await conn.execute(text("INSERT INTO analytics_visitors (site_id, vehicle_id, first_at, last_at) "
                                        "VALUES (:site, :vehicle, :first, :last)"),
                                   {"site": site, "vehicle": vehicle, "first": datetime(2026, 3, first, tzinfo=UTC),
                                    "last": datetime(2026, 3, last, tzinfo=UTC)})
            await conn.execute(text("INSERT INTO analytics_vehicles (vehicle_id, type, make, battery_wh, registered, "
                                    "version_at) VALUES ('v-1', 'electric', 'Kia', 64000, true, :at)"),
                               {"at": datetime(2026, 3, 1, tzinfo=UTC)})
        await db.migrate(migrations_of("analytics"))
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT vehicle_id, first_at, last_at, type, make, battery_wh "
                                            "FROM analytics_network_visitors ORDER BY vehicle_id"))).all()
        assert [(r[0], _day(r[1]), _day(r[2]), *r[3:]) for r in rows] == [("v-1", 6, 12, "electric", "Kia", 64000),
                                                                          ("v-2", 9, 9, None, None, None)]

        await downgrade(db, "0008")
        assert "analytics_network_visitors" not in await tables(db)
        await db.migrate(migrations_of("analytics"))
        assert "analytics_network_visitors" in await tables(db)
    finally:
        await db.close()


def _hour(value: datetime | str) -> int:
    """The hour of a timestamp as read back by plain SQL (SQLite: its text)."""
    return value.hour if isinstance(value, datetime) else int(value[11:13])

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
