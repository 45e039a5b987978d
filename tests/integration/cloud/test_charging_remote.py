"""The charging API's remote start and stop, stations, station commands and rates over HTTP, in both run
modes: embedded (SQLite, the in-process bus, the in-process cache) and production (PostgreSQL, RabbitMQ,
Redis). The charging app alone; the chargers' messages are recorded as its MQTT link records them, and a
stand-in edge answers the commands the service sends (as the site's edge would: the charger's answer,
then its StartTransaction), or stays silent.

``site-1`` (operator_1's and technician_1's) has CP1 (22 kW, two connectors, online) and CP2 (offline);
driver A's vehicle ``veh-a`` has idTag TAG-A.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cloud.charging.app import build_app
from cloud.charging.repository import SqlChargingRepository
from cloud.charging.service import ChargingService
from cloud.contracts.payments import TariffChanged
from cloud.contracts.vehicles import VehicleRegistered
from cloud.platform.cache import MemoryCache
from cloud.platform.events import InProcessBus
from cloud.platform.ports import Event, EventBus
from cloud.platform.rabbitmq import RabbitMQBus
from cloud.platform.runtime import Platform
from cloud.platform.settings import CloudSettings
from cloud.platform.unit_of_work import sql_units_of_work
from mqtt import (
    ChargerConnection,
    ChargerStatus,
    Command,
    CommandResult,
    CommandStatus,
    Envelope,
    IdTagStatus,
    InventoryCharger,
    SessionMeter,
    SessionStarted,
    SiteInventory,
)
from mqtt.payloads import _Body
from tests.support import services
from tests.support.identity import PRINCIPALS, headers, trust_test_tokens
from tests.support.services import free_port
from tests.support.waiting import eventually

NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Site:
    api: httpx.AsyncClient
    app: FastAPI
    published: list[Event]
    answer: str = "Accepted"
    silent: bool = False
    sent: list[Command] = field(default_factory=list)
    seq: int = 0
    transaction_id: int = 40
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def record(self, body: _Body | CommandResult) -> None:
        platform: Platform = self.app.state.platform
        service: ChargingService = self.app.state.charging
        self.seq += 1
        async with sql_units_of_work(platform.outbox, SqlChargingRepository)() as uow:
            await service.record_session_message(uow, Envelope.wrap("site-1", self.seq, body))

    async def send_command(self, command: Command) -> None:
        self.sent.append(command)
        if not self.silent:
            task = asyncio.create_task(self._answer(command))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _answer(self, command: Command) -> None:
        accepted = self.answer in ("Accepted", "Unlocked")
        await self.record(CommandResult(
            command_id=command.id, command_type=command.type,
            status=CommandStatus.ACCEPTED if accepted else CommandStatus.REJECTED,
            detail=f"charger answered {self.answer}",
            data={"response": {"kind": "result", "payload": {"status": self.answer}}}))
        if command.type == "charger.remote_start" and accepted:
            self.transaction_id += 1
            await self.record(SessionStarted(
                charger_id=command.body["charger_id"], connector_id=command.body["connector_id"],
                transaction_id=self.transaction_id, id_tag=command.body["id_tag"],
                id_tag_status=IdTagStatus.ACCEPTED, meter_start_wh=10_000, started_at=NOW))

    def names(self) -> list[str]:
        return [e.name for e in self.published]


@contextlib.asynccontextmanager
async def running(tmp_path: Path, *, database_url: str, amqp_url: str = "", redis_url: str = "") -> AsyncIterator[Site]:
    settings = CloudSettings(database_url=database_url, amqp_url=amqp_url, redis_url=redis_url,
                             mqtt_port=free_port(), data_dir=tmp_path)
    bus: EventBus = RabbitMQBus(amqp_url, service="test-recorder") if amqp_url else InProcessBus()
    await bus.start()
    published: list[Event] = []

    async def keep(event: Event) -> None:
        published.append(event)

    await bus.subscribe("test.charging-events", ["charging.#"], keep)
    app = build_app(settings, bus=None if amqp_url else bus, cache=None if redis_url else MemoryCache())
    try:
        async with app.router.lifespan_context(app), \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as client:
            trust_test_tokens(app)
            site = Site(client, app, published)
            service: ChargingService = app.state.charging
            service.sender = site
            service.answer_within, service.command_ttl, service.session_wait = 1.5, 1.2, 1.0
            await bus.publish(Event.of(VehicleRegistered(vehicle_id="veh-a", plate="VEH-A", id_tags=["TAG-A"],
                                                         owner_id=PRINCIPALS["driver_a"].subject), source="vehicles"))
            await site.record(SiteInventory(bays=[], chargers=[
                InventoryCharger(charger_id="CP1", connectors=2, max_power_w=22_000),
                InventoryCharger(charger_id="CP2", connectors=1, max_power_w=50_000)]))
            await site.record(ChargerConnection(charger_id="CP1", online=True, at=NOW))
            for connector in (0, 1, 2):
                await site.record(ChargerStatus(charger_id="CP1", connector_id=connector, status="Available",
                                                observed_at=NOW))

            async def vehicle_known() -> bool:
                answer = await client.get("/charging/history/veh-a", headers=headers("driver_a"))
                return answer.status_code == 200

            await eventually(vehicle_known, what="the charging service learned the vehicle")
            yield site
    finally:
        await bus.close()


@pytest.fixture(params=["embedded", "production"])
async def site(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Site]:
    if request.param == "embedded":
        async with running(tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'charging.db'}") as embedded:
            yield embedded
        return
    services.require("PostgreSQL", services.POSTGRES)
    services.require("RabbitMQ", services.RABBITMQ)
    services.require("Redis", services.REDIS)
    name = services.fresh_name("evpark_it_")
    vhost = services.create_rabbitmq_vhost()
    try:
        async with running(tmp_path, database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}",
                           amqp_url=f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
                           redis_url="redis://127.0.0.1:6379/0") as production:
            yield production
    finally:
        services.delete_rabbitmq_vhost(vhost)
        import asyncpg

        connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()


START = {"vehicle_id": "veh-a", "site_id": "site-1", "charger_id": "CP1"}


def as_(who: str) -> dict[str, str]:
    return {} if who == "anonymous" else headers(who)


async def test_start_watch_the_cost_rise_and_stop(site: Site) -> None:
    tariff = {"site_id": "site-1", "currency": "EUR", "tax_rate": "0.19", "time_zone": "Europe/Berlin",
              "elements": [{"components": [{"type": "energy", "price": "0.30", "step_size": 1}]}]}
    platform: Platform = site.app.state.platform
    await platform.bus.publish(Event.of(TariffChanged(site_id="site-1", currency="EUR", version=1, changed_at=NOW,
                                                      tariff=tariff), source="payments"))
    started = await site.api.post("/charging/start", headers=as_("driver_a"), json={**START, "connector_id": 2})
    assert started.status_code == 200, started.text
    body = started.json()
    assert (body["status"], body["connector_id"]) == ("Accepted", 2)
    assert body["session_id"] is not None
    costs = []
    for register in (12_000, 15_000):
        await site.record(SessionMeter(charger_id="CP1", connector_id=2, transaction_id=site.transaction_id,
                                       energy_register_wh=register, power_w=7_000.0, sampled_at=NOW))

        async def priced() -> bool:
            answer = (await site.api.get("/charging/status/veh-a", headers=as_("driver_a"))).json()
            return bool(answer["sessions"]) and answer["sessions"][0]["cost_so_far"] is not None

        await eventually(priced, what="the tariff reached charging_rates")
        [live] = (await site.api.get("/charging/status/veh-a", headers=as_("driver_a"))).json()["sessions"]
        costs.append((live["energy_wh"], live["power_w"], live["cost_so_far"], live["currency"]))
    # 2 kWh x 0.30 = 0.60 net, 0.714 gross → 0.71; 5 kWh: 1.50 net, 1.785 → 1.79 (half up)
    assert costs == [(2_000, 7_000.0, "0.71", "EUR"), (5_000, 7_000.0, "1.79", "EUR")]
    rates = await site.api.get("/charging/rates?site_id=site-1", headers=as_("driver_b"))
    assert rates.status_code == 200, rates.text
    assert (rates.json()["currency"], rates.json()["version"], rates.json()["tax_rate"]) == ("EUR", 1, "0.19")
    by_class = {(r["bay_type"], r["power_class"]): r["elements"] for r in rates.json()["rates"]}
    assert by_class["ev", "dc"][0]["components"][0]["price"] == "0.30"
    assert (await site.api.get("/charging/rates?site_id=", headers=as_("driver_b"))).status_code == 422
    assert (await site.api.get("/charging/rates?site_id=site-1")).status_code == 401
    stations = (await site.api.get("/charging/stations?site_id=site-1", headers=as_("operator_1"))).json()
    assert [c["session_id"] for c in stations["stations"][0]["connectors"]] == [None, body["session_id"]]
    stopped = await site.api.post("/charging/stop", headers=as_("driver_a"), json={"session_id": body["session_id"]})
    assert stopped.status_code == 200, stopped.text
    assert (stopped.json()["status"], site.sent[-1].type) == ("Accepted", "charger.remote_stop")
    await eventually(lambda: "charging.started" in site.names(), what="charging.started on the bus")


async def test_a_rejected_start_is_answered_and_published_as_charging_failed(site: Site) -> None:
    site.answer = "Rejected"
    answer = await site.api.post("/charging/start", headers=as_("driver_a"), json=START)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["status"], answer.json()["session_id"]) == ("Rejected", None)
    await eventually(lambda: "charging.failed" in site.names(), what="charging.failed on the bus")
    [failed] = [e for e in site.published if e.name == "charging.failed"]
    assert (failed.payload["reason"], failed.payload["vehicle_id"]) == ("remote_start_rejected", "veh-a")


async def test_no_answer_is_a_504_problem_within_the_bound(site: Site) -> None:
    site.silent = True
    began = time.monotonic()
    answer = await site.api.post("/charging/start", headers=as_("driver_a"), json=START)
    assert answer.status_code == 504, answer.text
    assert answer.json()["code"] == "no_answer"
    assert time.monotonic() - began < 3
    [command] = site.sent
    assert command.expires_at - command.issued_at == timedelta(seconds=1.2)
    await eventually(lambda: "charging.failed" in site.names(), what="charging.failed on the bus")


@pytest.mark.parametrize("body, field", [
    ({"site_id": "site-1", "charger_id": "CP1"}, "vehicle_id"),
    ({**START, "connector_id": 0}, "connector_id"),
    ({**START, "charger_id": ""}, "charger_id"),
    ({**START, "site_id": "s" * 65}, "site_id"),
])
async def test_a_bad_start_request_is_422_naming_the_field(site: Site, body: dict[str, Any], field: str) -> None:
    answer = await site.api.post("/charging/start", headers=as_("driver_a"), json=body)
    assert answer.status_code == 422
    assert field in answer.text
    assert site.sent == []


async def test_start_conflicts_and_strangers(site: Site) -> None:
    answers = {}
    for name, who, body in (
            ("offline", "driver_a", {**START, "charger_id": "CP2"}),
            ("other driver", "driver_b", START),
            ("operator", "operator_1", START),
            ("unknown charger", "driver_a", {**START, "charger_id": "CP9"}),
            ("unknown connector", "driver_a", {**START, "connector_id": 5}),
            ("anonymous", "anonymous", START)):
        answer = await site.api.post("/charging/start", headers=as_(who), json=body)
        answers[name] = (answer.status_code, answer.json().get("code"))
    assert answers == {"offline": (409, "charger_offline"), "other driver": (404, "unknown_vehicle"),
                       "operator": (404, "unknown_vehicle"), "unknown charger": (404, "unknown_charger"),
                       "unknown connector": (404, "unknown_connector"), "anonymous": (401, None)}
    first = await site.api.post("/charging/start", headers=as_("driver_a"), json={**START, "connector_id": 1})
    assert first.status_code == 200
    again = await site.api.post("/charging/start", headers=as_("driver_a"), json=START)
    assert (again.status_code, again.json()["code"]) == (409, "vehicle_charging")
    assert len(site.sent) == 1


async def test_stop_validation_conflict_and_strangers(site: Site) -> None:
    both = await site.api.post("/charging/stop", headers=as_("driver_a"), json={"session_id": "x", "vehicle_id": "y"})
    assert both.status_code == 422
    idle = await site.api.post("/charging/stop", headers=as_("driver_a"), json={"vehicle_id": "veh-a"})
    assert (idle.status_code, idle.json()["code"]) == (409, "not_charging")
    started = (await site.api.post("/charging/start", headers=as_("driver_a"), json=START)).json()
    for who, expected in (("driver_b", 404), ("operator_2", 404), ("technician_1", 404), ("operator_1", 200)):
        answer = await site.api.post("/charging/stop", headers=as_(who), json={"session_id": started["session_id"]})
        assert answer.status_code == expected, (who, answer.text)
    unknown = await site.api.post("/charging/stop", headers=as_("admin"), json={"session_id": "cs_unknown"})
    assert unknown.status_code == 404


STATION_COMMANDS = [("unlock", {"connector_id": 1}, "charger.unlock"), ("reset", {"type": "Hard"}, "charger.reset"),
                    ("availability", {"connector_id": 0, "type": "Inoperative"}, "charger.change_availability")]


@pytest.mark.parametrize("action, body, command_type", STATION_COMMANDS)
async def test_station_commands_for_the_sites_staff_only(site: Site, action: str, body: dict[str, Any],
                                                         command_type: str) -> None:
    site.answer = "Unlocked" if action == "unlock" else "Accepted"
    path = f"/charging/stations/site-1/CP1/{action}"
    answers = {who: (await site.api.post(path, headers=as_(who), json=body)).status_code
               for who in ("anonymous", "driver_a", "operator_2", "operator_1", "technician_1", "admin")}
    assert answers == {"anonymous": 401, "driver_a": 404, "operator_2": 404, "operator_1": 200, "technician_1": 200,
                       "admin": 200}
    assert [c.type for c in site.sent] == [command_type] * 3
    answer = (await site.api.post(path, headers=as_("operator_1"), json=body)).json()
    assert (answer["outcome"], answer["charger_status"]) == ("accepted", site.answer)
    offline = await site.api.post("/charging/stations/site-1/CP2/" + action, headers=as_("admin"), json=body)
    assert (offline.status_code, offline.json()["code"]) == (409, "charger_offline")
    unknown = await site.api.post("/charging/stations/site-1/CP9/" + action, headers=as_("admin"), json=body)
    assert unknown.status_code == 404
    bad = await site.api.post(path, headers=as_("admin"), json={"connector_id": -1, "type": "Sideways"})
    assert bad.status_code == 422


async def test_stations_and_rates_for_each_caller(site: Site) -> None:
    answers = {who: (await site.api.get("/charging/stations?site_id=site-1", headers=as_(who))).status_code
               for who in ("anonymous", "driver_a", "operator_1", "operator_2", "technician_1", "admin")}
    assert answers == {"anonymous": 401, "driver_a": 200, "operator_1": 200, "operator_2": 404, "technician_1": 200,
                       "admin": 200}
    shown = (await site.api.get("/charging/stations?site_id=site-1", headers=as_("driver_a"))).json()
    assert [(s["charger_id"], s["status"], s["power_class"], [c["status"] for c in s["connectors"]])
            for s in shown["stations"]] == [("CP1", "Available", "ac", ["Available", "Available"]),
                                            ("CP2", "Offline", "dc", ["Offline"])]
    assert (await site.api.get("/charging/stations?site_id=site-9", headers=as_("admin"))).status_code == 404
    assert (await site.api.get("/charging/stations", headers=as_("admin"))).status_code == 422
    assert (await site.api.get("/charging/rates?site_id=site-1", headers=as_("driver_a"))).status_code == 404


async def test_energy_finished_by_status_and_by_low_power_but_not_while_held(site: Site) -> None:
    from mqtt import ChargerCall

    service: ChargingService = site.app.state.charging
    service.low_power_seconds = 60
    first = (await site.api.post("/charging/start", headers=as_("driver_a"), json={**START, "connector_id": 1})).json()
    held = {"connectorId": 1, "csChargingProfiles": {"chargingSchedule": {
        "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 0}]}}}
    await site.record(ChargerCall(charger_id="CP1", action="SetChargingProfile", origin="load-management",
                                  request=held, outcome="result",
                                  response={"kind": "result", "payload": {"status": "Accepted"}}, sent_at=NOW))
    for minute in range(5):  # held at 0 A by the load manager: 0 W is not the car being full
        await site.record(SessionMeter(charger_id="CP1", connector_id=1, transaction_id=site.transaction_id,
                                       energy_register_wh=10_000, power_w=0.0,
                                       sampled_at=NOW + timedelta(minutes=minute)))
    await site.record(ChargerCall(charger_id="CP1", action="ClearChargingProfile", origin="load-management",
                                  request={"connectorId": 1}, outcome="result",
                                  response={"kind": "result", "payload": {"status": "Accepted"}}, sent_at=NOW))
    for minute in (5, 6):  # released: still 0 W a minute later, the energy is finished since minute 5
        await site.record(SessionMeter(charger_id="CP1", connector_id=1, transaction_id=site.transaction_id,
                                       energy_register_wh=10_000, power_w=0.0,
                                       sampled_at=NOW + timedelta(minutes=minute)))
    second = (await site.api.post("/charging/start", headers=as_("admin"), json={
        **START, "vehicle_id": "veh-b", "connector_id": 2}))
    assert second.status_code == 404  # veh-b is unknown here: the admin may start any vehicle the service knows
    await eventually(lambda: "charging.energy_finished" in site.names(), what="charging.energy_finished")
    [finished] = [e.payload for e in site.published if e.name == "charging.energy_finished"]
    assert (finished["session_id"], finished["trigger"], finished["energy_finished_at"]) == (
        first["session_id"], "low_power", (NOW + timedelta(minutes=5)).isoformat().replace("+00:00", "Z"))
    [live] = (await site.api.get("/charging/status/veh-a", headers=as_("driver_a"))).json()["sessions"]
    assert live["energy_finished_at"] == finished["energy_finished_at"]
    await site.record(ChargerStatus(charger_id="CP1", connector_id=1, status="SuspendedEV", observed_at=NOW))
    await asyncio.sleep(0.5)
    assert site.names().count("charging.energy_finished") == 1, "once per session"
