"""Migration 0003 of the parking service on a database that already holds sites (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from cloud.parking.models import Site
from cloud.parking.repository import SqlParkingRepository
from cloud.parking.service import ParkingService
from cloud.platform.cache import MemoryCache
from cloud.platform.db import Database
from cloud.platform.outbox import Outbox
from cloud.platform.unit_of_work import sql_units_of_work
from tests.integration.cloud.conftest import migrations_of
from tests.support.identity import PRINCIPALS

ADMIN = PRINCIPALS["admin"]


async def downgrade(db: Database, revision: str) -> None:
    def run(connection: Connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(migrations_of("parking")))
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def tables_and_bay_columns(db: Database) -> tuple[set[str], set[str]]:
    def look(connection: Connection) -> tuple[set[str], set[str]]:
        inspector = inspect(connection)
        return set(inspector.get_table_names()), {c["name"] for c in inspector.get_columns("bays")}

    async with db.engine.connect() as conn:
        return await conn.run_sync(look)


async def test_existing_sites_get_their_row_and_the_migration_can_be_undone(database_url: str) -> None:
    db = Database(database_url)
    await db.connect()
    try:
        await db.migrate(migrations_of("parking"), "0002")
        now = datetime.now(UTC)
        async with db.engine.begin() as conn:
            for site_id, bay_id in (("old-site", "B1"), ("old-site", "B2")):
                await conn.execute(text("INSERT INTO bays (site_id, bay_id, state, changed_at, updated_at, in_service) "
                                        "VALUES (:s, :b, 'free', :t, :t, :y)"),
                                   {"s": site_id, "b": bay_id, "t": now, "y": True})
            await conn.execute(text("INSERT INTO charger_stations (site_id, charger_id, connectors, in_service, "
                                    "updated_at) VALUES ('chargers-only', 'CP-1', 2, :y, :t)"), {"t": now, "y": True})

        await db.migrate(migrations_of("parking"))
        async with db.session() as session:
            sites = set((await session.execute(text("SELECT site_id FROM parking_sites"))).scalars())
        assert sites == {"old-site", "chargers-only"}
        service = ParkingService(sql_units_of_work(Outbox(db), SqlParkingRepository), MemoryCache())
        view = (await service.site(ADMIN, "old-site")).model_dump()
        assert view["uplink_drops"] == {"total": 0, "last": None}
        assert (view["registered_at"], view["link"]["state"]) == (None, "unknown"), \
            "a site known from its messages is listed, unregistered (0005), and its link not yet heard of"
        assert view["inventory"] == {"received_at": None, "bays": 2, "chargers": 0}
        bays = (await service.bays(ADMIN, "old-site")).model_dump()["bays"]
        assert [(b["bay_id"], b["usage"]) for b in bays] == [("B1", None), ("B2", None)]

        await downgrade(db, "0002")
        tables, columns = await tables_and_bay_columns(db)
        assert Site.__tablename__ not in tables
        assert "usage" not in columns and "in_service" in columns
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM bays"))).scalar() == 2, "bays survive the downgrade"

        await db.migrate(migrations_of("parking"))
        tables, columns = await tables_and_bay_columns(db)
        assert Site.__tablename__ in tables and {"usage", "usage_since", "usage_transaction_id"} <= columns
    finally:
        await db.close()
