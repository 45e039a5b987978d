"""A real Modbus TCP device (pymodbus's own server) that tests control."""

from __future__ import annotations

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

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
