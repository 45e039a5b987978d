"""Bays as their sensors, chargers and the site's inventory report them: listing, availability,
charger stations, and the events each report causes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cloud.contracts.errors import NotFound
from cloud.contracts.parking import BayChanged, BayIdleEnded, BayIdleStarted, BayOverstayEnded, InventoryChanged
from cloud.parking.service import AVAILABILITY_TTL_SECONDS, ParkingService
from mqtt import InventoryBay, InventoryCharger
from tests.unit.cloud.parking.conftest import ADMIN, T0, Clock, EdgeSite, Units
from tests.unit.cloud.parking.fakes import InMemoryParkingRepository

MIN = timedelta(minutes=1)


# --- occupancy ---------------------------------------------------------------------------------


async def test_a_sensor_report_names_a_new_bay_and_announces_its_state(parking: ParkingService, site: EdgeSite,
                                                                       units: Units) -> None:
    await site.occupancy("B1", "occupied", T0)
    [bay] = (await parking.bays(ADMIN, "site-1")).bays
    assert (bay.bay_id, bay.state, bay.changed_at, bay.type, bay.usage) == ("B1", "occupied", T0, None, None)
    assert units.events == [BayChanged(site_id="site-1", bay_id="B1", state="occupied", changed_at=T0)]


async def test_only_a_change_of_state_is_announced_and_a_late_older_report_changes_nothing(
        parking: ParkingService, site: EdgeSite, units: Units) -> None:
    await site.occupancy("B1", "occupied", T0)
    await site.occupancy("B1", "occupied", T0 + MIN)  # the same state again
    await site.occupancy("B1", "free", T0 + 10 * MIN)
    await site.occupancy("B1", "occupied", T0 + 5 * MIN)  # replayed from the site's outbox, late
    [bay] = (await parking.bays(ADMIN, "site-1")).bays
    assert (bay.state, bay.changed_at) == ("free", T0 + 10 * MIN)
    assert [(e.state, e.changed_at) for e in units.events if isinstance(e, BayChanged)] == [
        ("occupied", T0), ("free", T0 + 10 * MIN)]


# --- the inventory -------------------------------------------------------------------------------


async def test_an_inventory_lists_bays_and_chargers_before_any_sensor_reported(
        parking: ParkingService, site: EdgeSite, units: Units) -> None:
    await site.inventory()
    bays = (await parking.bays(ADMIN, "site-1")).model_dump(mode="json")
    assert bays == {"site_id": "site-1", "bays": [
        {"bay_id": "EV-1", "state": "unknown", "changed_at": None, "type": "ev", "charger_id": "CP-1",
         "connector_id": 1, "usage": None, "usage_since": None, "usage_transaction_id": None},
        {"bay_id": "EV-2", "state": "unknown", "changed_at": None, "type": "ev", "charger_id": "CP-1",
         "connector_id": 2, "usage": None, "usage_since": None, "usage_transaction_id": None},
        {"bay_id": "R-1", "state": "unknown", "changed_at": None, "type": "regular", "charger_id": None,
         "connector_id": None, "usage": None, "usage_since": None, "usage_transaction_id": None}]}
    chargers = (await parking.chargers(ADMIN, "site-1")).model_dump()
    assert chargers == {"site_id": "site-1", "chargers": [{"charger_id": "CP-1", "connectors": 2,
                                                          "max_power_w": 22_000}]}
    assert units.events == [InventoryChanged(site_id="site-1", bays=3, chargers=1, max_power_w=22_000)]


async def test_a_new_inventory_keeps_what_the_sensors_said_and_takes_missing_hardware_out_of_service(
        parking: ParkingService, site: EdgeSite, units: Units) -> None:
    await site.inventory(ts=T0)
    await site.occupancy("EV-1", "occupied", T0 + MIN)
    await site.inventory(InventoryBay(bay_id="EV-1", type="accessible", charger_id="CP-2", connector_id=1),
                         InventoryBay(bay_id="N-1", type="regular"),
                         chargers=(InventoryCharger(charger_id="CP-2", connectors=1),), ts=T0 + 2 * MIN)
    bays = {b.bay_id: b for b in (await parking.bays(ADMIN, "site-1")).bays}
    assert set(bays) == {"EV-1", "N-1"}, "bays the inventory no longer lists are not shown"
    assert (bays["EV-1"].state, bays["EV-1"].type, bays["EV-1"].charger_id) == ("occupied", "accessible", "CP-2")
    assert [c.charger_id for c in (await parking.chargers(ADMIN, "site-1")).chargers] == ["CP-2"]
    view = await parking.site(ADMIN, "site-1")
    assert (view.inventory.bays, view.inventory.chargers) == (2, 1)
    assert units.events[-1] == InventoryChanged(site_id="site-1", bays=2, chargers=1)  # CP-2's power unknown

    # the bay comes back with its history
    await site.inventory(ts=T0 + 3 * MIN)
    bays = {b.bay_id: b for b in (await parking.bays(ADMIN, "site-1")).bays}
    assert (bays["EV-1"].state, bays["EV-1"].changed_at) == ("occupied", T0 + MIN)
    assert set(bays) == {"EV-1", "EV-2", "R-1"}


async def test_an_inventory_older_than_the_one_mirrored_changes_nothing(
        parking: ParkingService, site: EdgeSite, units: Units) -> None:
    await site.inventory(power_limit_a=32.0, ts=T0)
    await site.inventory(InventoryBay(bay_id="X-1", type="regular"), power_limit_a=16.0, ts=T0 - 60 * MIN)
    assert [b.bay_id for b in (await parking.bays(ADMIN, "site-1")).bays] == ["EV-1", "EV-2", "R-1"]
    view = await parking.site(ADMIN, "site-1")
    assert (view.power.limit_a, view.inventory.received_at) == (32.0, T0)
    assert [type(e) for e in units.events] == [InventoryChanged], "only the mirrored one is announced"


# --- usage ---------------------------------------------------------------------------------------


async def test_idle_and_overstay_periods_are_listed_filtered_and_announced(
        parking: ParkingService, site: EdgeSite, units: Units) -> None:
    await site.inventory()
    await site.usage("EV-1", "blocked", T0)
    await site.usage("EV-1", "charging", T0 + 5 * MIN, 41)
    await site.usage("EV-2", "idle", T0 + 10 * MIN, 40)

    bays = {b.bay_id: b for b in (await parking.bays(ADMIN, "site-1")).bays}
    assert {k: b.usage for k, b in bays.items()} == {"EV-1": "charging", "EV-2": "idle", "R-1": None}
    assert (bays["EV-1"].usage_since, bays["EV-1"].usage_transaction_id) == (T0 + 5 * MIN, 41)
    assert bays["EV-1"].state == "unknown", "usage does not pretend to be the occupancy sensor"
    assert [b.bay_id for b in (await parking.bays(ADMIN, "site-1", ["blocked", "idle"])).bays] == ["EV-2"]
    assert [b.bay_id for b in (await parking.bays(ADMIN, "site-1", ["charging"])).bays] == ["EV-1"]

    usage_events = [e for e in units.events if not isinstance(e, InventoryChanged)]
    assert [e.NAME for e in usage_events] == ["parking.bay_idle_started", "parking.bay_idle_ended",
                                              "parking.bay_overstay_started"]
    started, ended = usage_events[0], usage_events[1]
    assert isinstance(started, BayIdleStarted) and isinstance(ended, BayIdleEnded)
    assert (ended.duration_s, ended.next_state, ended.charger_id, ended.connector_id) == (300, "charging", "CP-1", 1)

    await site.usage("EV-2", "free", T0 + 40 * MIN)
    overstay_ended = units.events[-1]
    assert isinstance(overstay_ended, BayOverstayEnded)
    assert (overstay_ended.transaction_id, overstay_ended.duration_s, overstay_ended.next_state) == (
        40, 30 * 60, "free")
    assert (overstay_ended.started_at, overstay_ended.ended_at) == (T0 + 10 * MIN, T0 + 40 * MIN)


async def test_a_repeated_or_older_usage_report_announces_nothing_new(
        parking: ParkingService, site: EdgeSite, units: Units) -> None:
    await site.inventory()
    await site.usage("EV-1", "idle", T0 + 60 * MIN, 41)
    await site.usage("EV-1", "idle", T0 + 60 * MIN, 41, ts=T0 + 61 * MIN)  # the edge restarted
    await site.usage("EV-1", "free", T0 + 90 * MIN)
    await site.usage("EV-1", "blocked", T0)  # a replayed backlog, late
    [ev1] = [b for b in (await parking.bays(ADMIN, "site-1")).bays if b.bay_id == "EV-1"]
    assert (ev1.usage, ev1.usage_since, ev1.usage_transaction_id) == ("free", T0 + 90 * MIN, None)
    assert [e.NAME for e in units.events if not isinstance(e, InventoryChanged)] == [
        "parking.bay_overstay_started", "parking.bay_overstay_ended"], "each period announced once"


async def test_usage_of_a_bay_nobody_described_yet_takes_its_charger_from_the_report(
        parking: ParkingService, site: EdgeSite) -> None:
    await site.usage("EV-9", "blocked", T0)
    [bay] = (await parking.bays(ADMIN, "site-1")).bays
    assert (bay.bay_id, bay.state, bay.changed_at, bay.charger_id, bay.usage) == ("EV-9", "unknown", None, "CP-1",
                                                                                  "blocked")


# --- reads ---------------------------------------------------------------------------------------


async def test_an_unknown_site_has_no_bays_chargers_or_availability(parking: ParkingService) -> None:
    for read in (parking.bays, parking.chargers, parking.availability):
        with pytest.raises(NotFound) as refused:
            await read(ADMIN, "nowhere")
        assert refused.value.code == "unknown_site"


async def test_a_site_whose_chargers_are_all_gone_has_none_to_list(parking: ParkingService, site: EdgeSite) -> None:
    await site.inventory(ts=T0)
    await site.inventory(chargers=(), ts=T0 + MIN)
    with pytest.raises(NotFound, match="no charger stations"):
        await parking.chargers(ADMIN, "site-1")


async def test_availability_counts_bays_in_service_by_state(parking: ParkingService, site: EdgeSite) -> None:
    await site.inventory()
    await site.occupancy("EV-1", "occupied", T0)
    await site.occupancy("R-1", "free", T0)
    assert (await parking.availability(ADMIN, "site-1")).model_dump() == {
        "site_id": "site-1", "total": 3, "free": 1, "occupied": 1, "unknown": 1}


async def test_availability_is_cached_briefly_and_a_site_message_refreshes_it(
        parking: ParkingService, site: EdgeSite, repo: InMemoryParkingRepository, clock: Clock) -> None:
    await site.occupancy("B1", "free", T0)
    assert (await parking.availability(ADMIN, "site-1")).free == 1
    # a change behind the service's back (another replica's database write) is not seen while cached
    repo.bays[("site-1", "B1")].state = "occupied"
    assert (await parking.availability(ADMIN, "site-1")).free == 1
    clock.now += AVAILABILITY_TTL_SECONDS + 0.1
    assert (await parking.availability(ADMIN, "site-1")).occupied == 1

    await parking.availability(ADMIN, "site-1")
    await site.occupancy("B1", "free", T0 + MIN)  # this replica's own message drops the cached answer
    assert (await parking.availability(ADMIN, "site-1")).free == 1
