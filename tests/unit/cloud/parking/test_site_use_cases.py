"""The site view: the inventory in numbers, the power settings, what the site's uplink dropped."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cloud.contracts.errors import NotFound
from cloud.parking.service import ParkingService
from mqtt import OutboxDropped
from tests.unit.cloud.parking.conftest import ADMIN, T0, EdgeSite

MIN = timedelta(minutes=1)


async def test_an_unknown_site_is_not_found(parking: ParkingService) -> None:
    for read in (parking.site, parking.power_limit):
        with pytest.raises(NotFound) as refused:
            await read(ADMIN, "nowhere")
        assert refused.value.code == "unknown_site"


async def test_any_message_makes_the_site_known_and_seen(parking: ParkingService, site: EdgeSite) -> None:
    await site.hello()
    view = (await parking.site(ADMIN, "site-1")).model_dump()
    assert view["last_seen_at"] is not None
    assert view["inventory"] == {"received_at": None, "bays": 0, "chargers": 0}
    assert view["power"] == {"limit_a": None, "phases": None, "voltage": None, "applied_limit_a": None,
                             "request_status": None}
    assert view["uplink_drops"] == {"total": 0, "last": None}


async def test_the_site_view_shows_its_inventory_and_power_settings(parking: ParkingService, site: EdgeSite) -> None:
    await site.inventory(power_limit_a=32.0, ts=T0)
    view = await parking.site(ADMIN, "site-1")
    assert (view.inventory.received_at, view.inventory.bays, view.inventory.chargers) == (T0, 3, 1)
    assert view.power.model_dump() == {"limit_a": 32.0, "phases": 3, "voltage": 230.0, "applied_limit_a": 32.0,
                                       "request_status": None}


async def test_every_drop_report_counts_and_the_newest_stays_the_latest(parking: ParkingService,
                                                                       site: EdgeSite) -> None:
    await site.send(OutboxDropped(policy="drop_oldest_telemetry", dropped=120,
                                  by_type={"session.meter": 100, "bay.occupancy": 20}, first_seq=10, last_seq=129,
                                  backlog=5_000, backlog_bytes=2_000_000, at=T0 + 120 * MIN))
    await site.send(OutboxDropped(policy="refuse_new", dropped=5, by_type={"session.meter": 5}, backlog=10,
                                  backlog_bytes=100, at=T0 + 60 * MIN))  # older, arriving late
    drops = (await parking.site(ADMIN, "site-1")).uplink_drops.model_dump()
    assert drops == {"total": 125, "last": {
        "at": T0 + 120 * MIN, "policy": "drop_oldest_telemetry", "dropped": 120,
        "by_type": {"session.meter": 100, "bay.occupancy": 20}, "first_seq": 10, "last_seq": 129,
        "backlog": 5_000, "backlog_bytes": 2_000_000}}
