"""Recording the edge's session messages: each session counted once, whatever the order."""

from __future__ import annotations

from typing import cast

import pytest

from cloud.charging.domain import session_key
from cloud.contracts.charging import ChargingCompleted, ChargingStarted
from mqtt import ChargerConnection, Envelope, MalformedMessage
from tests.unit.cloud.charging.conftest import OWNER, T0, Charging, meter, registered, started, stopped

SITE_A_7 = session_key("site-a", "legacy", "CP1", 7)  # an envelope without store_id: an edge before store ids


async def test_a_start_opens_an_active_session_and_announces_it_with_its_vehicle(charging: Charging) -> None:
    await charging.service.on_vehicle_registered(registered("veh-1", "TAG1"))
    await charging.receive(started())
    assert charging.units.names() == ["charging.started"]
    event = cast(ChargingStarted, charging.units.events[0])
    assert (event.session_id, event.site_id, event.transaction_id, event.charger_id, event.connector_id) == (
        SITE_A_7, "site-a", 7, "CP1", 1)
    assert (event.id_tag, event.vehicle_id, event.started_at, event.energy_wh) == ("TAG1", "veh-1", T0, 0)
    assert (event.VERSION, event.owner_id) == ("1.2", OWNER.subject)
    status = await charging.service.status(OWNER, "veh-1")
    assert status.charging
    assert [(s.session_id, s.status) for s in status.sessions] == [(SITE_A_7, "active")]


async def test_a_session_of_an_unknown_idtag_is_announced_without_a_vehicle(charging: Charging) -> None:
    await charging.receive(started(id_tag="STRANGER"))
    await charging.receive(stopped())
    assert charging.units.names() == ["charging.started", "charging.completed"]
    assert [cast(ChargingStarted, e).vehicle_id for e in charging.units.events] == [None, None]
    assert [cast(ChargingStarted, e).owner_id for e in charging.units.events] == [None, None]


async def test_a_session_of_a_vehicle_of_no_driver_is_announced_without_an_owner(charging: Charging) -> None:
    await charging.service.on_vehicle_registered(registered("veh-1", "TAG1", owner=None))  # as a 1.0 event
    await charging.receive(started())
    await charging.receive(stopped())
    assert [(cast(ChargingStarted, e).vehicle_id, cast(ChargingStarted, e).owner_id)
            for e in charging.units.events] == [("veh-1", None), ("veh-1", None)]


async def test_meter_values_show_the_energy_so_far_without_an_event(charging: Charging) -> None:
    await charging.service.on_vehicle_registered(registered("veh-1", "TAG1"))
    await charging.receive(started(meter_start=1_000))
    await charging.receive(meter(4_500))
    assert charging.units.names() == ["charging.started"]
    [session] = (await charging.service.status(OWNER, "veh-1")).sessions
    assert session.energy_wh == 3_500


async def test_a_stop_completes_the_session_with_the_edges_energy_and_duration(charging: Charging) -> None:
    await charging.service.on_vehicle_registered(registered("veh-1", "TAG1"))
    await charging.receive(started())
    await charging.receive(stopped(energy=7_500))
    assert charging.units.names() == ["charging.started", "charging.completed"]
    completed = cast(ChargingCompleted, charging.units.events[1])
    assert (completed.energy_wh, completed.vehicle_id, completed.stopped_at) == (7_500, "veh-1", T0.replace(hour=19))
    assert (completed.VERSION, completed.owner_id) == ("1.3", OWNER.subject)
    [session] = (await charging.service.history(OWNER, "veh-1", limit=10, offset=0)).sessions
    assert (session.status, session.energy_wh, session.duration_s, session.stop_reason) == (
        "completed", 7_500, 3_600, "Local")
    assert not (await charging.service.status(OWNER, "veh-1")).charging


async def test_a_repeated_stop_is_not_a_second_completion(charging: Charging) -> None:
    await charging.service.on_vehicle_registered(registered("veh-1", "TAG1"))
    await charging.receive(started())
    await charging.receive(stopped(energy=7_500))
    await charging.receive(stopped(energy=9_999))
    assert charging.units.names() == ["charging.started", "charging.completed"]
    [session] = (await charging.service.history(OWNER, "veh-1", limit=10, offset=0)).sessions
    assert session.energy_wh == 7_500


async def test_a_stop_before_its_start_completes_the_session_once(charging: Charging) -> None:
    await charging.service.on_vehicle_registered(registered("veh-1", "TAG1"))
    await charging.receive(stopped(energy=7_500, id_tag="TAG1"))
    await charging.receive(started())
    assert charging.units.names() == ["charging.completed"]
    assert cast(ChargingCompleted, charging.units.events[0]).vehicle_id == "veh-1"
    [session] = (await charging.service.history(OWNER, "veh-1", limit=10, offset=0)).sessions
    assert (session.status, session.energy_wh, session.started_at) == ("completed", 7_500, T0)
    assert not (await charging.service.status(OWNER, "veh-1")).charging


async def test_a_meter_value_before_its_start_opens_the_session_and_the_start_still_counts(
        charging: Charging) -> None:
    await charging.service.on_vehicle_registered(registered("veh-1", "TAG1"))
    await charging.receive(meter(3_000))
    assert charging.units.names() == []
    await charging.receive(started(meter_start=1_000))
    assert charging.units.names() == ["charging.started"]
    [session] = (await charging.service.status(OWNER, "veh-1")).sessions
    assert session.session_id == SITE_A_7


async def test_a_meter_value_outside_any_transaction_is_ignored(charging: Charging) -> None:
    await charging.receive(meter(3_000, transaction_id=None))
    assert charging.repo.sessions == {}
    assert charging.units.names() == []


async def test_other_site_messages_change_no_session(charging: Charging) -> None:
    await charging.receive(ChargerConnection(charger_id="CP1", online=True, at=T0))
    assert charging.repo.sessions == {}


async def test_a_malformed_session_message_is_refused_and_changes_nothing(charging: Charging) -> None:
    envelope = Envelope.wrap("site-a", 1, started())
    broken = envelope.model_copy(update={"body": {**envelope.body, "transaction_id": "seven"}})
    with pytest.raises(MalformedMessage):
        async with charging.units() as uow:
            await charging.service.record_session_message(uow, broken)
    assert charging.repo.sessions == {}
    assert charging.units.names() == []


async def test_the_same_transaction_id_at_two_sites_is_two_sessions(charging: Charging) -> None:
    await charging.service.on_vehicle_registered(registered("veh-1", "TAG1"))
    await charging.receive(started(at=T0), site_id="site-a")
    await charging.receive(started(at=T0.replace(hour=19)), site_id="site-b")
    status = await charging.service.status(OWNER, "veh-1")
    assert [s.session_id for s in status.sessions] == [session_key("site-b", "legacy", "CP1", 7), SITE_A_7]


async def test_a_session_message_drops_the_vehicles_cached_status(charging: Charging) -> None:
    await charging.service.on_vehicle_registered(registered("veh-1", "TAG1"))
    await charging.receive(started(meter_start=1_000))
    assert (await charging.service.status(OWNER, "veh-1")).sessions[0].energy_wh == 0
    await charging.receive(meter(2_000))
    assert (await charging.service.status(OWNER, "veh-1")).sessions[0].energy_wh == 1_000
    await charging.receive(stopped(energy=1_500))
    assert not (await charging.service.status(OWNER, "veh-1")).charging
