"""A site's bay reports reach drivers as availability through the gateway."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiomqtt
import httpx
import pytest

from mqtt import BayOccupancy, Envelope, Topics
from tests.e2e.harness import System
from tests.support.services import fresh_name

pytestmark = pytest.mark.e2e


async def test_bay_reports_show_as_availability(system: System) -> None:
    site = fresh_name("site-")
    topic = Topics(system.topic_root).up(site, "bay")
    t0 = datetime.now(UTC)
    reports = [
        Envelope.wrap(site, 1, BayOccupancy(bay_id="B1", state="occupied", changed_at=t0)),
        Envelope.wrap(site, 2, BayOccupancy(bay_id="B2", state="free", changed_at=t0)),
        Envelope.wrap(site, 3, BayOccupancy(bay_id="B3", state="unknown", changed_at=t0)),
        # A late report older than B1's state must not free it.
        Envelope.wrap(site, 4, BayOccupancy(bay_id="B1", state="free", changed_at=t0 - timedelta(minutes=1))),
    ]
    async with aiomqtt.Client("127.0.0.1", system.mqtt_port, username=site) as client:
        for envelope in reports:
            await client.publish(topic, envelope.to_bytes(), qos=1)
        await client.publish(topic, reports[0].to_bytes(), qos=1)  # a duplicate changes nothing
    expected = {"site_id": site, "total": 3, "free": 1, "occupied": 1, "unknown": 1}
    async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers, timeout=5) as http:
        availability: dict[str, object] = {}
        for _ in range(100):
            response = await http.get(f"/parking/sites/{site}/availability")
            if response.status_code == 200:
                availability = response.json()
                if availability == expected:
                    break
            await asyncio.sleep(0.1)
        assert availability == expected
        bays = (await http.get(f"/parking/sites/{site}/bays")).json()["bays"]
        assert [(b["bay_id"], b["state"]) for b in bays] == [("B1", "occupied"), ("B2", "free"), ("B3", "unknown")]
        assert (await http.get("/parking/sites/no-such-site/availability")).status_code == 404
