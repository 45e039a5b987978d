"""Who may register, read and look up vehicles: every use case with each kind of caller.

The expected answers are written out per caller, not derived from the rules under test.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cloud.contracts.errors import NotFound
from cloud.contracts.identity import Forbidden
from cloud.vehicles.domain import IdTag, RegisterVehicle, Vehicle
from cloud.vehicles.service import VehicleService
from cloud.vehicles.views import VehicleView
from mqtt import IdTagStatus
from tests.support.identity import PRINCIPALS
from tests.support.uow import MemoryUnits
from tests.unit.cloud.vehicles.fakes import InMemoryVehicleRepository

Units = MemoryUnits[InMemoryVehicleRepository]

REGISTER = {  # caller → the owner id the new vehicle gets, or "403"
    "driver_a": "acc-driver-a",
    "driver_b": "acc-driver-b",
    "operator_1": "403",
    "operator_2": "403",
    "technician_1": "403",
    "admin": "acc-admin",
}

READ_DRIVER_A_VEHICLE = {  # caller → GET /vehicles/{id of driver A's vehicle}
    "driver_a": "200",
    "driver_b": "404",
    "operator_1": "404",
    "operator_2": "404",
    "technician_1": "404",
    "admin": "200",
}

READ_UNOWNED_VEHICLE = {  # caller → GET /vehicles/{id of a vehicle registered before ownership}
    "driver_a": "404",
    "driver_b": "404",
    "operator_1": "404",
    "operator_2": "404",
    "technician_1": "404",
    "admin": "200",
}

FIND_DRIVER_A_PLATE = {  # caller → GET /vehicles?plate=<driver A's plate>
    "driver_a": "found",
    "driver_b": "empty",
    "operator_1": "403",
    "operator_2": "403",
    "technician_1": "403",
    "admin": "found",
}

FIND_UNOWNED_PLATE = {  # caller → GET /vehicles?plate=<plate of a vehicle registered before ownership>
    "driver_a": "empty",
    "driver_b": "empty",
    "operator_1": "403",
    "operator_2": "403",
    "technician_1": "403",
    "admin": "found",
}


def test_every_kind_of_caller_has_an_expected_answer() -> None:
    for table in (REGISTER, READ_DRIVER_A_VEHICLE, READ_UNOWNED_VEHICLE, FIND_DRIVER_A_PLATE, FIND_UNOWNED_PLATE):
        assert set(table) == set(PRINCIPALS)


async def driver_a_vehicle(registry: VehicleService) -> VehicleView:
    return await registry.register(PRINCIPALS["driver_a"], RegisterVehicle(plate="EV 1", id_tags=("CARD-A",)))


async def unowned_vehicle(units: Units) -> Vehicle:
    """A vehicle registered before vehicles had owners (owner_id NULL after migration 0003)."""
    now = datetime(2025, 6, 1, tzinfo=UTC)
    vehicle = Vehicle(vehicle_id="legacy-1", plate="OLD 1", make=None, model=None, created_at=now,
                      id_tags=[IdTag(id_tag="CARD-OLD", vehicle_id="legacy-1", status=IdTagStatus.ACCEPTED,
                                     created_at=now)])
    await units.repo.add(vehicle, [])
    return vehicle


@pytest.mark.parametrize("who", sorted(REGISTER))
async def test_register(registry: VehicleService, units: Units, who: str) -> None:
    command = RegisterVehicle(plate="ab 1", id_tags=("T1",))
    if REGISTER[who] == "403":
        with pytest.raises(Forbidden, match="driver or an admin"):
            await registry.register(PRINCIPALS[who], command)
        assert units.repo.vehicles == {} and units.events == [] and units.repo.changes == []
        return
    view = await registry.register(PRINCIPALS[who], command)
    assert view.owner_id == REGISTER[who]
    assert units.repo.vehicles[view.vehicle_id].owner_id == REGISTER[who]
    [event] = units.events
    assert event.model_dump()["owner_id"] == REGISTER[who]


async def test_the_role_is_checked_before_the_body(registry: VehicleService) -> None:
    with pytest.raises(Forbidden):
        await registry.register(PRINCIPALS["operator_1"], RegisterVehicle(plate="AB$1", id_tags=()))


@pytest.mark.parametrize("who", sorted(READ_DRIVER_A_VEHICLE))
async def test_read_driver_a_vehicle(registry: VehicleService, who: str) -> None:
    mine = await driver_a_vehicle(registry)
    if READ_DRIVER_A_VEHICLE[who] == "404":
        with pytest.raises(NotFound) as hidden:
            await registry.get(PRINCIPALS[who], mine.vehicle_id)
        with pytest.raises(NotFound) as unknown:
            await registry.get(PRINCIPALS[who], "no-such-vehicle")
        assert (hidden.value.code, hidden.value.detail) == (
            unknown.value.code, unknown.value.detail.replace("no-such-vehicle", mine.vehicle_id)), \
            "another's vehicle is answered exactly as an unknown one"
        assert hidden.value.detail == f"no vehicle {mine.vehicle_id!r}"
        return
    assert await registry.get(PRINCIPALS[who], mine.vehicle_id) == mine


@pytest.mark.parametrize("who", sorted(READ_UNOWNED_VEHICLE))
async def test_read_unowned_vehicle(registry: VehicleService, units: Units, who: str) -> None:
    legacy = await unowned_vehicle(units)
    if READ_UNOWNED_VEHICLE[who] == "404":
        with pytest.raises(NotFound) as hidden:
            await registry.get(PRINCIPALS[who], legacy.vehicle_id)
        assert (hidden.value.code, hidden.value.detail) == ("unknown_vehicle", "no vehicle 'legacy-1'")
        return
    view = await registry.get(PRINCIPALS[who], legacy.vehicle_id)
    assert (view.plate, view.owner_id) == ("OLD 1", None)


@pytest.mark.parametrize("who", sorted(FIND_DRIVER_A_PLATE))
async def test_find_driver_a_plate(registry: VehicleService, who: str) -> None:
    mine = await driver_a_vehicle(registry)
    if FIND_DRIVER_A_PLATE[who] == "403":
        with pytest.raises(Forbidden, match="driver or an admin"):
            await registry.find_by_plate(PRINCIPALS[who], "ev 1")
        with pytest.raises(Forbidden):  # refused for the role, before the plate is even read
            await registry.find_by_plate(PRINCIPALS[who], "AB$1")
        return
    found = await registry.find_by_plate(PRINCIPALS[who], "ev 1")
    assert found == ([mine] if FIND_DRIVER_A_PLATE[who] == "found" else [])


@pytest.mark.parametrize("who", sorted(FIND_UNOWNED_PLATE))
async def test_find_unowned_plate(registry: VehicleService, units: Units, who: str) -> None:
    await unowned_vehicle(units)
    if FIND_UNOWNED_PLATE[who] == "403":
        with pytest.raises(Forbidden):
            await registry.find_by_plate(PRINCIPALS[who], "OLD 1")
        return
    found = await registry.find_by_plate(PRINCIPALS[who], "old 1")
    assert [v.vehicle_id for v in found] == (["legacy-1"] if FIND_UNOWNED_PLATE[who] == "found" else [])


async def test_each_driver_sees_only_their_own_vehicles(registry: VehicleService) -> None:
    a = await registry.register(PRINCIPALS["driver_a"], RegisterVehicle(plate="A1", id_tags=("TA",)))
    b = await registry.register(PRINCIPALS["driver_b"], RegisterVehicle(plate="B1", id_tags=("TB",)))
    driver_a, driver_b, admin = PRINCIPALS["driver_a"], PRINCIPALS["driver_b"], PRINCIPALS["admin"]
    assert [v.vehicle_id for v in await registry.find_by_plate(driver_a, "A1")] == [a.vehicle_id]
    assert await registry.find_by_plate(driver_a, "B1") == []
    assert [v.vehicle_id for v in await registry.find_by_plate(driver_b, "B1")] == [b.vehicle_id]
    assert await registry.find_by_plate(driver_b, "A1") == []
    assert (await registry.get(admin, a.vehicle_id)).owner_id == "acc-driver-a"
    assert (await registry.get(admin, b.vehicle_id)).owner_id == "acc-driver-b"


async def test_an_admin_registers_a_vehicle_of_their_own(registry: VehicleService) -> None:
    view = await registry.register(PRINCIPALS["admin"], RegisterVehicle(plate="ADM 1", id_tags=("TX",)))
    assert view.owner_id == "acc-admin"
    with pytest.raises(NotFound):
        await registry.get(PRINCIPALS["driver_a"], view.vehicle_id)
    assert await registry.find_by_plate(PRINCIPALS["driver_a"], "ADM 1") == []
