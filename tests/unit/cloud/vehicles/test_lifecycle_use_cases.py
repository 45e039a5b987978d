"""A vehicle changed (PUT, over its version), deleted, searched; the vehicle-type catalogue."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from cloud.contracts.errors import Conflict, NotFound
from cloud.contracts.identity import Forbidden
from cloud.contracts.vehicles import VehicleDeleted, VehicleRegistered, VehicleUpdated
from cloud.vehicles.domain import InvalidVehicle, RegisterVehicle, UpdateVehicle, VehicleType
from cloud.vehicles.repository import SearchFilters
from cloud.vehicles.service import VehicleService
from mqtt import IdTagStatus
from tests.support.identity import PRINCIPALS
from tests.support.uow import MemoryUnits
from tests.unit.cloud.vehicles.conftest import Clock
from tests.unit.cloud.vehicles.fakes import InMemoryVehicleRepository

Units = MemoryUnits[InMemoryVehicleRepository]
A, B, OPERATOR, TECHNICIAN, ADMIN = (PRINCIPALS[w] for w in ("driver_a", "driver_b", "operator_1", "technician_1",
                                                             "admin"))
ZOE = VehicleType(type_id="zoe", make="Renault", model="Zoe", battery_kwh=Decimal("52.0"), max_ac_kw=Decimal("22.0"),
                  max_dc_kw=Decimal("50.0"), connector_types=("type2", "ccs2"), source="Renault press kit")


def put(version: int, plate: str = "A1", *tags: str, **fields: object) -> UpdateVehicle:
    return UpdateVehicle(version=version, plate=plate, id_tags=tags, **fields)  # type: ignore[arg-type]


async def test_a_full_update_replaces_the_vehicle_and_withdraws_the_id_tags_it_drops(
        registry: VehicleService, units: Units, clock: Clock) -> None:
    view = await registry.register(A, RegisterVehicle(plate="A1", id_tags=("OLD", "KEEP")))
    before = len(units.repo.changes)
    after = await registry.update(A, view.vehicle_id, put(1, "A1", "KEEP", "NEW", make="Renault", model="Zoe",
                                                          battery_kwh=Decimal("52")))
    assert (after.version, after.make, after.battery_kwh) == (2, "Renault", Decimal("52"))
    assert [t.id_tag for t in after.id_tags] == ["KEEP", "NEW"]
    assert {(c.id_tag, c.status) for c in units.repo.changes[before:]} == {
        ("NEW", IdTagStatus.ACCEPTED), ("OLD", IdTagStatus.INVALID)}, "every site withdraws OLD, learns NEW"
    assert units.events[-1] == VehicleUpdated(vehicle_id=view.vehicle_id, plate="A1", id_tags=["KEEP", "NEW"],
                                              owner_id=A.subject, type="electric", version=2, make="Renault",
                                              model="Zoe", battery_kwh=Decimal("52.0"))
    assert units.events[-1].VERSION == "1.1"


async def test_a_stale_version_is_a_conflict_and_changes_nothing(registry: VehicleService, units: Units) -> None:
    view = await registry.register(A, RegisterVehicle(plate="A1", id_tags=("T1",)))
    await registry.update(A, view.vehicle_id, put(1, "A1", "T1", make="Fiat"))
    with pytest.raises(Conflict) as stale:
        await registry.update(A, view.vehicle_id, put(1, "A1", "T1", make="Renault"))
    assert stale.value.code == "stale_version"
    assert (await registry.get(A, view.vehicle_id)).make == "Fiat"


async def test_an_update_to_a_plate_or_id_tag_of_another_vehicle_is_a_conflict(registry: VehicleService) -> None:
    await registry.register(A, RegisterVehicle(plate="AB-12", id_tags=("CARD",)))
    mine = await registry.register(A, RegisterVehicle(plate="CD 34", id_tags=("OTHER",)))
    with pytest.raises(Conflict) as plate:
        await registry.update(A, mine.vehicle_id, put(1, "ab12", "OTHER"))
    assert plate.value.code == "plate_taken"
    with pytest.raises(Conflict) as tag:
        await registry.update(A, mine.vehicle_id, put(1, "CD 34", "card"))
    assert tag.value.code == "id_tag_taken", "idTags are case-insensitive"


async def test_only_the_owner_or_an_admin_changes_and_only_an_admin_transfers(registry: VehicleService) -> None:
    view = await registry.register(A, RegisterVehicle(plate="A1", id_tags=("T1",)))
    with pytest.raises(NotFound):
        await registry.update(B, view.vehicle_id, put(1, "A1", "T1"))
    for who in (OPERATOR, TECHNICIAN):
        with pytest.raises(Forbidden):
            await registry.update(who, view.vehicle_id, put(1, "A1", "T1"))
        with pytest.raises(Forbidden):
            await registry.delete(who, view.vehicle_id)
    with pytest.raises(Forbidden):
        await registry.update(A, view.vehicle_id, put(1, "A1", "T1", owner_id=B.subject))
    moved = await registry.update(ADMIN, view.vehicle_id, put(1, "A1", "T1", owner_id=B.subject))
    assert moved.owner_id == B.subject
    assert [(r.owner_id, r.ended_because) for r in moved.registrations] == [(A.subject, "owner_changed"),
                                                                            (B.subject, None)]
    with pytest.raises(NotFound):
        await registry.get(A, view.vehicle_id)


async def test_a_vehicle_that_does_not_plug_in_has_no_id_tags(registry: VehicleService) -> None:
    with pytest.raises(InvalidVehicle) as refused:
        await registry.register(A, RegisterVehicle(plate="C1", kind="combustion", id_tags=("T1",)))
    assert refused.value.field == "id_tags"
    car = await registry.register(A, RegisterVehicle(plate="C1", kind="combustion"))
    assert (car.type, car.id_tags) == ("combustion", [])


@pytest.mark.parametrize("command, field", [
    (RegisterVehicle(plate="A1", kind="steam"), "type"),
    (RegisterVehicle(plate="A1", battery_kwh=Decimal("-1")), "battery_kwh"),
    (RegisterVehicle(plate="A1", make="Re\x00nault"), "make"),
    (RegisterVehicle(plate="A\x001"), "plate"),
    (RegisterVehicle(plate="A1", connector_types=("schuko",)), "connector_types"),
    (RegisterVehicle(plate="A1", vehicle_type_id="no-such-type"), "vehicle_type_id"),
])
async def test_bad_fields_are_refused_naming_the_field(registry: VehicleService, units: Units,
                                                       command: RegisterVehicle, field: str) -> None:
    with pytest.raises(InvalidVehicle) as refused:
        await registry.register(A, command)
    assert refused.value.field == field
    assert units.events == []


async def test_a_catalogue_entry_fills_what_the_registration_leaves_out(registry: VehicleService,
                                                                        units: Units) -> None:
    await registry.add_type(ADMIN, ZOE)
    view = await registry.register(A, RegisterVehicle(plate="Z1", vehicle_type_id="zoe", id_tags=("T1",),
                                                      model="Zoe R110"))
    assert (view.make, view.model, view.battery_kwh, view.connector_types) == (
        "Renault", "Zoe R110", Decimal("52.0"), ["type2", "ccs2"])
    registered = units.events[-1]
    assert isinstance(registered, VehicleRegistered)
    assert (registered.make, registered.model, registered.battery_kwh) == ("Renault", "Zoe R110", Decimal("52.0"))


async def test_vehicle_updated_carries_the_make_and_battery_of_its_new_catalogue_entry(
        registry: VehicleService, units: Units) -> None:
    await registry.add_type(ADMIN, ZOE)
    view = await registry.register(A, RegisterVehicle(plate="Z1", id_tags=("T1",), make="Fiat",
                                                      battery_kwh=Decimal("42")))
    await registry.update(A, view.vehicle_id, put(1, "Z1", "T1", vehicle_type_id="zoe"))
    updated = units.events[-1]
    assert isinstance(updated, VehicleUpdated)
    assert (updated.make, updated.model, updated.battery_kwh) == ("Renault", "Zoe", Decimal("52.0"))
    await registry.update(A, view.vehicle_id, put(2, "Z1", "T1"))
    cleared = units.events[-1]
    assert isinstance(cleared, VehicleUpdated)
    assert (cleared.make, cleared.model, cleared.battery_kwh) == (None, None, None), "left out, no entry: not known"


async def test_deleting_withdraws_every_id_tag_and_frees_the_plate(registry: VehicleService, units: Units) -> None:
    view = await registry.register(A, RegisterVehicle(plate="A1", id_tags=("T1", "T2")))
    with pytest.raises(NotFound):
        await registry.delete(B, view.vehicle_id)
    await registry.delete(A, view.vehicle_id)
    assert [(c.id_tag, c.status) for c in units.repo.changes[-2:]] == [("T1", IdTagStatus.INVALID),
                                                                        ("T2", IdTagStatus.INVALID)]
    assert units.events[-1] == VehicleDeleted(vehicle_id=view.vehicle_id, plate="A1", id_tags=["T1", "T2"],
                                              owner_id=A.subject, type="electric")
    assert await units.repo.all_id_tags() == []
    with pytest.raises(NotFound):
        await registry.get(A, view.vehicle_id)
    with pytest.raises(NotFound):
        await registry.delete(A, view.vehicle_id)
    assert (await registry.register(A, RegisterVehicle(plate="a-1", id_tags=("t1",)))).plate == "A-1"
    assert [r.ended_because for r in units.repo.history if r.vehicle_id == view.vehicle_id] == ["deleted"]


async def test_a_driver_searches_their_own_an_operator_everyones_without_id_tags(registry: VehicleService) -> None:
    await registry.register(A, RegisterVehicle(plate="A1", id_tags=("TA",), make="Renault"))
    await registry.register(A, RegisterVehicle(plate="A2", kind="hybrid", make="Toyota"))
    await registry.register(B, RegisterVehicle(plate="B1", id_tags=("TB",), make="renault"))
    electric = SearchFilters(kind="electric")
    assert [v.plate for v in (await registry.search(A, electric, limit=10, offset=0)).vehicles] == ["A1"]
    seen = await registry.search(OPERATOR, electric, limit=10, offset=0)
    assert [(v.plate, v.id_tags) for v in seen.vehicles] == [("A1", None), ("B1", None)]
    by_owner = await registry.search(ADMIN, SearchFilters(owner_id=B.subject), limit=10, offset=0)
    assert [v.plate for v in by_owner.vehicles] == ["B1"]
    assert [v.plate for v in (await registry.search(ADMIN, SearchFilters(make="RENAULT"), limit=1,
                                                    offset=1)).vehicles] == ["B1"]
    with pytest.raises(Forbidden):
        await registry.search(A, SearchFilters(owner_id=B.subject), limit=10, offset=0)
    with pytest.raises(Forbidden):
        await registry.search(TECHNICIAN, electric, limit=10, offset=0)


async def test_a_popular_search_is_cached_until_the_registry_changes(registry: VehicleService, units: Units) -> None:
    await registry.register(A, RegisterVehicle(plate="A1", id_tags=("TA",)))
    asked = 0
    search = units.repo.search

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal asked
        asked += 1
        return await search(*args, **kwargs)

    units.repo.search = counted  # type: ignore[method-assign]
    query = SearchFilters(kind="electric")
    for _ in range(4):
        assert (await registry.search(ADMIN, query, limit=10, offset=0)).total == 1
    assert asked == 2, "asked twice, it is popular: the next answers come from the cache"
    await registry.register(B, RegisterVehicle(plate="B1", id_tags=("TB",)))
    assert (await registry.search(ADMIN, query, limit=10, offset=0)).total == 2, "a change drops cached pages"
    assert (await registry.search(A, query, limit=10, offset=0)).total == 1, "a cached page never crosses callers"


async def test_only_an_admin_edits_the_catalogue_over_its_version(registry: VehicleService) -> None:
    with pytest.raises(Forbidden):
        await registry.add_type(A, ZOE)
    added = await registry.add_type(ADMIN, ZOE)
    assert added.version == 1
    with pytest.raises(Conflict):
        await registry.add_type(ADMIN, ZOE)
    changed = await registry.update_type(ADMIN, "zoe", VehicleType(
        type_id="zoe", make="Renault", model="Zoe", battery_kwh=Decimal("54.7"), max_ac_kw=None, max_dc_kw=None,
        connector_types=("type2",), version=1))
    assert (changed.version, changed.battery_kwh) == (2, Decimal("54.7"))
    with pytest.raises(Conflict):
        await registry.update_type(ADMIN, "zoe", VehicleType(
            type_id="zoe", make="Renault", model="Zoe", battery_kwh=None, max_ac_kw=None, max_dc_kw=None,
            connector_types=(), version=1))
    with pytest.raises(NotFound):
        await registry.get_type(A, "nope")
    assert [t.type_id for t in await registry.types(OPERATOR)] == ["zoe"]


async def test_an_id_tag_written_in_another_case_replaces_the_old_spelling(registry: VehicleService,
                                                                           units: Units) -> None:
    view = await registry.register(A, RegisterVehicle(plate="A1", id_tags=("card-a",)))
    before = len(units.repo.changes)
    after = await registry.update(A, view.vehicle_id, put(1, "A1", "CARD-A"))
    assert [t.id_tag for t in after.id_tags] == ["CARD-A"]
    assert [(c.id_tag, c.status) for c in units.repo.changes[before:]] == [
        ("card-a", IdTagStatus.INVALID), ("CARD-A", IdTagStatus.ACCEPTED)]
