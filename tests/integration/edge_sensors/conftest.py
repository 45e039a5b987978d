from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge.sensors import BayChange, BayState
from edge.siteconfig import RegisterKind
from tests.support import services

UNIT_ID = 1
_WRITE_CODE = {  # the function code whose block a value lives in
    RegisterKind.COIL: 5,
    RegisterKind.DISCRETE_INPUT: 2,
    RegisterKind.HOLDING_REGISTER: 6,
    RegisterKind.INPUT_REGISTER: 4,
}


class ModbusDevice:
    """A real pymodbus TCP server on a free port: 64 of each kind at addresses 0-63.

    The test changes its datastore with :meth:`set`, stops and restarts it, and can make it
    answer every read with a Modbus exception (:attr:`refuse`).
    """

    def __init__(self) -> None:
        self.port = services.free_port()
        self.values: dict[tuple[RegisterKind, int], int] = {}
        self.refuse: ExcCodes | None = None
        self._server: ModbusTcpServer | None = None

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      current_registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        return self.refuse

    async def start(self) -> None:
        device = SimDevice(
            id=UNIT_ID,
            simdata=(
                [SimData(0, count=64, values=False, datatype=DataType.BITS)],
                [SimData(0, count=64, values=False, datatype=DataType.BITS)],
                [SimData(0, count=64, values=0, datatype=DataType.REGISTERS)],
                [SimData(0, count=64, values=0, datatype=DataType.REGISTERS)],
            ),
            action=self._action,
        )
        self._server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
        await self._server.serve_forever(background=True)
        for (kind, address), value in self.values.items():
            await self._write(kind, address, value)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    async def set(self, kind: RegisterKind, address: int, value: int) -> None:
        self.values[(kind, address)] = value
        if self._server is not None:
            await self._write(kind, address, value)

    async def _write(self, kind: RegisterKind, address: int, value: int) -> None:
        assert self._server is not None
        written = [bool(value)] if kind.is_bit else [value]
        await self._server.async_setValues(UNIT_ID, _WRITE_CODE[kind], address, written)  # type: ignore[arg-type]


@pytest.fixture
async def modbus_device() -> AsyncIterator[ModbusDevice]:
    device = ModbusDevice()
    await device.start()
    try:
        yield device
    finally:
        await device.stop()


class Changes:
    """Collects what a reader reports, as the edge's on_change would receive it."""

    def __init__(self) -> None:
        self.seen: list[BayChange] = []
        self._arrived = asyncio.Event()

    async def __call__(self, change: BayChange) -> None:
        self.seen.append(change)
        self._arrived.set()

    def latest(self) -> dict[str, BayState]:
        """Each bay's state as the consumer last heard it."""
        return {change.bay_id: change.state for change in self.seen}

    def of(self, bay_id: str) -> list[str]:
        return [change.state.value for change in self.seen if change.bay_id == bay_id]

    async def wait_until(self, condition: Callable[[], bool], within: float = 5.0) -> None:
        """Wait (at most ``within`` seconds) until the changes seen so far satisfy ``condition``."""
        async with asyncio.timeout(within):
            while not condition():
                self._arrived.clear()
                await self._arrived.wait()


@pytest.fixture
def changes() -> Changes:
    return Changes()
