"""Migration 0004 of the vehicle registry on SQLite and PostgreSQL: existing vehicles get their kind,
plate key and registration history; case-duplicate idTags keep the first registered and block the
others with a reason their owner sees (and every site learns it); the catalogue is loaded; it
downgrades without losing a vehicle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from cloud.platform.db import Database
from cloud.platform.outbox import Outbox
from cloud.platform.unit_of_work import sql_units_of_work
from cloud.vehicles.domain import DUPLICATE_REASON, RegisterVehicle
from cloud.vehicles.repository import SqlVehicleRepository
from cloud.vehicles.service import VehicleService
from tests.integration.cloud.conftest import migrations_of
from tests.integration.cloud.test_vehicles_ownership import downgrade
from tests.support.identity import PRINCIPALS

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


async def test_migration_0004_blocks_case_duplicates_and_keeps_every_vehicle(database_url: str) -> None:
    db = Database(database_url.replace("service.db", "vehicles.db"))
    await db.connect()
    try:
        await db.migrate(migrations_of("vehicles"), "0003")
        async with db.engine.begin() as conn:
            for vehicle_id, plate, owner, minutes in (("v-first", "AB-1", "acc-driver-a", 0),
                                                      ("v-second", "AB 1", "acc-driver-b", 5)):
                await conn.execute(text("INSERT INTO vehicles (id, plate, owner_id, created_at) "
                                        "VALUES (:i, :p, :o, :t)"),
                                   {"i": vehicle_id, "p": plate, "o": owner, "t": T0 + timedelta(minutes=minutes)})
            for tag, vehicle_id, minutes in (("card-x", "v-first", 0), ("CARD-X", "v-second", 5),
                                             ("OTHER", "v-second", 5)):
                await conn.execute(text("INSERT INTO id_tags (id_tag, vehicle_id, status, created_at) "
                                        "VALUES (:g, :v, 'Accepted', :t)"),
                                   {"g": tag, "v": vehicle_id, "t": T0 + timedelta(minutes=minutes)})
        await db.migrate(migrations_of("vehicles"), "0004")

        service = VehicleService(sql_units_of_work(Outbox(db), SqlVehicleRepository))
        first = await service.get(PRINCIPALS["driver_a"], "v-first")
        second = await service.get(PRINCIPALS["driver_b"], "v-second")
        assert [(t.id_tag, t.status, t.blocked_reason) for t in first.id_tags] == [("card-x", "Accepted", None)]
        assert [(t.id_tag, t.status, t.blocked_reason) for t in second.id_tags] == [
            ("CARD-X", "Blocked", DUPLICATE_REASON), ("OTHER", "Accepted", None)], "its owner sees why"
        assert (first.type, first.version, second.plate) == ("electric", 1, "AB 1")
        assert [(r.plate, r.owner_id, r.ended_at) for r in second.registrations] == [("AB 1", "acc-driver-b", None)]
        async with db.engine.connect() as conn:
            blocked = (await conn.execute(text("SELECT id_tag, status FROM authlist_changes "
                                               "ORDER BY version DESC"))).first()
            assert tuple(blocked) == ("CARD-X", "Blocked"), "every site's list learns the block"  # type: ignore[arg-type]
            assert (await conn.execute(text("SELECT count(*) FROM vehicle_types"))).scalar() == 7

        # From now on, an idTag of another case and a plate of other spaces and dashes are taken.
        async with Outbox(db).transaction() as tx:
            repo = SqlVehicleRepository(tx)
            assert await repo.taken_id_tags(["CARD-x"]) == ["CARD-X", "card-x"]
            assert (await repo.find_by_plate("ab1")) is not None
        fresh = await service.register(PRINCIPALS["driver_a"], RegisterVehicle(plate="NEW 1", id_tags=("NEW",)))
        assert fresh.version == 1

        await downgrade(db, "0003")
        assert "plate_key" not in await columns(db, "vehicles")
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM vehicles"))).scalar() == 3, "vehicles survive"
        await db.migrate(migrations_of("vehicles"))
        assert {"plate_key", "kind", "version"} <= await columns(db, "vehicles")
    finally:
        await db.close()


async def columns(db: Database, table: str) -> set[str]:
    def look(connection: Connection) -> set[str]:
        return {c["name"] for c in inspect(connection).get_columns(table)}

    async with db.engine.connect() as conn:
        return await conn.run_sync(look)
