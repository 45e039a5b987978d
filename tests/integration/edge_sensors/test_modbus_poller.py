"""ModbusPoller against a real pymodbus TCP server whose datastore the test changes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from pymodbus.constants import ExcCodes

from edge.backoff import Backoff
from edge.sensors import BayState, ModbusPoller
from edge.siteconfig import ModbusSensor, RegisterKind
from tests.integration.edge_sensors.conftest import Changes, ModbusDevice

pytestmark = pytest.mark.integration

COIL, DISCRETE, HOLDING, INPUT = (RegisterKind.COIL, RegisterKind.DISCRETE_INPUT, RegisterKind.HOLDING_REGISTER,
                                  RegisterKind.INPUT_REGISTER)
OCCUPIED, FREE, UNKNOWN = BayState.OCCUPIED, BayState.FREE, BayState.UNKNOWN


def sensor(device: ModbusDevice, registers: list[dict[str, Any]], **overrides: Any) -> ModbusSensor:
    values: dict[str, Any] = {
        # A generous timeout: the device answers from this test's own event loop, and a poll that
        # times out on a loaded machine would make every bay unknown for a moment.
        "id": "gw-1", "host": "127.0.0.1", "port": device.port, "unit_id": 1, "poll_interval": 0.02,
        "timeout": 2.0, "debounce": 0.1, "stale_after": 30.0, "registers": registers,
    }
    values.update(overrides)
    return ModbusSensor.model_validate(values)


def poller(config: ModbusSensor, changes: Changes) -> ModbusPoller:
    return ModbusPoller(config, changes, backoff=Backoff(initial=0.05, cap=0.2))


async def test_occupancy_is_read_from_coils_discrete_inputs_and_holding_and_input_registers(
        modbus_device: ModbusDevice, changes: Changes) -> None:
    config = sensor(modbus_device, [
        {"bay_id": "C", "address": 1, "kind": "coil"},
        {"bay_id": "D", "address": 2, "kind": "discrete_input"},
        {"bay_id": "H", "address": 3, "kind": "holding_register"},
        {"bay_id": "I", "address": 4, "kind": "input_register", "occupied_value": 2, "free_value": 5},
    ])
    await modbus_device.set(INPUT, 4, 5)
    async with poller(config, changes) as reader:
        assert "edge.sensors.modbus.gw-1" in {task.get_name() for task in asyncio.all_tasks()}
        await changes.wait_until(lambda: changes.latest() == dict.fromkeys("CDHI", FREE))

        await modbus_device.set(COIL, 1, 1)
        await modbus_device.set(DISCRETE, 2, 1)
        await modbus_device.set(HOLDING, 3, 1)
        await modbus_device.set(INPUT, 4, 2)
        await changes.wait_until(lambda: changes.latest() == dict.fromkeys("CDHI", OCCUPIED))
    assert not reader.running
    assert all(changes.of(bay) == ["free", "occupied"] for bay in "CDHI"), changes.seen
    assert reader.tracker.faults == {}


async def test_a_blip_shorter_than_the_debounce_is_held_back(modbus_device: ModbusDevice, changes: Changes) -> None:
    # 1 s of debounce against a 0.15 s blip: the margin survives a loaded machine.
    config = sensor(modbus_device, [{"bay_id": "B1", "address": 0, "kind": "coil"}], debounce=1.0)
    await modbus_device.set(COIL, 0, 1)
    async with poller(config, changes):
        await changes.wait_until(lambda: changes.latest().get("B1") is OCCUPIED)
        await modbus_device.set(COIL, 0, 0)       # a pedestrian crosses the bay
        await asyncio.sleep(0.15)
        await modbus_device.set(COIL, 0, 1)
        await asyncio.sleep(1.5)  # past the debounce: a held-back "free" would show by now
        assert changes.of("B1") == ["occupied"]

        await modbus_device.set(COIL, 0, 0)       # the car really leaves
        await changes.wait_until(lambda: changes.latest().get("B1") is FREE)
    assert changes.of("B1") == ["occupied", "free"]


async def test_a_stopped_server_makes_the_bays_unknown_within_the_timeout_and_they_recover(
        modbus_device: ModbusDevice, changes: Changes) -> None:
    # The timeout under test stays well below staleness (30 s, which would also make the bays unknown),
    # yet long enough that a loaded machine does not time out a poll before the device stops.
    config = sensor(modbus_device, [{"bay_id": "B1", "address": 0, "kind": "coil"},
                                    {"bay_id": "B2", "address": 1, "kind": "coil"}], timeout=1.0)
    await modbus_device.set(COIL, 0, 1)
    async with poller(config, changes) as reader:
        await changes.wait_until(lambda: changes.latest() == {"B1": OCCUPIED, "B2": FREE})
        await modbus_device.stop()
        stopped = time.monotonic()
        await changes.wait_until(lambda: changes.latest() == {"B1": UNKNOWN, "B2": UNKNOWN})
        # one timeout (1 s) plus one poll interval, with slack for a loaded machine; far below
        # stale_after (30 s), so it is the failed poll that made them unknown
        assert time.monotonic() - stopped < 1.0 + 0.02 + 1.5
        assert reader.tracker.faults.keys() == {"B1", "B2"}
        unknown = [c for c in changes.seen if c.state is UNKNOWN]
        assert all(c.faulty for c in unknown) and len(unknown) == 2

        await modbus_device.start()  # the values it had come back with it
        await changes.wait_until(lambda: changes.latest() == {"B1": OCCUPIED, "B2": FREE})
    assert changes.of("B1") == ["occupied", "unknown", "occupied"]
    assert reader.tracker.faults == {}


async def test_a_modbus_exception_response_makes_the_bay_unknown_and_faulty_until_it_answers_again(
        modbus_device: ModbusDevice, changes: Changes) -> None:
    config = sensor(modbus_device, [{"bay_id": "B1", "address": 5, "kind": "holding_register"}])
    async with poller(config, changes) as reader:
        await changes.wait_until(lambda: changes.latest().get("B1") is FREE)
        modbus_device.refuse = ExcCodes.ILLEGAL_ADDRESS
        await changes.wait_until(lambda: changes.latest().get("B1") is UNKNOWN)
        assert "illegal data address" in reader.tracker.faults["B1"]
        assert changes.seen[-1].faulty

        modbus_device.refuse = None
        await modbus_device.set(HOLDING, 5, 1)
        await changes.wait_until(lambda: changes.latest().get("B1") is OCCUPIED)
    assert changes.of("B1") == ["free", "unknown", "occupied"]


async def test_an_address_the_device_does_not_have_faults_only_that_bay(
        modbus_device: ModbusDevice, changes: Changes) -> None:
    config = sensor(modbus_device, [{"bay_id": "B1", "address": 0, "kind": "coil"},
                                    {"bay_id": "B2", "address": 500, "kind": "input_register"}])
    await modbus_device.set(COIL, 0, 1)
    async with poller(config, changes) as reader:
        await changes.wait_until(lambda: changes.latest() == {"B1": OCCUPIED, "B2": UNKNOWN})
        await asyncio.sleep(0.2)
        assert reader.tracker.states() == {"B1": OCCUPIED, "B2": UNKNOWN}
    assert list(reader.tracker.faults) == ["B2"] and "exception 2" in reader.tracker.faults["B2"]
    assert changes.of("B2") == ["unknown"], "reported once, not on every poll"


async def test_a_register_value_that_means_neither_occupied_nor_free_is_a_fault_never_free(
        modbus_device: ModbusDevice, changes: Changes) -> None:
    config = sensor(modbus_device, [{"bay_id": "B1", "address": 7, "kind": "holding_register"}])
    await modbus_device.set(HOLDING, 7, 1)
    async with poller(config, changes) as reader:
        await changes.wait_until(lambda: changes.latest().get("B1") is OCCUPIED)
        await modbus_device.set(HOLDING, 7, 0xFFFF)
        await changes.wait_until(lambda: changes.latest().get("B1") is UNKNOWN)
        assert "unexpected value 65535" in reader.tracker.faults["B1"]
    assert "free" not in changes.of("B1")


async def test_a_device_that_is_down_at_start_reports_unknown_and_is_picked_up_later(changes: Changes) -> None:
    device = ModbusDevice()
    config = sensor(device, [{"bay_id": "B1", "address": 0, "kind": "discrete_input"}])
    async with poller(config, changes) as reader:
        await changes.wait_until(lambda: changes.of("B1") == ["unknown"])
        assert "cannot connect" in reader.tracker.faults["B1"]
        await device.set(DISCRETE, 0, 1)
        await device.start()
        try:
            await changes.wait_until(lambda: changes.latest().get("B1") is OCCUPIED)
        finally:
            await device.stop()
