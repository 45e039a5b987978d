"""The foundation's promise: a charger charges a car, and its driver sees the session over REST."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from ocpp.v16 import call
from ocpp.v16.enums import AuthorizationStatus

from tests.e2e.harness import (
    System,
    authorize_when_known,
    boot,
    charge,
    connect_charger,
    register_vehicle,
    wait_history,
)
from tests.support.services import PrivateMosquitto, fresh_name

pytestmark = pytest.mark.e2e


async def test_a_charged_session_shows_in_the_drivers_history_within_5_s(system: System) -> None:
    id_tag = fresh_name("T")[:20].upper()
    vehicle_id = await register_vehicle(system, fresh_name("P")[:10].upper(), [id_tag])

    async with connect_charger(system.ocpp, fresh_name("CP-")) as charger:
        await boot(charger)
        unknown = await charger.call(call.Authorize(id_tag="NOBODY-KNOWS-ME"))
        assert unknown.id_tag_info["status"] == AuthorizationStatus.invalid
        await authorize_when_known(charger, id_tag)
        transaction_id = await charge(charger, id_tag, meter_start=120_000, energy_wh=7_500)

    sessions, waited = await wait_history(system, vehicle_id, 1, limit_s=5.0)
    print(f"session in history {waited:.2f} s after StopTransaction")
    assert waited < 5.0
    [session] = sessions
    assert session["status"] == "completed"
    assert session["energy_wh"] == 7_500
    assert session["transaction_id"] == transaction_id
    assert session["stopped_at"].endswith(("Z", "+00:00")), "times reach the driver as UTC"
    # Nothing else appears later: one session, counted once.
    await asyncio.sleep(1.0)
    again, _ = await wait_history(system, vehicle_id, 1, limit_s=2.0)
    assert len(again) == 1


async def test_bad_rest_bodies_get_problem_details(system: System) -> None:
    async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers, timeout=10) as client:
        response = await client.post("/vehicles/register", json={"plate": "AB-1", "id_tags": "not-a-list"})
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["status"] == 422
        assert any(error["field"] == "id_tags" for error in problem["errors"])
        missing = await client.get("/vehicles/does-not-exist")
        assert missing.status_code == 404
        assert missing.json()["title"] == "Not found"


def test_stopping_the_broker_during_a_session_loses_no_event(
        private_broker_system: tuple[System, PrivateMosquitto]) -> None:
    system, broker = private_broker_system

    async def scenario() -> None:
        id_tag = fresh_name("T")[:20].upper()
        vehicle_id = await register_vehicle(system, fresh_name("P")[:10].upper(), [id_tag])
        async with connect_charger(system.ocpp, fresh_name("CP-")) as charger:
            await boot(charger)
            await authorize_when_known(charger, id_tag)
            await asyncio.to_thread(broker.stop)  # the site loses its link mid-session
            await charge(charger, id_tag, meter_start=0, energy_wh=7_500)
            await charge(charger, id_tag, meter_start=7_500, energy_wh=2_000)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(broker.start)
        sessions, _ = await wait_history(system, vehicle_id, 2, limit_s=30.0)
        assert sorted(s["energy_wh"] for s in sessions) == [2_000, 7_500]
        await asyncio.sleep(1.0)
        again, _ = await wait_history(system, vehicle_id, 2, limit_s=2.0)
        assert len(again) == 2

    asyncio.run(scenario())
