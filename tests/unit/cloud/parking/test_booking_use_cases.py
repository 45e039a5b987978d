"""The booking use cases on an in-memory repository, with a clock the test moves: reserving,
releasing, the deadlines (no-show, overstay) and the chargers' reservations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloud.contracts.errors import Conflict, NotFound
from cloud.contracts.vehicles import VehicleRegistered
from cloud.parking.booking import InvalidField, Vehicle
from cloud.parking.booking_service import BookingService
from cloud.parking.domain import Bay
from cloud.platform.cache import MemoryCache
from mqtt import BayOccupancy, CommandResult, CommandStatus, Envelope
from tests.support.commands import RecordingSender
from tests.support.events import received
from tests.support.identity import PRINCIPALS
from tests.support.uow import MemoryUnits
from tests.unit.cloud.parking.booking_fakes import InMemoryBookingRepository

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
DRIVER_A = PRINCIPALS["driver_a"]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def world() -> tuple[BookingService, MemoryUnits[InMemoryBookingRepository], Clock]:
    repo = InMemoryBookingRepository()
    repo.sites["s1"] = [0, 0]
    for bay_id, kind, charger in (("EV-1", "ev", "CP-1"), ("R-1", "regular", None)):
        bay = Bay.sensed("s1", BayOccupancy(bay_id=bay_id, state="free", changed_at=T0), T0)
        bay.type, bay.charger_id, bay.connector_id = kind, charger, 1 if charger else None
        repo.bays[("s1", bay_id)] = bay
    repo.vehicles["veh-a"] = Vehicle("veh-a", "electric", DRIVER_A.subject, "TAG-A")
    units = MemoryUnits(repo)
    clock = Clock()
    return BookingService(units, MemoryCache(), clock=clock), units, clock


async def test_a_refused_reserve_stores_nothing(world: tuple[BookingService, MemoryUnits[InMemoryBookingRepository],
                                                             Clock]) -> None:
    service, units, _ = world
    with pytest.raises(InvalidField):
        await service.reserve(DRIVER_A, vehicle_id="veh-a", site_id="s1", bay_id=None, bay_type="ev",
                              starts_at=T0 + 60 * MIN, ends_at=T0 + 30 * MIN)
    with pytest.raises(NotFound):
        await service.reserve(PRINCIPALS["driver_b"], vehicle_id="veh-a", site_id="s1", bay_id=None, bay_type="ev",
                              starts_at=T0 + 60 * MIN, ends_at=T0 + 90 * MIN)
    assert (units.repo.reservations, units.events, units.repo.sites["s1"]) == ({}, [], [0, 0])


async def test_a_reservation_nobody_comes_for_is_a_no_show_and_its_charger_reservation_cancelled(
        world: tuple[BookingService, MemoryUnits[InMemoryBookingRepository], Clock]) -> None:
    service, units, clock = world
    made = await service.reserve(DRIVER_A, vehicle_id="veh-a", site_id="s1", bay_id="EV-1", bay_type=None,
                                 starts_at=T0 + 10 * MIN, ends_at=T0 + 70 * MIN)
    sender = RecordingSender()
    await service.tick(sender)
    assert sender.commands == [], "ReserveNow waits for the lead time"
    clock.now = T0 + 5 * MIN
    await service.tick(sender)
    [reserve_now] = sender.commands
    assert (reserve_now.type, reserve_now.body["connector_id"], reserve_now.body["id_tag"]) == (
        "charger.reserve", 1, "TAG-A")
    assert reserve_now.body["expiry_date"].startswith("2026-12-02T09:25")  # start + 15 min grace
    async with units() as uow:
        await service.on_site_message(uow, Envelope.wrap("s1", 1, CommandResult(
            command_id=reserve_now.id, command_type=reserve_now.type, status=CommandStatus.ACCEPTED,
            detail="charger answered Accepted")))
    assert units.repo.reservations[made.reservation_id].charger_status == "Accepted"
    clock.now = T0 + 25 * MIN
    await service.tick(sender)
    assert units.repo.reservations[made.reservation_id].status == "reserved", "still within the grace"
    clock.now = T0 + 26 * MIN
    await service.tick(sender)
    assert units.repo.reservations[made.reservation_id].status == "no_show"
    assert [c.type for c in sender.commands] == ["charger.reserve", "charger.cancel_reservation"]
    assert units.names() == ["parking.reserved", "parking.no_show"]


async def test_a_stay_past_the_lot_s_maximum_is_an_overstay_once(
        world: tuple[BookingService, MemoryUnits[InMemoryBookingRepository], Clock]) -> None:
    service, units, clock = world
    async with units() as uow:
        await service.on_site_message(uow, Envelope.wrap("s1", 1, BayOccupancy(bay_id="R-1", state="occupied",
                                                                             changed_at=T0)))
    clock.now = T0 + timedelta(hours=24, minutes=1)
    await service.tick(None)
    await service.tick(None)
    assert units.names() == ["parking.arrived", "parking.overstay"]
    status = await service.status(DRIVER_A, "s1")
    assert next(s for s in status.slots if s.bay_id == "R-1").usage == "overstay"


async def test_releasing_twice_is_a_conflict_and_a_redelivered_vehicle_event_changes_nothing(
        world: tuple[BookingService, MemoryUnits[InMemoryBookingRepository], Clock]) -> None:
    service, units, _ = world
    event = received(VehicleRegistered(vehicle_id="veh-x", plate="X", id_tags=["TAG-X"], owner_id=DRIVER_A.subject,
                                       type="combustion"))
    await service.on_vehicle_registered(event)
    units.repo.vehicles["veh-x"].type = "electric"  # a later change the redelivery must not undo
    await service.on_vehicle_registered(event)
    assert units.repo.vehicles["veh-x"].type == "electric"
    made = await service.reserve(DRIVER_A, vehicle_id="veh-x", site_id="s1", bay_id=None, bay_type="regular",
                                 starts_at=T0 + 60 * MIN, ends_at=T0 + 90 * MIN)
    await service.release(DRIVER_A, reservation_id=made.reservation_id, vehicle_id=None)
    with pytest.raises(Conflict):
        await service.release(DRIVER_A, reservation_id=made.reservation_id, vehicle_id=None)
