"""Analytics end to end, the smallest case: a charger charges a car through the site's edge, and the
session and its Wh reach ``GET /analytics/usage`` through the gateway (both run modes).

Issue 20's simulated day (arrivals at sensed bays, sessions, an idle car, a no-show, a cancellation, billed
stays and a refund, then ``evpark analytics rebuild``) is ``test_analytics_day_e2e.py``, in production mode;
``tests/integration/cloud/test_analytics_day.py`` covers a longer hand-written day (another currency, a
failed first attempt, a blocked bay, redelivery) with its events published straight to the service."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.harness import System, authorize_when_known, boot, charge, connect_charger, register_vehicle
from tests.support.services import fresh_name

pytestmark = pytest.mark.e2e


async def test_a_charged_session_shows_in_the_usage_analytics(system: System) -> None:
    id_tag = fresh_name("T")[:20].upper()
    await register_vehicle(system, fresh_name("P")[:10].upper(), [id_tag])
    async with connect_charger(system.ocpp, fresh_name("CP-")) as charger:
        await boot(charger)
        await authorize_when_known(charger, id_tag)
        await charge(charger, id_tag, meter_start=50_000, energy_wh=7_500)

    query = {"from": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
             "to": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
    started, total = time.monotonic(), {}
    async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers, timeout=10) as client:
        while time.monotonic() - started < 20:
            answer = await client.get("/analytics/usage", params=query)
            assert answer.status_code == 200, answer.text
            total = answer.json()["total"]
            if total["charging_sessions"] >= 1:
                break
            await asyncio.sleep(0.2)
        assert (total["charging_sessions"], total["energy_wh"]) == (1, 7_500), system.logs()
        health = await client.get("/metrics/health")
        assert health.status_code == 200, health.text
        assert health.json()["sites"], "the site is known to analytics"
