"""The site file: one TOML file that describes a site's bays, sensors, power and uplink limits.

::

    config = load_site_config("site.toml")   # SiteConfigError naming file, line and field

The file may also carry the top-level keys of :class:`edge.settings.EdgeSettings`
(``ocpp_host``, ``mqtt_host``, …), so one ``site.toml`` describes the whole site; they are
skipped here. ``edge/site.example.toml`` is a commented example.

Every mistake is reported with the file, the line and the field, e.g.::

    site.toml:14: bays[1].connector_id: Input should be greater than or equal to 1

The file is read by the edge's one site-file loader (:func:`edge.settings.read_site_file`,
pydantic-settings' TOML source); :func:`load_site` gives the edge settings and the site config
of one read. TOML line numbers come from ``tomllib``'s message for syntax errors and from a
small key → line index (:func:`_line_index`) for values that parse but do not validate.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from mqtt.sensors import validate_sensor_id
from mqtt.topics import validate_site_id, validate_topic_root

if TYPE_CHECKING:
    from edge.settings import EdgeSettings, SiteFile, SiteFileError

Loc = tuple[str | int, ...]


class SiteConfigError(ValueError):
    """The site file cannot be used. ``path``, ``line`` (1-based, or None) and ``field`` locate it."""

    def __init__(self, message: str, *, path: Path, line: int | None = None, field: str | None = None) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")
        self.path = path
        self.line = line
        self.field = field
        self.problem = message


class _Problem(ValueError):
    """A cross-check failure that knows which field (relative to the model checked) is wrong."""

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc


class _Section(BaseModel):
    # A misspelt key is an error, not a silently ignored line.
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- bays ---------------------------------------------------------------------------------


class BayType(StrEnum):
    EV = "ev"
    REGULAR = "regular"
    ACCESSIBLE = "accessible"


class Bay(_Section):
    id: str = Field(min_length=1, max_length=64)
    type: BayType = BayType.REGULAR
    charger_id: str | None = Field(default=None, min_length=1, max_length=64)
    connector_id: int | None = Field(default=None, ge=1, description="OCPP connector serving the bay; 0 is the charger")

    @model_validator(mode="after")
    def _charger_and_connector_together(self) -> Self:
        if self.charger_id is not None and self.connector_id is None:
            raise _Problem(("connector_id",), "a bay served by a charger must name its connector_id (>= 1)")
        if self.connector_id is not None and self.charger_id is None:
            raise _Problem(("charger_id",), "connector_id needs the charger_id of the charger serving the bay")
        return self


# --- sensors ------------------------------------------------------------------------------


class RegisterKind(StrEnum):
    COIL = "coil"
    DISCRETE_INPUT = "discrete_input"
    HOLDING_REGISTER = "holding_register"
    INPUT_REGISTER = "input_register"

    @property
    def is_bit(self) -> bool:
        return self in (RegisterKind.COIL, RegisterKind.DISCRETE_INPUT)


class BayRegister(_Section):
    """Where one bay's occupancy is read. Bits: ``occupied_value`` 1 (or 0 for inverted logic).

    Registers: ``occupied_value`` means occupied, ``free_value`` free, anything else is a
    sensor fault (the bay becomes unknown, never free).
    """

    bay_id: str = Field(min_length=1, max_length=64)
    address: int = Field(ge=0, le=65535)
    kind: RegisterKind = RegisterKind.COIL
    occupied_value: int = Field(default=1, ge=0, le=65535)
    free_value: int | None = Field(default=None, ge=0, le=65535, description="registers only; default 0")

    @model_validator(mode="after")
    def _values_fit_the_kind(self) -> Self:
        if self.kind.is_bit:
            if self.occupied_value not in (0, 1):
                raise _Problem(("occupied_value",), "a coil or discrete input is 0 or 1")
            if self.free_value is not None and self.free_value != 1 - self.occupied_value:
                raise _Problem(("free_value",), "a coil or discrete input is free at the other bit value")
        elif self.free_value == self.occupied_value or (self.free_value is None and self.occupied_value == 0):
            raise _Problem(("free_value",), "free_value (default 0) must differ from occupied_value")
        return self

    @property
    def free(self) -> int:
        if self.free_value is not None:
            return self.free_value
        return 1 - self.occupied_value if self.kind.is_bit else 0


class ModbusSensor(_Section):
    """One Modbus TCP device (a sensor or a gateway for many) and the bays it reports."""

    id: str = Field(min_length=1, max_length=64, description="a name for logs and metrics")
    host: str = Field(min_length=1)
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255)
    poll_interval: float = Field(default=1.0, gt=0, description="seconds between two reads of the register map")
    timeout: float = Field(default=1.0, gt=0, description="seconds to wait for an answer")
    debounce: float = Field(default=2.0, ge=0, description="seconds a new value must hold before it counts")
    stale_after: float = Field(default=10.0, gt=0, description="seconds without a good reading before unknown")
    registers: list[BayRegister] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_register_per_bay(self) -> Self:
        if self.stale_after <= self.poll_interval + self.timeout:
            # otherwise every bay would turn unknown between two good polls
            raise _Problem(("stale_after",), "stale_after must be longer than poll_interval + timeout")
        seen: set[str] = set()
        for index, register in enumerate(self.registers):
            if register.bay_id in seen:
                raise _Problem(("registers", index, "bay_id"), f"bay {register.bay_id!r} is mapped twice")
            seen.add(register.bay_id)
        return self


class MqttSensors(_Section):
    """Bay sensors that publish on the SITE's local broker (``mqtt.sensors`` topics)."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    topic_root: str = "evpark"
    debounce: float = Field(default=2.0, ge=0)
    stale_after: float = Field(default=600.0, gt=0, description="battery sensors report rarely: minutes")
    sensors: dict[str, str] = Field(min_length=1, description="sensor id → bay id")

    @field_validator("topic_root")
    @classmethod
    def _valid_topic_root(cls, value: str) -> str:
        return validate_topic_root(value)

    @model_validator(mode="after")
    def _valid_sensor_ids(self) -> Self:
        for sensor_id in self.sensors:
            try:
                validate_sensor_id(sensor_id)
            except ValueError as exc:
                raise _Problem(("sensors", sensor_id), str(exc)) from None
        return self


class Sensors(_Section):
    modbus: list[ModbusSensor] = Field(default_factory=list)
    mqtt: MqttSensors | None = None

    def mappings(self) -> Iterator[tuple[Loc, str]]:
        """``(location of the mapping, bay id)`` for every sensor mapping, in file order."""
        for s_index, sensor in enumerate(self.modbus):
            for r_index, register in enumerate(sensor.registers):
                yield ("modbus", s_index, "registers", r_index, "bay_id"), register.bay_id
        if self.mqtt is not None:
            for sensor_id, bay_id in self.mqtt.sensors.items():
                yield ("mqtt", "sensors", sensor_id), bay_id


# --- power and uplink ---------------------------------------------------------------------


class Power(_Section):
    """The site's grid connection: give the limit in amps per phase or in watts, not both."""

    limit_a: float | None = Field(default=None, gt=0, description="per phase")
    limit_w: float | None = Field(default=None, gt=0)
    phases: Literal[1, 3] = 3
    voltage: float = Field(default=230.0, gt=0, description="phase-to-neutral")
    min_current_a: float = Field(default=6.0, gt=0, description="below this a charger is paused, not throttled")
    charger_max_a: float = Field(default=32.0, gt=0, description="a charger's own maximum, amps per phase")
    chargers: dict[str, float] = Field(
        default_factory=dict, description="charger id → its own maximum (amps per phase), where not the default")

    def max_current_of(self, charger_id: str) -> float:
        return self.chargers.get(charger_id, self.charger_max_a)

    @model_validator(mode="after")
    def _one_limit(self) -> Self:
        if (self.limit_a is None) == (self.limit_w is None):
            raise _Problem(("limit_a",), "give exactly one of limit_a (amps per phase) or limit_w (watts)")
        if self.limit_amps < self.min_current_a:
            raise _Problem(("limit_a" if self.limit_a is not None else "limit_w",),
                           f"the site limit is below min_current_a ({self.min_current_a} A)")
        return self

    @property
    def limit_amps(self) -> float:
        """The site limit as amps per phase."""
        if self.limit_a is not None:
            return self.limit_a
        assert self.limit_w is not None
        return self.limit_w / (self.voltage * self.phases)


class Uplink(_Section):
    """How much the offline outbox may hold, and what happens when it is full.

    ``drop_oldest_telemetry`` drops the oldest meter samples and bay changes to make room
    (session and charger records are never dropped); ``refuse_new`` keeps everything stored
    and stops accepting new telemetry until the link is back.
    """

    outbox_max_mb: float = Field(default=512.0, gt=0)
    outbox_max_events: int = Field(default=1_000_000, gt=0)
    at_cap: Literal["drop_oldest_telemetry", "refuse_new"] = "drop_oldest_telemetry"
    retention_days: float = Field(default=7.0, ge=0, description="keep acknowledged envelopes this long")
    retention_envelopes: int = Field(default=100_000, ge=0,
                                     description="and at most this many (0: keep none, no resend possible)")


# --- the site -----------------------------------------------------------------------------


class SiteConfig(_Section):
    site_id: str
    bays: list[Bay] = Field(min_length=1)
    sensors: Sensors = Field(default_factory=Sensors)
    power: Power | None = None
    uplink: Uplink = Field(default_factory=Uplink)

    @field_validator("site_id")
    @classmethod
    def _valid_site_id(cls, value: str) -> str:
        return validate_site_id(value)

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        known: set[str] = set()
        for index, bay in enumerate(self.bays):
            if bay.id in known:
                raise _Problem(("bays", index, "id"), f"bay id {bay.id!r} is used twice")
            known.add(bay.id)
        connectors: dict[tuple[str, int], str] = {}
        for index, bay in enumerate(self.bays):
            if bay.charger_id is not None and bay.connector_id is not None:
                other = connectors.setdefault((bay.charger_id, bay.connector_id), bay.id)
                if other != bay.id:
                    raise _Problem(("bays", index, "connector_id"),
                                   f"connector {bay.connector_id} of {bay.charger_id!r} already serves bay {other!r}")
        sensor_ids: set[str] = set()
        for index, sensor in enumerate(self.sensors.modbus):
            if sensor.id in sensor_ids:
                raise _Problem(("sensors", "modbus", index, "id"), f"Modbus sensor id {sensor.id!r} is used twice")
            sensor_ids.add(sensor.id)
        mapped: set[str] = set()
        for loc, bay_id in self.sensors.mappings():
            if bay_id not in known:
                raise _Problem(("sensors", *loc), f"unknown bay {bay_id!r}; the [[bays]] are {sorted(known)}")
            if bay_id in mapped:
                raise _Problem(("sensors", *loc), f"bay {bay_id!r} already has a sensor; one sensor per bay")
            mapped.add(bay_id)
        return self

    def bay(self, bay_id: str) -> Bay:
        for bay in self.bays:
            if bay.id == bay_id:
                return bay
        raise KeyError(bay_id)

    def bay_served_by(self, charger_id: str, connector_id: int) -> Bay | None:
        """The bay a charger's connector reaches, if the site file names one."""
        for bay in self.bays:
            if (bay.charger_id, bay.connector_id) == (charger_id, connector_id):
                return bay
        return None


def _edge_settings_keys() -> frozenset[str]:
    from edge.settings import EdgeSettings

    return frozenset(EdgeSettings.model_fields) - frozenset(SiteConfig.model_fields)


def load_site_config(path: str | os.PathLike[str]) -> SiteConfig:
    """Read and validate a site file; :class:`SiteConfigError` names the file, line and field."""
    return site_config_of(_read(path))


def load_site(path: str | os.PathLike[str]) -> tuple[EdgeSettings, SiteConfig | None]:
    """The edge settings and, when the file has ``[[bays]]``, the site config of one site file, read once.

    Raises :class:`edge.settings.EdgeConfigError` or :class:`SiteConfigError` naming the file and the field.
    """
    from edge.settings import EdgeSettings, SiteFileError, read_site_file, settings_error

    try:
        site_file = read_site_file(path)
    except SiteFileError as exc:
        raise settings_error(exc) from exc.__cause__
    settings = EdgeSettings.from_site_file(site_file)
    return settings, site_config_of(site_file) if "bays" in site_file.data else None


def site_config_of(site_file: SiteFile) -> SiteConfig:
    """Validate the tables of a site file already read (:func:`edge.settings.read_site_file`)."""
    edge_keys = _edge_settings_keys()
    data = {key: value for key, value in site_file.data.items() if key not in edge_keys}
    try:
        return SiteConfig.model_validate(data)
    except ValidationError as exc:
        raise _describe(site_file.path, _text(site_file.path), exc) from exc


def _read(path: str | os.PathLike[str]) -> SiteFile:
    from edge.settings import SiteFileError, read_site_file

    try:
        return read_site_file(path)
    except SiteFileError as exc:
        raise _read_error(exc) from exc.__cause__


def _read_error(exc: SiteFileError) -> SiteConfigError:
    line = None
    if exc.problem == "not_toml":
        line = getattr(exc.__cause__, "lineno", None) or _line_from_message(str(exc.__cause__))
    return SiteConfigError(f"{exc.MESSAGES[exc.problem]}{exc.detail}", path=exc.path, line=line)


def _text(file: Path) -> str:
    """The file's text, for the line numbers of a validation error (the TOML source keeps none)."""
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _describe(file: Path, text: str, exc: ValidationError) -> SiteConfigError:
    """The first problem, located; the others follow in the message."""
    index = _line_index(text)
    located: list[tuple[Loc, int | None, str]] = []
    for error in exc.errors():
        loc: Loc = tuple(error["loc"])
        message = error["msg"]
        problem = (error.get("ctx") or {}).get("error")
        if isinstance(problem, _Problem):
            loc, message = loc + problem.loc, str(problem)
        elif error["type"] == "extra_forbidden":
            message = "unknown key (misspelt?)"
        located.append((loc, _find_line(index, loc), message))
    loc, line, message = located[0]
    more = [f"line {ln}: {_field_name(lc)}: {msg}" for lc, ln, msg in located[1:]]
    if more:
        message += f" (and {len(more)} more: " + "; ".join(more) + ")"
    return SiteConfigError(message, path=file, line=line, field=_field_name(loc))


def _field_name(loc: Loc) -> str:
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else part
    return name or "<site>"


def _line_from_message(message: str) -> int | None:
    found = re.search(r"line (\d+)", message)
    return int(found.group(1)) if found else None


# --- key → line index ---------------------------------------------------------------------
# TOML parsers keep no positions, so we scan the text once: table headers ([a.b], [[a.b]]),
# key = value lines (bare, quoted and dotted keys), and the keys of one-line inline tables,
# including those in a multi-line array (registers = [ {..}, {..} ]). Good enough to point an
# operator at the right line; a path we cannot place falls back to its nearest known parent.

_KEY = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_HEADER = re.compile(rf"^\s*(\[\[?)\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_ASSIGN = re.compile(rf"^\s*({_DOTTED})\s*=\s*(.*)$")
_INLINE_KEY = re.compile(rf"[{{,]\s*({_DOTTED})\s*=")


def _split_key(dotted: str) -> tuple[str, ...]:
    parts = re.findall(_KEY, dotted)
    return tuple(part[1:-1] if part[:1] in "\"'" else part for part in parts)


def _line_index(text: str) -> dict[Loc, int]:
    index: dict[Loc, int] = {}
    array_len: dict[Loc, int] = {}      # resolved array-of-tables path → elements so far
    array_paths: set[tuple[str, ...]] = set()  # unresolved paths declared with [[..]]
    table: Loc = ()
    open_array: Loc | None = None       # a multi-line array value being read
    open_len = 0

    def resolve(keys: tuple[str, ...]) -> Loc:
        loc: list[str | int] = []
        for depth, key in enumerate(keys):
            loc.append(key)
            prefix = keys[: depth + 1]
            if prefix in array_paths and depth < len(keys) - 1:
                loc.append(array_len[tuple(loc)] - 1)
        return tuple(loc)

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if open_array is not None:
            if line.startswith("{"):
                element = (*open_array, open_len)
                index.setdefault(element, number)
                for key in _INLINE_KEY.findall(line):
                    index.setdefault(element + _split_key(key), number)
                open_len += 1
            if line.startswith("]"):
                open_array = None
            continue
        header = _HEADER.match(raw)
        if header:
            keys = _split_key(header.group(2))
            if header.group(1) == "[[":
                array_paths.add(keys)
                parent = resolve(keys)
                array_len[parent] = array_len.get(parent, 0) + 1
                table = (*parent, array_len[parent] - 1)
                index.setdefault(parent, number)
            else:
                table = resolve(keys)
            index.setdefault(table, number)
            continue
        assign = _ASSIGN.match(raw)
        if assign:
            loc = table + _split_key(assign.group(1))
            index.setdefault(loc, number)
            value = assign.group(2)
            for key in _INLINE_KEY.findall(value):
                index.setdefault(loc + _split_key(key), number)
            if value.startswith("[") and "]" not in value:
                open_array, open_len = loc, 0
    return index


def _find_line(index: Mapping[Loc, int], loc: Loc) -> int | None:
    for end in range(len(loc), 0, -1):
        if loc[:end] in index:
            return index[loc[:end]]
    return None
