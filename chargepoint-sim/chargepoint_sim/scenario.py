"""Scenarios: a YAML file with chargers, bay sensors and a timeline, played by ``cpsim run``.

::

    name: small car park
    central_system: {url: "ws://127.0.0.1:9000/ocpp"}   # password, ca_file optional
    time_compression: 60        # simulated seconds per wall second
    meter_interval: 60          # simulated seconds between two MeterValues
    site_id: demo-site          # for MQTT sensors
    mqtt: {host: 127.0.0.1, port: 1884, root: evpark}
    modbus: {host: 127.0.0.1, port: 5020}
    chargers:
      - {id: CP-1, connectors: 2, power_w: 11000}
    sensors:
      - {id: S-1, bay: B-1, via: mqtt}
      - {id: S-2, bay: B-2, via: modbus, unit_id: 1, address: 0, kind: holding, occupied_value: 1}
    timeline:                   # "at" is simulated time: seconds, "90s", "15m", "1h30m" or "01:30:00"
      - {at: 0, arrive: B-1}
      - {at: 30s, session: {charger: CP-1, connector: 1, id_tag: "04A2B3C4D5", energy_wh: 7500}}
      - {at: 10m, fault: {charger: CP-1, kind: offline, duration: 5m}}
      - {at: 2h, depart: B-1}

Fault kinds: ``drop_connection`` (reconnects after ``duration``, default 5 s), ``offline``
(queues transaction messages for ``duration``, then replays them), ``clock_1970``, ``kwh``
(energy in kWh), ``repeat`` (sends ``action`` twice), ``connector_fault`` (``connector``
Faulted with ``error_code``); the last four last ``duration`` or, without one, until the end.

A bad file fails with ``ScenarioError`` naming the file, the line and the field.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from chargepoint_sim.charger import SessionReport, SimulatedCharger
from chargepoint_sim.errors import CpsimError
from chargepoint_sim.sensors import ModbusPoint, ModbusSensors, MqttSensors

log = logging.getLogger("chargepoint_sim.scenario")

EXAMPLES = Path(__file__).resolve().parent.parent / "scenarios"
"""The example scenarios shipped in the repository (chargepoint-sim/scenarios)."""


class ScenarioError(CpsimError):
    """The scenario file cannot be read or does not describe a valid scenario."""


_DURATION = re.compile(r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$")
_CLOCK = re.compile(r"^(?P<h>\d+):(?P<m>[0-5]\d):(?P<s>[0-5]\d(?:\.\d+)?)$")


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"1h30m"`` or ``"01:30:00"``."""
    if isinstance(value, bool):
        raise ValueError("a time must be seconds (90), a duration (90s, 15m, 1h30m) or a clock (01:30:00)")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _CLOCK.fullmatch(value.strip()) or _DURATION.fullmatch(value.strip())):
        if not any(match.groupdict().values()):
            raise ValueError("a time must not be empty")
        parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
        seconds = parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    else:
        raise ValueError(f"{value!r} is not a time: use seconds (90), 90s, 15m, 1h30m or 01:30:00")
    if seconds < 0:
        raise ValueError("a time must not be negative")
    return seconds


Seconds = Annotated[float, BeforeValidator(parse_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CentralSystemConfig(_Model):
    url: str = "ws://127.0.0.1:9000/ocpp"
    password: str | None = Field(default=None, min_length=16, max_length=40)
    """AuthorizationKey of every charger (Security Profile 1/2), 16-40 characters."""
    ca_file: Path | None = None


class MqttConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    root: str = "evpark"
    username: str | None = None
    password: str | None = None


class ModbusConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=5020, ge=0, le=65535)


class ChargerConfig(_Model):
    id: str = Field(min_length=1, max_length=48)
    connectors: int = Field(default=1, ge=1, le=16)
    power_w: float = Field(default=11_000, gt=0)


class SensorConfig(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    bay: str = Field(min_length=1, max_length=64)
    via: Literal["mqtt", "modbus"] = "mqtt"
    unit_id: int = Field(default=1, ge=0, le=247)
    address: int = Field(default=0, ge=0, le=9999)
    kind: Literal["coil", "discrete", "holding", "input"] = "holding"
    occupied_value: int = Field(default=1, ge=0, le=65535)


class SessionEvent(_Model):
    charger: str
    connector: int = Field(default=1, ge=1)
    id_tag: str = Field(min_length=1, max_length=20)
    energy_wh: int = Field(ge=0)
    power_w: float | None = Field(default=None, gt=0)


class StopEvent(_Model):
    charger: str
    connector: int = Field(default=1, ge=1)
    reason: str = "EVDisconnected"


FaultKind = Literal["drop_connection", "offline", "clock_1970", "kwh", "repeat", "connector_fault"]


class FaultEvent(_Model):
    charger: str
    kind: FaultKind
    duration: Seconds | None = None
    connector: int = Field(default=1, ge=1)
    error_code: str = "GroundFailure"
    action: str = "StartTransaction"


class TimelineEvent(_Model):
    at: Seconds
    arrive: str | None = None
    depart: str | None = None
    session: SessionEvent | None = None
    stop: StopEvent | None = None
    fault: FaultEvent | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> TimelineEvent:
        given = [name for name in ("arrive", "depart", "session", "stop", "fault") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("each timeline entry needs 'at' and exactly one of arrive, depart, session, stop, "
                             f"fault (found {', '.join(given) or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return next(n for n in ("arrive", "depart", "session", "stop", "fault") if getattr(self, n) is not None)


class Scenario(_Model):
    name: str = "scenario"
    central_system: CentralSystemConfig = CentralSystemConfig()
    time_compression: float = Field(default=1.0, gt=0)
    meter_interval: Seconds = 60.0
    site_id: str = Field(default="demo-site", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    mqtt: MqttConfig = MqttConfig()
    modbus: ModbusConfig = ModbusConfig()
    chargers: list[ChargerConfig] = Field(min_length=1)
    sensors: list[SensorConfig] = []
    timeline: list[TimelineEvent] = []

    def charger(self, charger_id: str) -> ChargerConfig | None:
        return next((c for c in self.chargers if c.id == charger_id), None)

    @property
    def duration_s(self) -> float:
        """Simulated time until the last event starts."""
        return max((event.at for event in self.timeline), default=0.0)


# --- loading with line numbers ---------------------------------------------------------------


def _lines(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, key.value)
            out[child] = key.start_mark.line + 1
            _lines(value, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _lines(item, (*path, index), out)


def _where(loc: tuple[Any, ...], data: Any) -> tuple[tuple[Any, ...], str]:
    """The part of a pydantic location that exists in the data, and a readable field name."""
    path: list[Any] = []
    current = data
    for part in loc:
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_list or (isinstance(current, dict) and part in current):
            current = current[part]
            path.append(part)
        else:
            if isinstance(current, dict) and isinstance(part, str):
                path.append(part)  # a missing field: name it; its line is its parent's
            break
    name = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    return tuple(path), name or "(top level)"


def _line_of(path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int:
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path, 1)


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Parse and validate a scenario; ScenarioError names the line and field of every problem."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ScenarioError(f"{source} line {line}: not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{source} line 1: a scenario is a YAML mapping with chargers and a timeline")
    lines: dict[tuple[Any, ...], int] = {}
    assert node is not None
    _lines(node, (), lines)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            path, name = _where(tuple(error["loc"]), data)
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{source} line {_line_of(path, lines)}: {name}: {message}")
        raise ScenarioError("\n".join(problems)) from None
    problems = [f"{source} line {_line_of(path, lines)}: {name}: {message}"
                for path, name, message in _cross_check(scenario)]
    if problems:
        raise ScenarioError("\n".join(problems))
    return scenario


def _cross_check(scenario: Scenario) -> list[tuple[tuple[Any, ...], str, str]]:
    """References between parts of the scenario: chargers, connectors and bays that must exist."""
    problems: list[tuple[tuple[Any, ...], str, str]] = []
    seen: set[str] = set()
    for index, config in enumerate(scenario.chargers):
        if config.id in seen:
            problems.append((("chargers", index, "id"), f"chargers[{index}].id", f"duplicate charger id {config.id!r}"))
        seen.add(config.id)
    bays = {sensor.bay for sensor in scenario.sensors}
    for index, sensor in enumerate(scenario.sensors):
        if [s.bay for s in scenario.sensors].count(sensor.bay) > 1:
            problems.append((("sensors", index, "bay"), f"sensors[{index}].bay", f"bay {sensor.bay!r} has two sensors"))
    for index, event in enumerate(scenario.timeline):
        kind = event.kind
        value = getattr(event, kind)
        if kind in ("arrive", "depart"):
            if value not in bays:
                problems.append((("timeline", index, kind), f"timeline[{index}].{kind}",
                                 f"no sensor watches bay {value!r}"))
            continue
        charger = scenario.charger(value.charger)
        if charger is None:
            problems.append((("timeline", index, kind, "charger"), f"timeline[{index}].{kind}.charger",
                             f"no charger {value.charger!r} in chargers"))
        elif value.connector > charger.connectors:
            problems.append((("timeline", index, kind, "connector"), f"timeline[{index}].{kind}.connector",
                             f"charger {charger.id} has connectors 1..{charger.connectors}"))
    return problems


def load_scenario(path: Path | str) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read the scenario {path} ({exc.strerror or exc}): check the path.") from None
    return parse_scenario(text, str(path))


# --- playing ---------------------------------------------------------------------------------


@dataclass
class PlayReport:
    """What a scenario run did."""

    sessions: list[tuple[str, SessionReport]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


EventCallback = Callable[[str], None]


class _Player:
    def __init__(self, scenario: Scenario, url: str, compression: float, on_event: EventCallback | None,
                 ssl_context: ssl.SSLContext | None) -> None:
        self.scenario = scenario
        self.url = url
        self.compression = compression
        self.on_event = on_event
        self.report = PlayReport()
        cs = scenario.central_system
        self.chargers = {
            c.id: SimulatedCharger(c.id, url, connectors=c.connectors, basic_auth_password=cs.password,
                                   ssl_context=ssl_context, speedup=compression)
            for c in scenario.chargers}
        self.modbus: ModbusSensors | None = None
        self.mqtt: MqttSensors | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def note(self, text: str) -> None:
        self.report.events.append(text)
        log.info("%s", text)
        if self.on_event is not None:
            self.on_event(text)

    def wall(self, simulated_s: float) -> float:
        return simulated_s / self.compression

    async def run(self) -> PlayReport:
        scenario = self.scenario
        async with AsyncExitStack() as stack:
            modbus_points = [ModbusPoint(s.bay, s.unit_id, s.address, s.kind, s.occupied_value)
                             for s in scenario.sensors if s.via == "modbus"]
            if modbus_points:
                self.modbus = await stack.enter_async_context(
                    ModbusSensors(modbus_points, host=scenario.modbus.host, port=scenario.modbus.port))
                self.note(f"Modbus sensors serving {len(modbus_points)} bays on "
                          f"{scenario.modbus.host}:{scenario.modbus.port}")
            mqtt_sensors = {s.bay: s.id for s in scenario.sensors if s.via == "mqtt"}
            if mqtt_sensors:
                m = scenario.mqtt
                self.mqtt = await stack.enter_async_context(
                    MqttSensors(scenario.site_id, mqtt_sensors, host=m.host, port=m.port, root=m.root,
                                username=m.username, password=m.password))
                for bay in mqtt_sensors:
                    await self.mqtt.set_occupied(bay, False)
            for charger in self.chargers.values():
                await charger.connect()
                stack.push_async_callback(charger.close)
                self.note(f"{charger.charger_id} connected to {self.url}")
            loop = asyncio.get_running_loop()
            start = loop.time()
            for event in sorted(scenario.timeline, key=lambda e: e.at):
                delay = start + self.wall(event.at) - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                self._spawn(self._event(event), f"cpsim-scenario-{event.kind}")
            while self.tasks:
                await asyncio.gather(*list(self.tasks), return_exceptions=True)
            for charger in self.chargers.values():
                if charger.offline:
                    await charger.go_online()
        return self.report

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _event(self, event: TimelineEvent) -> None:
        try:
            await self._play(event)
        except CpsimError as exc:
            text = f"at {event.at:g} s, {event.kind}: {exc}"
            self.report.errors.append(text)
            self.note(f"error {text}")

    async def _bay(self, bay: str, occupied: bool) -> None:
        if self.modbus is not None and bay in self.modbus.points:
            await self.modbus.set_occupied(bay, occupied)
        elif self.mqtt is not None:
            await self.mqtt.set_occupied(bay, occupied)

    async def _play(self, event: TimelineEvent) -> None:
        if event.arrive is not None:
            await self._bay(event.arrive, True)
            self.note(f"a car arrives in bay {event.arrive}")
        elif event.depart is not None:
            await self._bay(event.depart, False)
            self.note(f"the car leaves bay {event.depart}")
        elif event.session is not None:
            s = event.session
            charger = self.chargers[s.charger]
            power = s.power_w or self.scenario.charger(s.charger).power_w  # type: ignore[union-attr]
            self.note(f"{s.charger}/{s.connector}: session for {s.id_tag}, {s.energy_wh} Wh")
            report = await charger.run_session(s.connector, s.id_tag, s.energy_wh, power_w=power,
                                               meter_interval=self.wall(self.scenario.meter_interval),
                                               speedup=self.compression)
            self.report.sessions.append((s.charger, report))
            self.note(f"{s.charger}/{s.connector}: transaction {report.transaction_id} ended "
                      f"({report.stop_reason}) with {report.energy_wh} Wh")
        elif event.stop is not None:
            charger = self.chargers[event.stop.charger]
            if charger.stop_session(event.stop.connector, event.stop.reason):
                self.note(f"{event.stop.charger}/{event.stop.connector}: stopping ({event.stop.reason})")
        elif event.fault is not None:
            await self._fault(event.fault)

    async def _fault(self, fault: FaultEvent) -> None:
        charger = self.chargers[fault.charger]
        wall = None if fault.duration is None else self.wall(fault.duration)
        self.note(f"{fault.charger}: fault {fault.kind}" + ("" if fault.duration is None
                                                           else f" for {fault.duration:g} s"))
        if fault.kind in ("drop_connection", "offline"):
            await charger.go_offline(abrupt=fault.kind == "drop_connection")
            await asyncio.sleep(self.wall(5.0) if wall is None else wall)
            await charger.go_online()
            self.note(f"{fault.charger}: back online")
            return
        if fault.kind == "clock_1970":
            charger.faults.clock_1970 = True
        elif fault.kind == "kwh":
            charger.faults.report_kwh = True
        elif fault.kind == "repeat":
            charger.faults.repeat.add(fault.action)
        elif fault.kind == "connector_fault":
            await charger.report_fault(fault.connector, fault.error_code)
        if wall is None:
            return
        await asyncio.sleep(wall)
        if fault.kind == "clock_1970":
            charger.faults.clock_1970 = False
        elif fault.kind == "kwh":
            charger.faults.report_kwh = False
        elif fault.kind == "repeat":
            charger.faults.repeat.discard(fault.action)
        elif fault.kind == "connector_fault":
            with contextlib.suppress(CpsimError):
                await charger.clear_fault(fault.connector)
        self.note(f"{fault.charger}: fault {fault.kind} over")


async def play_scenario(scenario: Scenario, *, url: str | None = None, time_compression: float | None = None,
                        on_event: EventCallback | None = None,
                        ssl_context: ssl.SSLContext | None = None) -> PlayReport:
    """Play a scenario against its central system (or ``url``); return what happened."""
    compression = time_compression or scenario.time_compression
    if ssl_context is None and scenario.central_system.ca_file is not None:
        try:
            ssl_context = ssl.create_default_context(cafile=str(scenario.central_system.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ScenarioError(f"central_system.ca_file {scenario.central_system.ca_file} is not a PEM CA "
                                f"certificate ({exc}): check the path.") from None
    player = _Player(scenario, url or scenario.central_system.url, compression, on_event, ssl_context)
    return await player.run()
