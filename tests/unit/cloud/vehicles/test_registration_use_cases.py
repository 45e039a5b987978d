"""Registering vehicles and reading them back: the registry's REST use cases."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cloud.contracts.errors import Conflict, NotFound
from cloud.contracts.vehicles import VehicleRegistered
from cloud.vehicles.domain import InvalidVehicle, RegisterVehicle
from cloud.vehicles.service import VehicleService
from mqtt import Envelope, SiteHello
from tests.support.identity import PRINCIPALS
from tests.support.uow import MemoryUnits
from tests.unit.cloud.vehicles.fakes import InMemoryVehicleRepository

Units = MemoryUnits[InMemoryVehicleRepository]
DRIVER = PRINCIPALS["driver_a"]


async def hello(registry: VehicleService, units: Units, site_id: str, version: int = 0) -> None:
    async with units() as uow:
        await registry.on_site_message(uow, Envelope.wrap(site_id, 1, SiteHello(edge_version="t",
                                                                                 authlist_version=version)))


async def test_a_registered_vehicle_reads_back_with_its_plate_normalised_and_id_tags_accepted(
        registry: VehicleService) -> None:
    view = await registry.register(DRIVER, RegisterVehicle(plate=" ev-123  pk", id_tags=("T2", "T1"), make="Renault"))
    assert view.model_dump(exclude={"vehicle_id", "created_at", "updated_at", "registrations"}) == {
        "plate": "EV-123 PK", "type": "electric", "make": "Renault", "model": None, "vehicle_type_id": None,
        "battery_kwh": None, "connector_types": [], "version": 1, "sites": [], "owner_id": "acc-driver-a",
        "id_tags": [{"id_tag": "T1", "status": "Accepted", "blocked_reason": None},
                    {"id_tag": "T2", "status": "Accepted", "blocked_reason": None}]}
    assert [(r.plate, r.owner_id, r.ended_at) for r in view.registrations] == [("EV-123 PK", "acc-driver-a", None)]
    assert view.created_at.utcoffset() is not None, "times are UTC with their offset"
    assert await registry.get(DRIVER, view.vehicle_id) == view


async def test_registering_publishes_vehicle_registered_with_plate_id_tags_and_owner(registry: VehicleService,
                                                                                    units: Units) -> None:
    view = await registry.register(DRIVER, RegisterVehicle(plate="ab 1", id_tags=("T1", "T2")))
    assert units.events == [VehicleRegistered(vehicle_id=view.vehicle_id, plate="AB 1", id_tags=["T1", "T2"],
                                              owner_id="acc-driver-a", type="electric")]
    assert units.events[0].VERSION == "1.3"


async def test_vehicle_registered_carries_the_make_model_and_battery_as_registered(registry: VehicleService,
                                                                                   units: Units) -> None:
    view = await registry.register(DRIVER, RegisterVehicle(plate="K1", id_tags=("T1",), make="Kia", model="EV6",
                                                           battery_kwh=Decimal("77.40")))
    assert units.events == [VehicleRegistered(vehicle_id=view.vehicle_id, plate="K1", id_tags=["T1"],
                                              owner_id="acc-driver-a", type="electric", make="Kia", model="EV6",
                                              battery_kwh=Decimal("77.4"))]


async def test_registering_wakes_the_authorization_sync(registry: VehicleService) -> None:
    registry.sync_wanted.clear()
    await registry.register(DRIVER, RegisterVehicle(plate="A1", id_tags=("T1",)))
    assert registry.sync_wanted.is_set()


async def test_a_taken_plate_is_a_conflict_and_changes_nothing(registry: VehicleService, units: Units) -> None:
    await registry.register(DRIVER, RegisterVehicle(plate="A1", id_tags=("T1",)))
    with pytest.raises(Conflict) as refused:
        await registry.register(DRIVER, RegisterVehicle(plate="a1", id_tags=("T2",)))
    assert refused.value.code == "plate_taken"
    assert units.names() == ["vehicle.registered"]
    assert await units.repo.taken_id_tags(["T2"]) == []


async def test_an_id_tag_of_another_vehicle_is_a_conflict_naming_it(registry: VehicleService, units: Units) -> None:
    await registry.register(DRIVER, RegisterVehicle(plate="A1", id_tags=("T1",)))
    with pytest.raises(Conflict, match="T1") as refused:
        await registry.register(DRIVER, RegisterVehicle(plate="B2", id_tags=("T9", "T1")))
    assert refused.value.code == "id_tag_taken"
    assert units.names() == ["vehicle.registered"]
    assert await registry.find_by_plate(DRIVER, "B2") == []


async def test_an_invalid_registration_is_refused_before_anything_is_stored(registry: VehicleService,
                                                                           units: Units) -> None:
    with pytest.raises(InvalidVehicle) as plate:
        await registry.register(DRIVER, RegisterVehicle(plate="AB$1", id_tags=("T1",)))
    assert plate.value.code == "invalid_plate"
    with pytest.raises(InvalidVehicle) as tags:
        await registry.register(DRIVER, RegisterVehicle(plate="AB1", id_tags=("has space",)))
    assert tags.value.code == "invalid_id_tags"
    assert units.commits == 0
    assert units.events == []


async def test_an_unknown_vehicle_is_not_found(registry: VehicleService) -> None:
    with pytest.raises(NotFound) as missing:
        await registry.get(DRIVER, "nope")
    assert missing.value.code == "unknown_vehicle"


async def test_a_vehicle_is_found_by_its_plate_however_it_is_typed(registry: VehicleService) -> None:
    view = await registry.register(DRIVER, RegisterVehicle(plate="EV 123", id_tags=("T1",)))
    assert [v.vehicle_id for v in await registry.find_by_plate(DRIVER, "ev   123")] == [view.vehicle_id]
    assert [v.vehicle_id for v in await registry.find_by_plate(DRIVER, "EV-123")] == [view.vehicle_id], \
        "case, spaces and dashes do not tell two plates apart"
    with pytest.raises(Conflict):
        await registry.register(DRIVER, RegisterVehicle(plate="ev123", id_tags=("T2",)))


async def test_each_known_site_says_whether_it_can_authorize_the_vehicle_offline(registry: VehicleService,
                                                                                units: Units) -> None:
    await hello(registry, units, "site-b")
    first = await registry.register(DRIVER, RegisterVehicle(plate="A1", id_tags=("T1",)))
    await hello(registry, units, "site-a", version=1)  # site-a has every change up to version 1
    second = await registry.register(DRIVER, RegisterVehicle(plate="B2", id_tags=("T2",)))
    assert (await registry.get(DRIVER, first.vehicle_id)).model_dump()["sites"] == [
        {"site_id": "site-a", "authorization_synced": True}, {"site_id": "site-b", "authorization_synced": False}]
    assert [s.authorization_synced for s in (await registry.get(DRIVER, second.vehicle_id)).sites] == [False, False]
