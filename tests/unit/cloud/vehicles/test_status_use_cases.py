"""Where a vehicle is and what it does, built from parking.* and charging.* events, in any order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from cloud.contracts import EventBody
from cloud.contracts.charging import ChargingCompleted, ChargingStarted
from cloud.contracts.errors import NotFound
from cloud.contracts.parking import BayChanged, BayIdleStarted, BayOverstayStarted
from cloud.vehicles.domain import RegisterVehicle
from cloud.vehicles.service import VehicleService
from tests.support.events import received
from tests.support.identity import PRINCIPALS

A, B, ADMIN = PRINCIPALS["driver_a"], PRINCIPALS["driver_b"], PRINCIPALS["admin"]
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


S = TypeVar("S", ChargingStarted, ChargingCompleted)


def session(kind: type[S], vehicle_id: str, energy_wh: int = 0, site: str = "s1") -> S:
    return kind(session_id=f"{site}:7", site_id=site, transaction_id=7, charger_id="CP-1", connector_id=1,
                id_tag="T1", vehicle_id=vehicle_id, owner_id=A.subject, started_at=T0 + timedelta(minutes=2),
                energy_wh=energy_wh)


async def deliver(registry: VehicleService, *bodies: EventBody) -> None:
    for body in bodies:
        event: Any = received(body)
        if isinstance(body, ChargingStarted):
            await registry.on_charging_started(event)
        elif isinstance(body, ChargingCompleted):
            await registry.on_charging_completed(event)
        elif isinstance(body, BayChanged):
            await registry.on_bay_changed(event)
        else:
            await registry.on_bay_usage(event)


def occupied(state: str, minutes: int) -> BayChanged:
    return BayChanged(site_id="s1", bay_id="EV-1", state=state, changed_at=T0 + timedelta(minutes=minutes))  # type: ignore[arg-type]


IDLE = BayIdleStarted(site_id="s1", bay_id="EV-1", charger_id="CP-1", connector_id=1, started_at=T0)
OVERSTAY = BayOverstayStarted(site_id="s1", bay_id="EV-1", charger_id="CP-1", connector_id=1, transaction_id=7,
                              started_at=T0 + timedelta(hours=1))


async def test_a_vehicle_parks_charges_stays_and_leaves(registry: VehicleService) -> None:
    vehicle = (await registry.register(A, RegisterVehicle(plate="A1", id_tags=("T1",)))).vehicle_id
    nothing = await registry.status(A, vehicle)
    assert (nothing.parked, nothing.charging, nothing.reserved, nothing.location) == (False, False, False, None)

    await deliver(registry, occupied("occupied", 0), IDLE, session(ChargingStarted, vehicle))
    charging = await registry.status(A, vehicle)
    assert charging.parked and charging.charging
    assert charging.location is not None and (charging.location.site_id, charging.location.bay_id,
                                              charging.location.since) == ("s1", "EV-1", T0)
    assert charging.session is not None and charging.session.session_id == "s1:7"

    await deliver(registry, session(ChargingCompleted, vehicle, 7_500), OVERSTAY)
    stays = await registry.status(A, vehicle)
    assert (stays.parked, stays.charging, stays.session) == (True, False, None)

    await deliver(registry, occupied("free", 70))
    gone = await registry.status(A, vehicle)
    assert (gone.parked, gone.charging, gone.location) == (False, False, None)


async def test_the_bay_learned_after_the_session_started_still_places_the_vehicle(registry: VehicleService) -> None:
    vehicle = (await registry.register(A, RegisterVehicle(plate="A1", id_tags=("T1",)))).vehicle_id
    await deliver(registry, session(ChargingStarted, vehicle))
    unplaced = await registry.status(A, vehicle)
    assert unplaced.parked and unplaced.location is not None and unplaced.location.bay_id is None
    await deliver(registry, occupied("occupied", 0), IDLE)
    assert (await registry.status(A, vehicle)).location.bay_id == "EV-1"  # type: ignore[union-attr]


async def test_without_a_bay_sensor_a_vehicle_counts_as_gone_when_its_session_ends(registry: VehicleService) -> None:
    vehicle = (await registry.register(A, RegisterVehicle(plate="A1", id_tags=("T1",)))).vehicle_id
    await deliver(registry, session(ChargingStarted, vehicle), session(ChargingCompleted, vehicle, 100))
    status = await registry.status(A, vehicle)
    assert (status.parked, status.charging) == (False, False)


async def test_a_completion_before_its_start_leaves_the_vehicle_not_charging(registry: VehicleService) -> None:
    vehicle = (await registry.register(A, RegisterVehicle(plate="A1", id_tags=("T1",)))).vehicle_id
    await deliver(registry, session(ChargingCompleted, vehicle, 100), session(ChargingStarted, vehicle))
    assert (await registry.status(A, vehicle)).charging is False


async def test_a_redelivered_event_changes_nothing_and_unknown_vehicles_are_ignored(registry: VehicleService) -> None:
    vehicle = (await registry.register(A, RegisterVehicle(plate="A1", id_tags=("T1",)))).vehicle_id
    start = received(session(ChargingStarted, vehicle))
    await registry.on_charging_started(start)
    await registry.on_charging_completed(received(session(ChargingCompleted, vehicle)))
    await registry.on_charging_started(start)
    assert (await registry.status(A, vehicle)).charging is False
    await registry.on_charging_started(received(session(ChargingStarted, "no-such-vehicle")))


async def test_the_status_is_its_owners_and_an_admins(registry: VehicleService) -> None:
    vehicle = (await registry.register(A, RegisterVehicle(plate="A1", id_tags=("T1",)))).vehicle_id
    assert (await registry.status(ADMIN, vehicle)).vehicle_id == vehicle
    with pytest.raises(NotFound):
        await registry.status(B, vehicle)
    with pytest.raises(NotFound):
        await registry.status(A, "no-such-vehicle")
