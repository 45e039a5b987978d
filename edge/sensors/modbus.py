"""Bay occupancy from Modbus TCP devices (pymodbus ``AsyncModbusTcpClient``).

One :class:`ModbusPoller` per device in the site file. It reads the whole register map every
``poll_interval``: neighbouring addresses of one kind are read in one request, so a gateway
with 200 coils costs one round trip. What cannot be read makes the bays concerned ``unknown``
(never ``free``) with the reason:

* no answer within ``timeout``, or the connection lost → every bay of the request (or of the
  device) unknown; the poller reconnects with jittered exponential back-off;
* a Modbus exception response (e.g. 02 illegal data address) → the bays of that request;
* a register value that is neither ``occupied_value`` nor ``free_value`` → that bay.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from edge.backoff import Backoff
from edge.sensors._reader import OnChange, SensorReader, log
from edge.sensors.tracker import BayChange, BayTracker, utc_now
from edge.siteconfig import BayRegister, ModbusSensor, RegisterKind

# Modbus application protocol v1.1b3 §6: at most 2000 bits or 125 registers per read.
_MAX_BITS = 2000
_MAX_REGISTERS = 125

_EXCEPTION_NAMES = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value", 4: "server device failure",
    5: "acknowledge", 6: "server device busy", 10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class _ConnectionLost(Exception):
    def __init__(self, reason: str, changes: list[BayChange] | None = None) -> None:
        super().__init__(reason)
        self.changes = changes or []  # what this poll saw before the link went


@dataclass(frozen=True, slots=True)
class _Read:
    """One request: ``len(registers)`` consecutive addresses of one kind from ``start``."""

    kind: RegisterKind
    start: int
    registers: tuple[BayRegister, ...]

    @property
    def bay_ids(self) -> list[str]:
        return [register.bay_id for register in self.registers]


def plan_reads(registers: Sequence[BayRegister]) -> list[_Read]:
    """Group a register map into as few requests as possible (consecutive addresses only)."""
    reads: list[_Read] = []
    for kind in RegisterKind:
        run: list[BayRegister] = []
        limit = _MAX_BITS if kind.is_bit else _MAX_REGISTERS
        for register in sorted((r for r in registers if r.kind == kind), key=lambda r: r.address):
            if run and (register.address != run[-1].address + 1 or len(run) == limit):
                reads.append(_Read(kind, run[0].address, tuple(run)))
                run = []
            run.append(register)
        if run:
            reads.append(_Read(kind, run[0].address, tuple(run)))
    return reads


class ModbusPoller(SensorReader):
    """Polls one Modbus TCP device; an async context manager running as ``edge.sensors.modbus.<id>``."""

    def __init__(self, sensor: ModbusSensor, on_change: OnChange, *, backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.monotonic, now: Callable[[], datetime] = utc_now) -> None:
        super().__init__(on_change)
        self.sensor = sensor
        self.task_name = f"edge.sensors.modbus.{sensor.id}"
        self.tracker = BayTracker([r.bay_id for r in sensor.registers], debounce=sensor.debounce,
                                  stale_after=sensor.stale_after, clock=clock, now=now)
        self._reads = plan_reads(sensor.registers)
        self._backoff = backoff or Backoff(initial=max(sensor.poll_interval, 0.05), cap=30.0)
        self._down_reason: str | None = None

    async def run(self) -> None:
        sensor = self.sensor
        while True:
            client = AsyncModbusTcpClient(sensor.host, port=sensor.port, timeout=sensor.timeout, retries=0,
                                          reconnect_delay=0)  # we reconnect ourselves, with jitter
            try:
                try:
                    async with asyncio.timeout(sensor.timeout * 2):
                        connected = await client.connect()
                except TimeoutError:
                    connected = False
                if not connected:
                    raise _ConnectionLost(f"cannot connect to {sensor.host}:{sensor.port}")
                await self._poll_while_connected(client)
            except _ConnectionLost as exc:
                await self._device_down(str(exc), exc.changes)
            except Exception as exc:
                # Whatever pymodbus throws at us, the bays go unknown and we try again later.
                log.exception("modbus.poll_failed", sensor=sensor.id)
                await self._device_down(f"poll failed: {exc!r}")
            finally:
                client.close()
            await asyncio.sleep(self._backoff.next_delay())

    async def _poll_while_connected(self, client: AsyncModbusTcpClient) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            changes = await self._poll_once(client)
            changes += self.tracker.tick()
            await self._deliver(changes)
            if self._down_reason is not None:
                log.info("modbus.device_up", sensor=self.sensor.id, was=self._down_reason)
                self._down_reason = None
            self._backoff.reset()
            await asyncio.sleep(max(0.0, self.sensor.poll_interval - (loop.time() - started)))

    async def _device_down(self, reason: str, changes: list[BayChange] | None = None) -> None:
        if self._down_reason is None:
            log.warning("modbus.device_down", sensor=self.sensor.id, host=self.sensor.host,
                        port=self.sensor.port, reason=reason)
        self._down_reason = reason
        await self._deliver([*(changes or []), *self.tracker.fail_all(reason)])

    async def _poll_once(self, client: AsyncModbusTcpClient) -> list[BayChange]:
        """Read the whole map once; raises :class:`_ConnectionLost` when the link is gone."""
        changes: list[BayChange] = []
        for read in self._reads:
            try:
                values = await self._read(client, read)
            except _Failed as failure:
                changes += [c for bay_id in read.bay_ids for c in self.tracker.fail(bay_id, failure.reason)]
                if not client.connected:
                    raise _ConnectionLost(f"connection to {self.sensor.host}:{self.sensor.port} lost "
                                          f"({failure.reason})", changes) from None
                continue
            for register, value in zip(read.registers, values, strict=True):
                changes += self._interpret(register, value)
        return changes

    async def _read(self, client: AsyncModbusTcpClient, read: _Read) -> list[int]:
        count = len(read.registers)
        unit = self.sensor.unit_id
        call: Any = {
            RegisterKind.COIL: client.read_coils,
            RegisterKind.DISCRETE_INPUT: client.read_discrete_inputs,
            RegisterKind.HOLDING_REGISTER: client.read_holding_registers,
            RegisterKind.INPUT_REGISTER: client.read_input_registers,
        }[read.kind]
        try:
            # pymodbus enforces `timeout` itself; this bounds a hung connect-or-send as well.
            async with asyncio.timeout(self.sensor.timeout * 2):
                response = await call(read.start, count=count, device_id=unit)
        except TimeoutError:
            raise _Failed(f"timeout: no answer within {self.sensor.timeout} s") from None
        except ModbusException as exc:
            raise _Failed(f"no answer: {exc}") from None
        except (ConnectionError, OSError) as exc:
            raise _Failed(f"connection error: {exc}") from None
        if response.isError():
            code = getattr(response, "exception_code", None)
            name = _EXCEPTION_NAMES.get(code, "unknown") if isinstance(code, int) else "unknown"
            raise _Failed(f"modbus exception {code} ({name}) reading {read.kind.value} {read.start}+{count}")
        values = [int(bit) for bit in response.bits[:count]] if read.kind.is_bit else list(response.registers)
        if len(values) < count:
            raise _Failed(f"short answer: {len(values)} of {count} values")
        return values[:count]

    def _interpret(self, register: BayRegister, value: int) -> list[BayChange]:
        if value == register.occupied_value:
            return self.tracker.observe(register.bay_id, True)
        if value == register.free:
            return self.tracker.observe(register.bay_id, False)
        return self.tracker.fail(register.bay_id, f"unexpected value {value} in {register.kind.value} "
                                                  f"{register.address}")


class _Failed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
