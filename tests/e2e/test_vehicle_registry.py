"""The vehicle registry through the whole system, as processes: deleting a vehicle withdraws its
idTags from the site's edge (which then answers Invalid), and a vehicle's status shows it parked
and charging while cpsim's bay sensor and charger run a session, and neither after it left."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ocpp.v16 import call
from ocpp.v16.enums import AuthorizationStatus

from chargepoint_sim.charger import SimulatedCharger
from chargepoint_sim.sensors import MqttSensors
from tests.e2e.conftest import production_on_shared_broker
from tests.e2e.harness import System, authorize_when_known, boot, connect_charger, now, register_vehicle
from tests.e2e.test_site_sensors import poll
from tests.support.services import fresh_name

pytestmark = pytest.mark.e2e


async def authorization_of(charger: Any, id_tag: str) -> str:
    return str((await charger.call(call.Authorize(id_tag=id_tag))).id_tag_info["status"])


async def test_deleting_a_vehicle_makes_the_sites_edge_answer_invalid(system: System) -> None:
    id_tag = fresh_name("D")[:20].upper()
    vehicle_id = await register_vehicle(system, fresh_name("P")[:10].upper(), [id_tag])
    async with connect_charger(system.ocpp, fresh_name("CP-")) as charger, \
            httpx.AsyncClient(base_url=system.gateway, headers=system.headers, timeout=10) as http:
        await boot(charger)
        await authorize_when_known(charger, id_tag)
        deleted = await http.delete(f"/vehicles/{vehicle_id}")
        assert deleted.status_code == 204, deleted.text
        started = time.monotonic()
        while (status := await authorization_of(charger, id_tag)) != AuthorizationStatus.invalid:
            assert time.monotonic() - started < 20, f"the edge still answers {status} 20 s after the delete"
            await asyncio.sleep(0.25)
        print(f"edge answered Invalid {time.monotonic() - started:.2f} s after the delete")
        start = await charger.call(call.StartTransaction(connector_id=1, id_tag=id_tag, meter_start=0,
                                                         timestamp=now()))
        assert start.id_tag_info["status"] == AuthorizationStatus.invalid, "no session starts with it either"
        assert (await http.get(f"/vehicles/{vehicle_id}")).status_code == 404


STATUS_SITE = """
site_id = "e2e-site"

[[bays]]
id = "EV-1"
type = "ev"
charger_id = "CP-1"
connector_id = 1

[sensors.mqtt]
host = "127.0.0.1"
port = {mqtt_port}
username = "e2e-site-sensors"
topic_root = "{root}"
debounce = 0.2

[sensors.mqtt.sensors]
s-ev-1 = "EV-1"
"""


@pytest.fixture
async def status_site(tmp_path: Path) -> AsyncIterator[System]:
    """Production mode, with an edge whose site file has one EV bay (a sensor, served by CP-1)."""
    async with production_on_shared_broker(tmp_path, STATUS_SITE) as the_system:
        yield the_system


async def test_the_status_shows_the_car_parked_and_charging_during_a_cpsim_session_and_neither_after(
        status_site: System) -> None:
    system = status_site
    id_tag = "TAGSTATUS1"
    vehicle_id = await register_vehicle(system, "EV-STATUS-1", [id_tag])
    path = f"/vehicles/{vehicle_id}/status"
    sensors = MqttSensors("e2e-site", {"EV-1": "s-ev-1"}, port=system.mqtt_port, root=system.topic_root,
                          username="sensor-test")
    async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers, timeout=5) as http, \
            sensors, SimulatedCharger("CP-1", system.ocpp) as charger:
        before = (await http.get(path)).json()
        assert (before["parked"], before["charging"], before["reserved"]) == (False, False, False)
        for _ in range(80):  # the site's edge learns the idTag from the registry
            if (await charger.send(call.Authorize(id_tag=id_tag))).id_tag_info["status"] == "Accepted":
                break
            await asyncio.sleep(0.25)
        await sensors.set_occupied("EV-1", True)  # the car parks in the EV bay ...
        await poll(http, "/parking/sites/e2e-site/bays?usage=blocked", lambda b: len(b["bays"]) == 1, 20)
        session = asyncio.create_task(charger.run_session(1, id_tag, 1_000_000, meter_interval=0.5))  # ... plugs in
        try:
            charging = await poll(http, path, lambda b: b["charging"] and b["parked"]
                                  and (b["location"] or {}).get("bay_id") == "EV-1", 30)
            assert charging["location"]["site_id"] == "e2e-site"
            assert charging["location"]["charger_id"] == "CP-1"
            assert charging["session"]["session_id"]
            assert charging["reserved"] is False
        finally:
            charger.stop_session(1)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session, 30)
        stays = await poll(http, path, lambda b: not b["charging"], 30)
        assert stays["parked"] is True, "it stays in the bay after the session (overstay)"
        await sensors.set_occupied("EV-1", False)  # ... and leaves
        gone = await poll(http, path, lambda b: not b["parked"], 30)
        assert (gone["charging"], gone["location"], gone["session"]) == (False, None, None)
