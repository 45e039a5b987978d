"""Vehicle ownership through the vehicles service's REST API and migration 0003 (SQLite and PostgreSQL).

Each expected answer is written out per caller, not derived from the rules under test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from alembic import command
from alembic.config import Config
from fastapi import FastAPI
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from cloud.contracts.errors import NotFound
from cloud.platform.cache import MemoryCache
from cloud.platform.db import Database
from cloud.platform.events import InProcessBus
from cloud.platform.outbox import Outbox
from cloud.platform.settings import CloudSettings
from cloud.platform.unit_of_work import sql_units_of_work
from cloud.vehicles.app import build_app as build_vehicles
from cloud.vehicles.repository import SqlVehicleRepository
from cloud.vehicles.service import VehicleService
from tests.integration.cloud.conftest import migrations_of
from tests.support.identity import PRINCIPALS, headers, trust_test_tokens
from tests.support.services import free_port

CALLERS = ("anonymous", "driver_a", "driver_b", "operator_1", "operator_2", "technician_1", "admin")

REGISTER = {  # POST /vehicles/register
    "anonymous": 401, "driver_a": 201, "driver_b": 201, "operator_1": 403, "operator_2": 403,
    "technician_1": 403, "admin": 201,
}
READ_DRIVER_A_VEHICLE = {  # GET /vehicles/{id of driver A's vehicle}
    "anonymous": 401, "driver_a": 200, "driver_b": 404, "operator_1": 404, "operator_2": 404,
    "technician_1": 404, "admin": 200,
}
FIND_DRIVER_A_PLATE = {  # GET /vehicles?plate=<driver A's plate>: status, and the vehicles listed
    "anonymous": (401, None), "driver_a": (200, ["A"]), "driver_b": (200, []), "operator_1": (403, None),
    "operator_2": (403, None), "technician_1": (403, None), "admin": (200, ["A"]),
}


def auth(caller: str) -> dict[str, str]:
    return {} if caller == "anonymous" else headers(caller)


@pytest.fixture
async def vehicles(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The vehicles service alone, on its real database; MQTT on a closed port."""
    settings = CloudSettings(database_url=database_url.replace("/service.db", "/{service}.db")
                             if database_url.startswith("sqlite") else database_url + "_{service}",
                             mqtt_port=free_port(), data_dir=tmp_path)
    bus = InProcessBus()
    await bus.start()
    app: FastAPI = build_vehicles(settings, bus=bus, cache=MemoryCache())
    try:
        async with app.router.lifespan_context(app), \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://v") as client:
            trust_test_tokens(app)
            yield client
    finally:
        await bus.close()
        if not database_url.startswith("sqlite"):
            import asyncpg

            connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
            try:
                name = database_url.rsplit("/", 1)[1]
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}_vehicles" WITH (FORCE)')
            finally:
                await connection.close()


def test_every_caller_has_an_expected_answer() -> None:
    assert set(PRINCIPALS) | {"anonymous"} == set(CALLERS)
    for table in (REGISTER, READ_DRIVER_A_VEHICLE, FIND_DRIVER_A_PLATE):
        assert set(table) == set(CALLERS)


async def test_register_by_caller(vehicles: httpx.AsyncClient) -> None:
    for number, caller in enumerate(CALLERS):
        response = await vehicles.post("/vehicles/register", headers=auth(caller),
                                       json={"plate": f"R{number}", "id_tags": [f"TAG-{number}"]})
        assert (caller, response.status_code) == (caller, REGISTER[caller]), response.text
        if response.status_code == 201:
            assert response.json()["owner_id"] == PRINCIPALS[caller].subject
        else:
            assert response.headers["content-type"].startswith("application/problem+json")
    assert (await vehicles.post("/vehicles/register", headers={"Authorization": "Bearer forged"},
                                json={"plate": "X1", "id_tags": ["X"]})).status_code == 401


async def test_read_by_caller_hides_another_drivers_vehicle_as_unknown(vehicles: httpx.AsyncClient) -> None:
    created = await vehicles.post("/vehicles/register", headers=headers("driver_a"),
                                  json={"plate": "A1", "id_tags": ["CARD-A"]})
    vehicle_id = created.json()["vehicle_id"]
    unknown_id = "0" * len(vehicle_id)
    for caller in CALLERS:
        response = await vehicles.get(f"/vehicles/{vehicle_id}", headers=auth(caller))
        assert (caller, response.status_code) == (caller, READ_DRIVER_A_VEHICLE[caller]), response.text
        if response.status_code == 200:
            assert response.json() == created.json()
        if response.status_code == 404:
            unknown = await vehicles.get(f"/vehicles/{unknown_id}", headers=auth(caller))
            assert unknown.status_code == 404
            assert response.headers["content-type"] == unknown.headers["content-type"]
            assert response.text.replace(vehicle_id, unknown_id) == unknown.text, \
                "another's vehicle answers exactly as an unknown one"
            assert "CARD-A" not in response.text and "A1" not in response.text


async def test_find_by_plate_by_caller(vehicles: httpx.AsyncClient) -> None:
    created = await vehicles.post("/vehicles/register", headers=headers("driver_a"),
                                  json={"plate": "A1", "id_tags": ["CARD-A"]})
    ids = {"A": created.json()["vehicle_id"]}
    for caller in CALLERS:
        response = await vehicles.get("/vehicles", params={"plate": "a1"}, headers=auth(caller))
        status, listed = FIND_DRIVER_A_PLATE[caller]
        assert (caller, response.status_code) == (caller, status), response.text
        if listed is not None:
            assert [v["vehicle_id"] for v in response.json()] == [ids[name] for name in listed]


async def test_unowned_vehicles_survive_migration_0003_and_only_an_admin_sees_them(database_url: str) -> None:
    db = Database(database_url.replace("service.db", "vehicles.db"))
    await db.connect()
    try:
        await db.migrate(migrations_of("vehicles"), "0002")
        now = datetime.now(UTC)
        async with db.engine.begin() as conn:
            await conn.execute(text("INSERT INTO vehicles (id, plate, created_at) VALUES ('old-1', 'OLD 1', :t)"),
                               {"t": now})
            await conn.execute(text("INSERT INTO id_tags (id_tag, vehicle_id, status, created_at) "
                                    "VALUES ('CARD-OLD', 'old-1', 'Accepted', :t)"), {"t": now})
        await db.migrate(migrations_of("vehicles"))
        assert "owner_id" in await vehicle_columns(db)

        service = VehicleService(sql_units_of_work(Outbox(db), SqlVehicleRepository))
        view = await service.get(PRINCIPALS["admin"], "old-1")
        assert (view.plate, view.owner_id, [t.id_tag for t in view.id_tags]) == ("OLD 1", None, ["CARD-OLD"])
        assert [v.vehicle_id for v in await service.find_by_plate(PRINCIPALS["admin"], "old 1")] == ["old-1"]
        for driver in ("driver_a", "driver_b"):
            assert await service.find_by_plate(PRINCIPALS[driver], "OLD 1") == []
        for caller in ("driver_a", "operator_1", "technician_1"):
            with pytest.raises(NotFound):
                await service.get(PRINCIPALS[caller], "old-1")

        await downgrade(db, "0002")
        assert "owner_id" not in await vehicle_columns(db)
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM vehicles"))).scalar() == 1, "vehicles survive"
        await db.migrate(migrations_of("vehicles"))
        assert "owner_id" in await vehicle_columns(db)
    finally:
        await db.close()


async def downgrade(db: Database, revision: str) -> None:
    def run(connection: Connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(migrations_of("vehicles")))
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def vehicle_columns(db: Database) -> set[str]:
    def look(connection: Connection) -> set[str]:
        return {c["name"] for c in inspect(connection).get_columns("vehicles")}

    async with db.engine.connect() as conn:
        return await conn.run_sync(look)
