"""Faults on demand, against the ocpp-library-only central system: offline queueing and in-order
replay, dropped connections, 1970 timestamps, repeated messages, kWh registers, connector faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chargepoint_sim.charger import SimulatedCharger
from chargepoint_sim.errors import ConnectorNotAvailable
from tests.unit.cpsim.central_system import CentralSystem

SLOW: dict[str, Any] = {"meter_interval": 0.02, "speedup": 300}
"""A sample every 20 ms covering 6 simulated seconds: a session lasts long enough to cut the link."""


@pytest.fixture
async def central() -> AsyncIterator[CentralSystem]:
    async with CentralSystem() as system:
        yield system


def _transaction_messages(central: CentralSystem) -> list[tuple[str, dict[str, Any]]]:
    return [(r.action, r.payload) for r in central.received
            if r.action in ("StartTransaction", "MeterValues", "StopTransaction")]


async def test_offline_session_is_queued_and_replayed_in_order_with_the_real_transaction_id(
        central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url) as charger:
        await charger.go_offline()
        session = asyncio.create_task(charger.run_session(1, "TAG-1", 400, **SLOW))
        report = await asyncio.wait_for(session, 10)
        assert charger.queued > 2
        assert central.of("StartTransaction") == []  # nothing reached the central system yet

        await charger.go_online()
        assert charger.queued == 0

    messages = _transaction_messages(central)
    actions = [action for action, _ in messages]
    assert actions[0] == "StartTransaction" and actions[-1] == "StopTransaction"
    assert set(actions[1:-1]) == {"MeterValues"}
    real_id = messages[0][1]["transaction_id"]
    assert all(p["transaction_id"] == real_id for _, p in messages[1:])
    registers = [int(p["meter_value"][0]["sampled_value"][0]["value"]) for a, p in messages if a == "MeterValues"]
    assert registers == sorted(registers), "replayed in the order they were taken"
    assert messages[-1][1]["meter_stop"] - messages[0][1]["meter_start"] == 400 == report.energy_wh
    assert central.of("Authorize") == [], "offline the tag is authorized locally"


async def test_link_lost_in_the_middle_of_a_session_keeps_charging_and_replays(central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url) as charger:
        session = asyncio.create_task(charger.run_session(1, "TAG-1", 1500, **SLOW))
        await central.wait_until(lambda: len(central.of("MeterValues")) >= 2)
        await charger.go_offline(abrupt=True)
        await asyncio.sleep(0.2)
        await charger.go_online()
        report = await asyncio.wait_for(session, 15)

    start, = central.of("StartTransaction")
    stop, = central.of("StopTransaction")
    assert stop["transaction_id"] == start["transaction_id"] == report.transaction_id
    assert stop["meter_stop"] - start["meter_start"] == 1500
    assert central.of("BootNotification")[1:] == [], "a reconnect does not boot again"


async def test_clock_1970_fault_stamps_messages_from_1970(central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url) as charger:
        charger.faults.clock_1970 = True
        await charger.run_session(1, "TAG-1", 100, meter_interval=0.001, speedup=20_000)

    start, = central.of("StartTransaction")
    assert start["timestamp"].startswith("1970-01-01T")
    assert central.of("MeterValues")[0]["meter_value"][0]["timestamp"].startswith("1970-01-01T")


async def test_kwh_fault_reports_the_register_in_kwh(central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url) as charger:
        charger.faults.report_kwh = True
        await charger.run_session(1, "TAG-1", 1500, meter_start_wh=2000, meter_interval=0.001, speedup=20_000)

    last = central.of("MeterValues")[-1]["meter_value"][0]["sampled_value"][0]
    assert (last["value"], last["unit"]) == ("3.500", "kWh")


async def test_repeat_fault_sends_the_message_twice(central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url) as charger:
        charger.faults.repeat.add("StartTransaction")
        report = await charger.run_session(1, "TAG-1", 100, meter_interval=0.001, speedup=20_000)

    first, second = central.of("StartTransaction")
    assert {k: v for k, v in first.items() if k != "transaction_id"} == \
        {k: v for k, v in second.items() if k != "transaction_id"}
    assert central.of("StopTransaction")[0]["transaction_id"] == report.transaction_id == first["transaction_id"]


async def test_connector_fault_stops_the_session_and_reports_faulted(central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url) as charger:
        session = asyncio.create_task(charger.run_session(1, "TAG-1", 5000, **SLOW))
        await central.wait_until(lambda: len(central.of("MeterValues")) >= 1)
        await charger.report_fault(1, "GroundFailure")
        report = await session
        with pytest.raises(ConnectorNotAvailable):
            await charger.run_session(1, "TAG-1", 100, **SLOW)
        await charger.clear_fault(1)

    assert report.stop_reason == "Other"
    statuses = [(s["status"], s["error_code"]) for s in central.of("StatusNotification") if s["connector_id"] == 1]
    assert ("Faulted", "GroundFailure") in statuses
    assert statuses[-1] == ("Available", "NoError")
