"""The charging service's idTag map follows vehicle.registered, vehicle.updated and vehicle.deleted,
both services running as in each mode: embedded (SQLite, one in-process bus) and production
(PostgreSQL, RabbitMQ, each service its own connection)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import text

from cloud.charging.app import build_app as build_charging
from cloud.platform.cache import MemoryCache
from cloud.platform.db import Database
from cloud.platform.events import InProcessBus
from cloud.platform.settings import CloudSettings
from cloud.vehicles.app import build_app as build_vehicles
from tests.support import services
from tests.support.identity import headers, trust_test_tokens
from tests.support.services import free_port
from tests.support.waiting import eventually


@dataclass
class Pair:
    vehicles: httpx.AsyncClient
    charging: httpx.AsyncClient
    charging_db: Database

    async def tags(self) -> dict[str, str]:
        async with self.charging_db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT id_tag, vehicle_id FROM vehicle_id_tags"))).all()
        return {tag: vehicle for tag, vehicle in rows}


@contextlib.asynccontextmanager
async def running_pair(tmp_path: Path, production: bool) -> AsyncIterator[Pair]:
    vhost = await asyncio.to_thread(services.create_rabbitmq_vhost) if production else ""
    name = services.fresh_name("evpark_it_")
    url = (f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}_{{service}}" if production
           else f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db")
    settings = CloudSettings(database_url=url, amqp_url=f"amqp://guest:guest@127.0.0.1:5672/{vhost}" if production
                             else "", mqtt_port=free_port(), data_dir=tmp_path)
    bus = None if production else InProcessBus()
    if bus is not None:
        await bus.start()
    apps = [build(settings, bus=bus, cache=MemoryCache()) for build in (build_vehicles, build_charging)]
    try:
        async with contextlib.AsyncExitStack() as stack:
            clients = []
            for app in apps:
                await stack.enter_async_context(app.router.lifespan_context(app))
                trust_test_tokens(app)
                clients.append(await stack.enter_async_context(
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s", timeout=30)))
            db = Database(url.replace("{service}", "charging"))
            await db.connect()
            stack.push_async_callback(db.close)
            yield Pair(clients[0], clients[1], db)
    finally:
        if bus is not None:
            await bus.close()
        if production:
            await asyncio.to_thread(services.delete_rabbitmq_vhost, vhost)
            connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
            try:
                for service in ("vehicles", "charging"):
                    await connection.execute(f'DROP DATABASE IF EXISTS "{name}_{service}" WITH (FORCE)')
            finally:
                await connection.close()


@pytest.fixture(params=["embedded", "production"])
async def pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Pair]:
    production = request.param == "production"
    if production:
        services.require("PostgreSQL", services.POSTGRES)
        services.require("RabbitMQ", services.RABBITMQ)
    async with running_pair(tmp_path, production) as running:
        yield running


async def test_the_charging_id_tag_map_follows_registration_update_and_deletion(pair: Pair) -> None:
    driver = headers("driver_a")
    made = await pair.vehicles.post("/vehicles/register", headers=driver,
                                    json={"plate": "A1", "id_tags": ["OLD", "KEEP"]})
    assert made.status_code == 201, made.text
    vehicle = made.json()["vehicle_id"]

    async def tags_are(expected: dict[str, str]) -> bool:
        return await pair.tags() == expected

    await eventually(lambda: tags_are({"OLD": vehicle, "KEEP": vehicle}), what="charging learned the idTags")
    history = f"/charging/history/{vehicle}"
    assert (await pair.charging.get(history, headers=driver)).status_code == 200
    changed = await pair.vehicles.put(f"/vehicles/{vehicle}", headers=driver,
                                      json={"plate": "A1", "id_tags": ["KEEP", "NEW"], "version": 1})
    assert changed.status_code == 200, changed.text
    await eventually(lambda: tags_are({"KEEP": vehicle, "NEW": vehicle}), what="charging dropped OLD, learned NEW")
    assert (await pair.vehicles.delete(f"/vehicles/{vehicle}", headers=driver)).status_code == 204
    await eventually(lambda: tags_are({}), what="charging forgot the deleted vehicle's idTags")

    async def unknown() -> bool:
        return (await pair.charging.get(history, headers=driver)).status_code == 404

    await eventually(unknown, what="the deleted vehicle is unknown to charging")
