"""The services' REST APIs, with their real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from cloud.charging.app import build_app as build_charging
from cloud.platform.cache import MemoryCache
from cloud.platform.events import InProcessBus
from cloud.platform.settings import CloudSettings
from cloud.vehicles.app import build_app as build_vehicles
from tests.support.identity import headers, trust_test_tokens
from tests.support.services import free_port
from tests.support.waiting import poll_until


@pytest.fixture
async def apps(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Vehicles and charging sharing an in-process bus, as under `evpark up`; MQTT on a closed port."""
    settings = CloudSettings(database_url=database_url.replace("/service.db", "/{service}.db")
                             if database_url.startswith("sqlite") else database_url + "_{service}",
                             mqtt_port=free_port(), data_dir=tmp_path)
    bus = InProcessBus()
    await bus.start()
    cache = MemoryCache()
    vehicles: FastAPI = build_vehicles(settings, bus=bus, cache=cache)
    charging: FastAPI = build_charging(settings, bus=bus, cache=cache)
    try:
        async with vehicles.router.lifespan_context(vehicles), charging.router.lifespan_context(charging), \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=vehicles), base_url="http://v") as v, \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=charging), base_url="http://c") as c:
            trust_test_tokens(vehicles)
            trust_test_tokens(charging)
            yield v, c
    finally:
        await bus.close()
        if not database_url.startswith("sqlite"):
            import asyncpg

            connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
            try:
                name = database_url.rsplit("/", 1)[1]
                for service in ("vehicles", "charging"):
                    await connection.execute(f'DROP DATABASE IF EXISTS "{name}_{service}" WITH (FORCE)')
            finally:
                await connection.close()


async def test_register_then_read_a_vehicle(apps: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    vehicles, charging = apps
    created = await vehicles.post("/vehicles/register", json={"plate": "ev 123", "id_tags": ["04A2B3C4"],
                                                              "make": "Renault"}, headers=headers("driver_a"))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["plate"] == "EV 123"
    assert body["id_tags"] == [{"id_tag": "04A2B3C4", "status": "Accepted", "blocked_reason": None}]
    assert body["created_at"].endswith(("Z", "+00:00")), "times are UTC with their offset"
    assert body["owner_id"] == "acc-driver-a"
    fetched = await vehicles.get(f"/vehicles/{body['vehicle_id']}", headers=headers("driver_a"))
    assert fetched.json()["vehicle_id"] == body["vehicle_id"]
    found = await vehicles.get("/vehicles", params={"plate": "EV 124"}, headers=headers("driver_a"))
    assert found.json() == []
    for written in ("Ev 123", "EV-123", "ev123"):  # case, spaces and dashes do not tell plates apart
        found = await vehicles.get("/vehicles", params={"plate": written}, headers=headers("driver_a"))
        assert [v["vehicle_id"] for v in found.json()] == [body["vehicle_id"]], written
    # The charging service learns the vehicle from the event, which the vehicle service's outbox
    # relay publishes in the background after the commit: wait for it. Empty history, not 404.
    # The event names driver A as the owner: their vehicle, another driver's 404.
    owner = headers("driver_a")

    async def learned() -> bool:
        return (await charging.get(f"/charging/history/{body['vehicle_id']}", headers=owner)).status_code == 200

    await poll_until(learned, within=20)
    history = await charging.get(f"/charging/history/{body['vehicle_id']}", headers=owner)
    assert history.status_code == 200
    assert history.json()["sessions"] == []
    status = await charging.get(f"/charging/status/{body['vehicle_id']}", headers=owner)
    assert status.json()["charging"] is False
    for route in ("history", "status"):
        theirs = await charging.get(f"/charging/{route}/{body['vehicle_id']}", headers=headers("driver_b"))
        assert theirs.status_code == 404
        assert theirs.json()["code"] == "unknown_vehicle"
        assert (await charging.get(f"/charging/{route}/{body['vehicle_id']}")).status_code == 401


async def test_taken_plates_and_id_tags_are_conflicts(apps: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    vehicles, _ = apps
    driver = headers("driver_a")
    assert (await vehicles.post("/vehicles/register", json={"plate": "A1", "id_tags": ["T1"]},
                                headers=driver)).status_code == 201
    plate = await vehicles.post("/vehicles/register", json={"plate": "a1", "id_tags": ["T2"]}, headers=driver)
    assert plate.status_code == 409
    assert plate.json()["code"] == "plate_taken"
    tag = await vehicles.post("/vehicles/register", json={"plate": "B2", "id_tags": ["T1"]}, headers=driver)
    assert tag.status_code == 409
    assert "T1" in tag.json()["detail"]


@pytest.mark.parametrize("body, field", [
    ({"plate": "A1", "type": "combustion", "id_tags": ["T"]}, "id_tags"),  # a car that cannot charge
    ({"plate": "A1", "battery_kwh": -5}, "battery_kwh"),
    ({"plate": "A1", "id_tags": ["way-too-long-for-ocpp-20"]}, None),
    ({"plate": "A1", "id_tags": ["T"], "colour": "red"}, "colour"),
])
async def test_bad_bodies_get_422_problem_details(apps: tuple[httpx.AsyncClient, httpx.AsyncClient],
                                                 body: dict[str, object], field: str | None) -> None:
    vehicles, _ = apps
    response = await vehicles.post("/vehicles/register", json=body, headers=headers("driver_a"))
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    if field is not None:
        assert field in {error["field"] for error in problem["errors"]}
    else:
        assert "idTag" in problem["detail"]


async def test_an_unknown_vehicle_is_a_404_problem(apps: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    vehicles, charging = apps
    assert (await vehicles.get("/vehicles/nope", headers=headers("driver_a"))).json()["status"] == 404
    assert (await charging.get("/charging/history/nope", headers=headers("driver_a"))).status_code == 404
