"""Learning which vehicle an idTag belongs to, and whose the vehicle is, from the vehicle service's
events, once per event."""

from __future__ import annotations

import pytest

from cloud.charging import events
from cloud.contracts.errors import NotFound
from tests.support.identity import PRINCIPALS
from tests.unit.cloud.charging.conftest import ADMIN, OWNER, Charging, registered, started


async def test_a_registered_vehicle_becomes_known_with_an_empty_history(charging: Charging) -> None:
    with pytest.raises(NotFound):
        await charging.service.history(OWNER, "veh-1", limit=10, offset=0)
    await charging.service.on_vehicle_registered(registered("veh-1", "TAG1", "TAG2"))
    assert (await charging.service.history(OWNER, "veh-1", limit=10, offset=0)).sessions == []
    assert charging.repo.owners == {"TAG1": "veh-1", "TAG2": "veh-1"}


async def test_an_event_delivered_twice_is_handled_once(charging: Charging) -> None:
    first = registered("veh-old", "CARD1")
    await charging.service.on_vehicle_registered(first)
    await charging.service.on_vehicle_registered(registered("veh-new", "CARD1"))
    await charging.service.on_vehicle_registered(first)  # redelivered, e.g. after a lost ack
    assert charging.repo.owners == {"CARD1": "veh-new"}
    assert (str(first.id), events.QUEUE) in charging.units.claimed


async def test_an_idtag_moves_to_the_vehicle_registered_last(charging: Charging) -> None:
    await charging.service.on_vehicle_registered(registered("veh-old", "CARD1"))
    await charging.service.on_vehicle_registered(registered("veh-new", "CARD1"))
    with pytest.raises(NotFound):
        await charging.service.history(OWNER, "veh-old", limit=10, offset=0)
    assert (await charging.service.history(OWNER, "veh-new", limit=10, offset=0)).vehicle_id == "veh-new"


async def test_registering_drops_the_vehicles_cached_status(charging: Charging) -> None:
    await charging.service.on_vehicle_registered(registered("veh-1", "TAG1"))
    await charging.receive(started(id_tag="TAG2"))
    assert not (await charging.service.status(OWNER, "veh-1")).charging  # cached now
    await charging.service.on_vehicle_registered(registered("veh-1", "TAG2"))
    assert (await charging.service.status(OWNER, "veh-1")).charging


async def test_a_registered_vehicle_is_its_owners(charging: Charging) -> None:
    await charging.service.on_vehicle_registered(registered("veh-1", "TAG1", owner=OWNER.subject))
    assert charging.repo.vehicle_owners == {"veh-1": OWNER.subject}
    assert (await charging.service.history(OWNER, "veh-1", limit=10, offset=0)).vehicle_id == "veh-1"
    with pytest.raises(NotFound):
        await charging.service.history(PRINCIPALS["driver_b"], "veh-1", limit=10, offset=0)


async def test_a_vehicle_of_a_1_0_event_belongs_to_no_driver(charging: Charging) -> None:
    await charging.service.on_vehicle_registered(registered("veh-1", "TAG1", owner=None))
    assert charging.repo.vehicle_owners == {"veh-1": None}
    for driver in (PRINCIPALS["driver_a"], PRINCIPALS["driver_b"]):
        with pytest.raises(NotFound):
            await charging.service.status(driver, "veh-1")
    assert (await charging.service.status(ADMIN, "veh-1")).vehicle_id == "veh-1"


async def test_an_owner_event_delivered_twice_is_handled_once(charging: Charging) -> None:
    first = registered("veh-1", "TAG1", owner=OWNER.subject)
    await charging.service.on_vehicle_registered(first)
    await charging.service.on_vehicle_registered(registered("veh-1", "TAG1", owner="acc-new-owner"))
    await charging.service.on_vehicle_registered(first)  # redelivered: does not give the vehicle back
    assert charging.repo.vehicle_owners == {"veh-1": "acc-new-owner"}
    with pytest.raises(NotFound):
        await charging.service.status(OWNER, "veh-1")


async def test_registering_drops_the_cached_owner(charging: Charging) -> None:
    await charging.service.on_vehicle_registered(registered("veh-1", "TAG1", owner=OWNER.subject))
    assert not (await charging.service.status(OWNER, "veh-1")).charging  # cached now, with its owner
    await charging.service.on_vehicle_registered(registered("veh-1", "TAG1", owner="acc-new-owner"))
    with pytest.raises(NotFound):
        await charging.service.status(OWNER, "veh-1")


async def test_an_updated_vehicle_has_exactly_the_id_tags_of_the_event(charging: Charging) -> None:
    from cloud.contracts.vehicles import VehicleUpdated
    from tests.support.events import received

    await charging.service.on_vehicle_registered(registered("veh-1", "OLD1", "KEEP"))
    update = received(VehicleUpdated(vehicle_id="veh-1", plate="VEH-1", id_tags=["KEEP", "NEW1"],
                                     owner_id=OWNER.subject, type="electric", version=2))
    await charging.service.on_vehicle_updated(update)
    await charging.service.on_vehicle_updated(update)  # redelivered: nothing more
    assert charging.repo.owners == {"KEEP": "veh-1", "NEW1": "veh-1"}
    assert (await charging.service.history(OWNER, "veh-1", limit=10, offset=0)).sessions == []


async def test_a_deleted_vehicle_is_unknown_and_its_id_tags_belong_to_no_vehicle(charging: Charging) -> None:
    from cloud.contracts.vehicles import VehicleDeleted
    from tests.support.events import received

    await charging.service.on_vehicle_registered(registered("veh-1", "TAG1"))
    await charging.service.on_vehicle_registered(registered("veh-2", "TAG2"))
    await charging.service.on_vehicle_deleted(received(VehicleDeleted(
        vehicle_id="veh-1", plate="VEH-1", id_tags=["TAG1"], owner_id=OWNER.subject, type="electric")))
    assert charging.repo.owners == {"TAG2": "veh-2"}
    with pytest.raises(NotFound):
        await charging.service.history(ADMIN, "veh-1", limit=10, offset=0)
    assert "veh-1" not in charging.repo.vehicle_owners
