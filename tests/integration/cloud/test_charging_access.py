"""Who reads a vehicle's charging sessions, over HTTP, on the real databases (SQLite and PostgreSQL).

The charging app alone: ``vehicle.registered`` 1.1 arrives on its in-process bus, session messages
are recorded as its MQTT link records them. Vehicle ``veh-a`` of driver A (TAG-A1, TAG-A2): running
``site-1:1`` and ``site-2:3``, completed ``site-1:2`` and ``site-2:4``; ``veh-b`` of driver B
(TAG-B): completed ``site-2:5`` only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from cloud.charging.app import build_app
from cloud.charging.repository import SqlChargingRepository
from cloud.charging.service import ChargingService
from cloud.contracts.vehicles import VehicleRegistered
from cloud.platform.cache import MemoryCache
from cloud.platform.events import InProcessBus
from cloud.platform.ports import Event
from cloud.platform.runtime import Platform
from cloud.platform.settings import CloudSettings
from cloud.platform.unit_of_work import sql_units_of_work
from mqtt import Envelope, IdTagStatus, SessionStarted, SessionStopped
from tests.support.identity import PRINCIPALS, headers, trust_test_tokens
from tests.support.services import free_port

T0 = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)

# route → caller → (status code, [(session id, id_tag shown)] or the problem's code), written out.
EXPECTED: dict[str, dict[str, tuple[int, object]]] = {
    "/charging/status/veh-a": {
        "anonymous": (401, None),
        "driver_a": (200, [("site-2:3", "TAG-A2"), ("site-1:1", "TAG-A1")]),
        "driver_b": (404, "unknown_vehicle"),
        "operator_1": (200, [("site-1:1", None)]),
        "operator_2": (200, [("site-2:3", None)]),
        "technician_1": (200, [("site-1:1", None)]),
        "admin": (200, [("site-2:3", "TAG-A2"), ("site-1:1", "TAG-A1")]),
    },
    "/charging/history/veh-a": {
        "anonymous": (401, None),
        "driver_a": (200, [("site-2:4", "TAG-A2"), ("site-1:2", "TAG-A1")]),
        "driver_b": (404, "unknown_vehicle"),
        "operator_1": (200, [("site-1:2", None)]),
        "operator_2": (200, [("site-2:4", None)]),
        "technician_1": (200, [("site-1:2", None)]),
        "admin": (200, [("site-2:4", "TAG-A2"), ("site-1:2", "TAG-A1")]),
    },
    "/charging/status/veh-b": {
        "anonymous": (401, None),
        "driver_a": (404, "unknown_vehicle"),
        "driver_b": (200, []),
        "operator_1": (404, "unknown_vehicle"),
        "operator_2": (200, []),
        "technician_1": (404, "unknown_vehicle"),
        "admin": (200, []),
    },
    "/charging/history/veh-b": {
        "anonymous": (401, None),
        "driver_a": (404, "unknown_vehicle"),
        "driver_b": (200, [("site-2:5", "TAG-B")]),
        "operator_1": (404, "unknown_vehicle"),
        "operator_2": (200, [("site-2:5", None)]),
        "technician_1": (404, "unknown_vehicle"),
        "admin": (200, [("site-2:5", "TAG-B")]),
    },
}


def registered(vehicle_id: str, owner: str, *id_tags: str) -> Event:
    return Event.of(VehicleRegistered(vehicle_id=vehicle_id, plate=vehicle_id.upper(), id_tags=list(id_tags),
                                      owner_id=owner), source="vehicles")


async def record(app: FastAPI, site: str, seq: int, body: SessionStarted | SessionStopped) -> None:
    """One session message, recorded in its own transaction as the MQTT link does."""
    platform: Platform = app.state.platform
    service: ChargingService = app.state.charging
    async with sql_units_of_work(platform.outbox, SqlChargingRepository)() as uow:
        await service.record_session_message(uow, Envelope.wrap(site, seq, body))


@pytest.fixture
async def charging(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = CloudSettings(database_url=database_url, mqtt_port=free_port(), data_dir=tmp_path)
    bus = InProcessBus()
    await bus.start()
    app = build_app(settings, bus=bus, cache=MemoryCache())
    try:
        async with app.router.lifespan_context(app), \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as client:
            trust_test_tokens(app)
            await bus.publish(registered("veh-a", PRINCIPALS["driver_a"].subject, "TAG-A1", "TAG-A2"))
            await bus.publish(registered("veh-b", PRINCIPALS["driver_b"].subject, "TAG-B"))
            seq = 0
            for site, tx, tag, minute, done in [("site-1", 1, "TAG-A1", 10, False), ("site-1", 2, "TAG-A1", 0, True),
                                                ("site-2", 3, "TAG-A2", 20, False), ("site-2", 4, "TAG-A2", 5, True),
                                                ("site-2", 5, "TAG-B", 0, True)]:
                seq += 1
                await record(app, site, seq, SessionStarted(
                    charger_id="CP1", connector_id=1, transaction_id=tx, id_tag=tag,
                    id_tag_status=IdTagStatus.ACCEPTED, meter_start_wh=0, started_at=T0 + timedelta(minutes=minute)))
                if done:
                    seq += 1
                    await record(app, site, seq, SessionStopped(
                        charger_id="CP1", transaction_id=tx, meter_stop_wh=500, energy_wh=500,
                        stopped_at=T0 + timedelta(hours=1, minutes=minute)))
            yield client
    finally:
        await bus.close()


def _shown(response: httpx.Response) -> object:
    body = response.json()
    if response.status_code == 200:
        return [(f'{s["site_id"]}:{s["transaction_id"]}', s["id_tag"]) for s in body["sessions"]]
    return body.get("code")


async def test_every_route_answers_every_caller_as_the_table_says(charging: httpx.AsyncClient) -> None:
    answers = {}
    for path, expected in EXPECTED.items():
        for who in expected:
            # Twice: the second status read comes from the cache the first one filled.
            for _ in range(2):
                response = await charging.get(path, headers={} if who == "anonymous" else headers(who))
                answers[path, who] = (response.status_code, _shown(response) if response.status_code != 401 else None)
    assert answers == {(path, who): answer for path, row in EXPECTED.items() for who, answer in row.items()}


async def test_an_operator_after_the_owner_never_gets_the_cached_idtags(charging: httpx.AsyncClient) -> None:
    owner = await charging.get("/charging/status/veh-a", headers=headers("driver_a"))
    assert "TAG-A1" in owner.text
    operator = await charging.get("/charging/status/veh-a", headers=headers("operator_1"))
    assert operator.status_code == 200
    assert "TAG-A" not in operator.text
    assert [s["id_tag"] for s in operator.json()["sessions"]] == [None]


async def test_another_drivers_vehicle_is_the_same_404_as_an_unknown_one(charging: httpx.AsyncClient) -> None:
    for route in ("status", "history"):
        theirs = await charging.get(f"/charging/{route}/veh-a", headers=headers("driver_b"))
        unknown = await charging.get(f"/charging/{route}/veh-zz", headers=headers("driver_b"))
        assert theirs.status_code == unknown.status_code == 404
        normalise = {**theirs.json(), "detail": theirs.json()["detail"].replace("veh-a", "veh-zz"),
                     "instance": unknown.json()["instance"]}
        assert normalise == unknown.json()
        assert "TAG" not in theirs.text and "site-" not in theirs.text


async def test_an_operators_history_pages_over_their_sites_only(charging: httpx.AsyncClient) -> None:
    page = await charging.get("/charging/history/veh-a", params={"limit": 1, "offset": 0},
                              headers=headers("operator_2"))
    assert _shown(page) == [("site-2:4", None)]
    rest = await charging.get("/charging/history/veh-a", params={"limit": 1, "offset": 1},
                              headers=headers("operator_2"))
    assert _shown(rest) == []
