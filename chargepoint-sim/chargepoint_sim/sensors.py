"""Simulated bay-occupancy sensors: a Modbus TCP server with a register map, and MQTT publishers.

* ``ModbusSensors`` serves one register (or coil) per bay: ``ModbusPoint`` says the unit id,
  the address, the kind (``coil``, ``discrete``, ``holding``, ``input``) and the value that
  means occupied (free is 0). A reader polls it as it would a real sensor gateway.
* ``MqttSensors`` publishes ``mqtt.sensors.BaySensorReading`` to
  ``<root>/sites/<site_id>/sensors/<sensor_id>`` on the site's broker (QoS 1).

Both are async context managers; ``set_occupied`` changes what a bay reports.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

import aiomqtt

from chargepoint_sim.errors import CpsimError
from mqtt.sensors import QOS, BaySensorReading, SensorTopics

log = logging.getLogger("chargepoint_sim.sensors")

RegisterKind = Literal["coil", "discrete", "holding", "input"]
_FUNCTION_CODE: dict[str, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
_BLOCK_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class ModbusPoint:
    """Where a bay's occupancy lives in the Modbus register map."""

    bay_id: str
    unit_id: int = 1
    address: int = 0
    kind: RegisterKind = "holding"
    occupied_value: int = 1
    """What the register holds when the bay is occupied (coils and discrete inputs: 1)."""


class ModbusSensors:
    """A Modbus TCP server (pymodbus) holding the occupancy of every bay in ``points``."""

    def __init__(self, points: list[ModbusPoint], *, host: str = "127.0.0.1", port: int = 5020) -> None:
        for point in points:
            if not 0 <= point.address < _BLOCK_SIZE:
                raise ValueError(f"bay {point.bay_id}: Modbus address must be 0..{_BLOCK_SIZE - 1}")
            if not 0 <= point.unit_id <= 247:
                raise ValueError(f"bay {point.bay_id}: Modbus unit id must be 0..247")
        self.points = {point.bay_id: point for point in points}
        self.host = host
        self.port = port
        self._server: object | None = None
        self.occupied: dict[str, bool] = {}

    async def __aenter__(self) -> ModbusSensors:
        from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
        from pymodbus.server import ModbusTcpServer

        def block(bits: bool) -> ModbusSequentialDataBlock:
            # pymodbus 3.16 blocks start at 1; the address written is the address on the wire.
            return ModbusSequentialDataBlock(1, [False] * _BLOCK_SIZE if bits else [0] * _BLOCK_SIZE)

        quiet = logging.getLogger("pymodbus")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # the datastore classes log a deprecation warning per device
        try:
            devices: dict[int, Any] = {
                unit: ModbusDeviceContext(co=block(True), di=block(True), hr=block(False), ir=block(False))
                for unit in {p.unit_id for p in self.points.values()}}
            context = ModbusServerContext(devices=devices, single=False)
        finally:
            quiet.setLevel(level)
        server = ModbusTcpServer(context, address=(self.host, self.port))
        try:
            await server.listen()
        except OSError as exc:
            raise CpsimError(f"the Modbus sensor server could not listen on {self.host}:{self.port} ({exc}): "
                             "choose a free port (modbus.port in the scenario).") from exc
        self._server = server
        for bay_id in self.points:
            await self.set_occupied(bay_id, False)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[attr-defined]
            self._server = None

    async def set_occupied(self, bay_id: str, occupied: bool) -> None:
        point = self.points[bay_id]
        if self._server is None:
            raise CpsimError("the Modbus sensor server is not running")
        code = _FUNCTION_CODE[point.kind]
        value: int | bool = occupied if code in (1, 2) else (point.occupied_value if occupied else 0)
        await self._server.async_setValues(point.unit_id, code, point.address, [value])  # type: ignore[attr-defined]
        self.occupied[bay_id] = occupied


class MqttSensors:
    """Bay sensors that publish their readings to the site's MQTT broker."""

    def __init__(self, site_id: str, sensors: dict[str, str], *, host: str = "127.0.0.1", port: int = 1883,
                 root: str = "evpark", username: str | None = None, password: str | None = None,
                 identifier: str | None = None) -> None:
        """``sensors`` maps bay id → sensor id. ``identifier`` is the MQTT client id (default
        ``cpsim-sensors-<site_id>``): two simulators of one site on one broker need ids of their own,
        or the broker drops the first when the second connects."""
        self.site_id = site_id
        self.sensors = dict(sensors)
        self.topics = SensorTopics(root)
        for sensor_id in self.sensors.values():
            self.topics.sensor(site_id, sensor_id)  # validates ids early
        self.host = host
        self.port = port
        self._client = aiomqtt.Client(host, port, username=username, password=password,
                                      identifier=identifier or f"cpsim-sensors-{site_id}")
        self._open = False

    async def __aenter__(self) -> MqttSensors:
        try:
            await self._client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise CpsimError(f"could not connect to the MQTT broker at {self.host}:{self.port} ({exc}): "
                             "check mqtt.host and mqtt.port in the scenario and that the broker runs.") from exc
        self._open = True
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._open:
            self._open = False
            await self._client.__aexit__(exc_type, exc, tb)

    async def set_occupied(self, bay_id: str, occupied: bool | None, *, battery: float | None = None) -> None:
        sensor_id = self.sensors[bay_id]
        reading = BaySensorReading(bay_id=bay_id, occupied=occupied, ts=datetime.now(UTC), battery=battery)
        await self._client.publish(self.topics.sensor(self.site_id, sensor_id), reading.to_json(), qos=QOS)
