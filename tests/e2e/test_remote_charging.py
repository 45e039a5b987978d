"""Remote charging end to end (production mode: every part its own process, on PostgreSQL, RabbitMQ, Redis and
Mosquitto), with cpsim chargers on the edge: a driver starts charging from the app, watches power, energy and
cost rise, stops, and finds the session in the history with charging.completed on the bus; a charger that
rejects the remote start, one that never answers it; a car that is full while plugged in (energy finished)
and one the site's load manager holds at 0 A (not energy finished); unlock and reset from the cloud."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chargepoint_sim import SimulatedCharger
from cloud.platform.ports import Event
from cloud.platform.rabbitmq import RabbitMQBus
from tests.e2e.conftest import drop_databases, forget_edge_session, production
from tests.e2e.harness import LibCharger, System, authorize_when_known, boot, connect_charger
from tests.support import services

pytestmark = pytest.mark.e2e

SITE = """
site_id = "e2e-site"

[[bays]]
id = "EV-1"
type = "ev"
charger_id = "CP-1"
connector_id = 1

[power]
limit_a = 32
charger_max_a = 32
"""

TARIFF = {"site_id": "e2e-site", "currency": "EUR", "tax_rate": "0.19", "time_zone": "Europe/Berlin",
          "elements": [{"components": [{"type": "energy", "price": "0.40", "step_size": 1}]}]}


class Running:
    def __init__(self, system: System, events: list[Event]) -> None:
        self.system = system
        self.events = events

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e.payload for e in self.events if e.name == name]

    async def until(self, what: str, condition: Any, limit_s: float = 30.0) -> Any:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            found = condition()
            if asyncio.iscoroutine(found):
                found = await found
            if found:
                return found
            await asyncio.sleep(0.2)
        raise AssertionError(f"{what}: not within {limit_s} s\n{self.system.logs()}")


@pytest.fixture
async def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    for label, address in (("PostgreSQL", services.POSTGRES), ("RabbitMQ", services.RABBITMQ),
                           ("Redis", services.REDIS), ("Mosquitto", services.MOSQUITTO)):
        services.require(label, address)
    # under 100 W for 3 s is energy finished here (5 minutes in production), so a held car would show quickly
    monkeypatch.setenv("EVPARK_CHARGING_LOW_POWER_SECONDS", "3")
    name = services.fresh_name("e")
    vhost = services.create_rabbitmq_vhost()
    amqp_url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    recorder = RabbitMQBus(amqp_url, service="e2e-recorder")
    events: list[Event] = []
    try:
        system = production(tmp_path, mqtt_port=services.MOSQUITTO[1], amqp_url=amqp_url, name=name, site_file=SITE)
        try:
            await asyncio.to_thread(system.wait_healthy, 120)
            await asyncio.to_thread(system.log_in, system.password_file)  # type: ignore[arg-type]
            await recorder.start()

            async def keep(event: Event) -> None:
                events.append(event)

            await recorder.subscribe("e2e.charging-events", ["charging.#"], keep)
            yield Running(system, events)
        finally:
            await recorder.close()
            await asyncio.to_thread(system.stop)
            await forget_edge_session(services.MOSQUITTO[1], system.topic_root)
    finally:
        services.delete_rabbitmq_vhost(vhost)
        await drop_databases(name)


async def driver(system: System) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=system.gateway, timeout=10) as client:
        made = await client.post("/auth/register", json={"email": "driver@e2e.example", "password": "a long passphrase",
                                                         "name": "Driver"})
        assert made.status_code == 201, made.text
        login = await client.post("/auth/login", json={"email": "driver@e2e.example", "password": "a long passphrase"})
        assert login.status_code == 200, login.text
        return {"Authorization": f"Bearer {login.json()['access_token']}"}


@contextlib.asynccontextmanager
async def cpsim(system: System, charger_id: str, **options: Any) -> AsyncIterator[SimulatedCharger]:
    charger = SimulatedCharger(charger_id, system.ocpp, connectors=2, speedup=60, **options)
    async with charger:
        # what a central system's ChangeConfiguration does: a meter value every second
        charger._change_configuration("MeterValueSampleInterval", "1")
        yield charger


async def test_remote_charging_from_start_to_history(running: Running) -> None:
    system = running.system
    me = await driver(system)
    async with httpx.AsyncClient(base_url=system.gateway, headers=me, timeout=40) as app, \
            httpx.AsyncClient(base_url=system.gateway, headers=system.headers, timeout=40) as admin, \
            connect_charger(system.ocpp, "CP-AUTH", LibCharger) as auth_probe, \
            cpsim(system, "CP-1", remote_session_energy_wh=40_000) as cp1, \
            cpsim(system, "CP-2") as cp2, cpsim(system, "CP-3") as cp3:
        made = await app.post("/vehicles/register", json={"plate": "E2E-REMOTE", "id_tags": ["TAGREMOTE"]})
        assert made.status_code == 201, made.text
        vehicle = made.json()["vehicle_id"]
        assert (await admin.put("/billing/rates/e2e-site", json=TARIFF)).status_code == 200
        await boot(auth_probe)
        await authorize_when_known(auth_probe, "TAGREMOTE", limit_s=30)  # the edge knows the idTag now

        async def stations_up() -> bool:
            answer = await app.get("/charging/stations?site_id=e2e-site")
            if answer.status_code != 200:
                return False
            shown = {s["charger_id"]: s for s in answer.json()["stations"]}
            return all(c in shown and shown[c]["online"] and shown[c]["connectors"]
                       and shown[c]["connectors"][0]["status"] == "Available" for c in ("CP-1", "CP-2", "CP-3"))

        await running.until("the chargers online in GET /charging/stations", stations_up)

        # --- start, watch it rise, stop -------------------------------------------------------------
        start = {"vehicle_id": vehicle, "site_id": "e2e-site", "charger_id": "CP-1", "connector_id": 1}
        started = await app.post("/charging/start", json=start)
        assert started.status_code == 200, started.text
        assert started.json()["status"] == "Accepted"
        readings: list[tuple[int, float, str]] = []

        async def rising() -> bool:
            [live] = (await app.get(f"/charging/status/{vehicle}")).json()["sessions"] or [None]
            if live and live["cost_so_far"] is not None and live["energy_wh"] > 0 and (
                    not readings or live["energy_wh"] > readings[-1][0]):
                readings.append((live["energy_wh"], live["power_w"], live["cost_so_far"]))
            return len(readings) >= 3

        await running.until("power, energy and cost rising in GET /charging/status", rising)
        assert [r[0] for r in readings] == sorted({r[0] for r in readings})
        assert [float(r[2]) for r in readings] == sorted(float(r[2]) for r in readings)
        assert all(r[1] > 1_000 for r in readings)
        session_id = (await app.get(f"/charging/status/{vehicle}")).json()["sessions"][0]["session_id"]
        stopped = await app.post("/charging/stop", json={"vehicle_id": vehicle})
        assert stopped.status_code == 200, stopped.text
        assert (stopped.json()["status"], stopped.json()["session_id"]) == ("Accepted", session_id)

        async def in_history() -> Any:
            sessions = (await app.get(f"/charging/history/{vehicle}")).json()["sessions"]
            return sessions[0] if sessions else None

        closed = await running.until("the session in the history", in_history)
        delivered = cp1.register_wh(1)
        assert (closed["session_id"], closed["energy_wh"], closed["stop_reason"]) == (session_id, delivered, "Remote")
        [completed] = await running.until("charging.completed on the bus", lambda: running.named("charging.completed"))
        assert (completed["session_id"], completed["energy_wh"], completed["stop_reason"], completed["vehicle_id"],
                completed["meter_stop_wh"]) == (session_id, delivered, "Remote", vehicle, delivered)

        # --- a charger that rejects ------------------------------------------------------------------
        cp2.faults.refuse_remote_start = True
        rejected = await app.post("/charging/start", json={**start, "charger_id": "CP-2"})
        assert rejected.status_code == 200, rejected.text
        assert (rejected.json()["status"], rejected.json()["session_id"]) == ("Rejected", None)
        [failed] = await running.until("charging.failed on the bus", lambda: running.named("charging.failed"))
        assert (failed["reason"], failed["charger_id"], failed["vehicle_id"]) == ("remote_start_rejected", "CP-2",
                                                                                  vehicle)

        # --- a charger that never answers ------------------------------------------------------------
        cp3.faults.silent = {"RemoteStartTransaction"}
        began = time.monotonic()
        silent = await app.post("/charging/start", json={**start, "charger_id": "CP-3"})
        waited = time.monotonic() - began
        assert silent.status_code == 504, silent.text
        assert silent.json()["code"] == "no_answer"
        assert waited <= 21, waited
        cp3.faults.silent = set()
        await asyncio.sleep(2)  # a car plugged in now: nothing was started for it
        assert cp3.connector_status(1) == "Available"
        assert (await app.get(f"/charging/status/{vehicle}")).json()["sessions"] == []
        timeouts = [f for f in running.named("charging.failed") if f["reason"] == "remote_start_timeout"]
        assert [f["charger_id"] for f in timeouts] == ["CP-3"]

        # --- full while plugged in: energy finished --------------------------------------------------
        cp1.faults.stay_plugged = True
        cp1.remote_session_energy_wh = 300
        full = await app.post("/charging/start", json=start)
        assert full.json()["status"] == "Accepted", full.text
        [finished] = await running.until("charging.energy_finished", lambda: running.named("charging.energy_finished"))
        assert (finished["trigger"], finished["vehicle_id"]) == ("suspended_ev", vehicle)
        assert (await app.post("/charging/stop", json={"vehicle_id": vehicle})).json()["status"] == "Accepted"
        await running.until("the second session closed", lambda: len(running.named("charging.completed")) == 2)

        # --- held at 0 A by the site's load manager: never energy finished ---------------------------
        cp1.faults.stay_plugged = False
        cp1.remote_session_energy_wh = 40_000
        paused = await admin.put("/parking/sites/e2e-site/power-limit", json={"limit_a": 1})
        assert paused.status_code == 202, paused.text
        # 1 A is under the 6 A minimum: the load manager pauses every car at 0 A
        await running.until("the site limit at 1 A", lambda: _limit_applied(admin, 1.0))
        held = await app.post("/charging/start", json=start)
        assert held.json()["status"] == "Accepted", held.text

        async def drawing_nothing() -> bool:
            sessions = (await app.get(f"/charging/status/{vehicle}")).json()["sessions"]
            return bool(sessions) and sessions[0]["power_w"] == 0.0

        await running.until("the held car drawing 0 W", drawing_nothing)
        await asyncio.sleep(6)  # twice the low-power window of this system
        assert len(running.named("charging.energy_finished")) == 1
        assert (await app.post("/charging/stop", json={"vehicle_id": vehicle})).json()["status"] == "Accepted"

        # --- unlock and reset from the cloud reach the charger; a driver is told it does not exist --------
        unlocked = await admin.post("/charging/stations/e2e-site/CP-2/unlock", json={"connector_id": 1})
        assert unlocked.status_code == 200, unlocked.text
        assert (unlocked.json()["outcome"], unlocked.json()["charger_status"]) == ("accepted", "Unlocked")
        refused = await app.post("/charging/stations/e2e-site/CP-2/unlock", json={"connector_id": 1})
        assert refused.status_code == 404
        assert (await app.post("/charging/stations/e2e-site/CP-2/reset", json={"type": "Soft"})).status_code == 404
        reset = await admin.post("/charging/stations/e2e-site/CP-2/reset", json={"type": "Soft"})
        assert reset.status_code == 200, reset.text
        assert (reset.json()["outcome"], reset.json()["charger_status"]) == ("accepted", "Accepted")


async def _limit_applied(admin: httpx.AsyncClient, limit_a: float) -> bool:
    answer = (await admin.get("/parking/sites/e2e-site/power-limit")).json()
    return answer.get("status") == "accepted" and answer.get("applied", {}).get("limit_a") == limit_a
