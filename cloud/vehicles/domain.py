"""Vehicle registry rules, free of I/O.

A vehicle owns the RFID idTags that may charge it. Every change to an idTag is an
:class:`AuthListChange`; its version (issued by the registry, increasing) is the version of the
authorization list the sites sync to. Each site's edge keeps a local copy of the list so it can
authorize offline (OCPP 1.6 §3.5 Local Authorization List); the registry keeps a
:class:`SiteSync` per site and sends it what it lacks:

- a site at version 0 (new, or reset) gets the full list;
- any other lagging site gets, per idTag, the latest change since its version;
- a site that claims a version the registry never issued (its database was restored from an
  older backup) is treated as version 0, so it gets the full list again;
- one update is pending per site; it is resent only after :data:`RESEND_AFTER` without an answer.

What a vehicle is (:class:`Vehicle`): its kind (``electric``, ``plug_in_hybrid``, ``hybrid``,
``combustion``; only the kinds that plug in have idTags and connectors), make, model, an optional
entry of the vehicle-type catalogue (:class:`VehicleType`, which fills what a registration leaves
out), battery and connectors, and a ``version`` that a full update must name (a stale one is a
conflict). Plates are one plate when they differ only in case, spaces or dashes
(:func:`plate_key`); idTags are compared case-insensitively (OCPP 1.6, :func:`fold_id_tag`). A
change of plate or owner opens a new stretch of the registration history (:class:`Registration`).
Deleting a vehicle withdraws its idTags (Invalid) from every site's list.

Who may do what: a vehicle belongs to the account that registered it (``owner_id``; vehicles
registered before ownership existed have none and belong to no driver). A driver or an admin
registers, changes and deletes vehicles; only an admin gives one another owner; a driver sees only
their own, an admin every one; operators and technicians neither register nor read vehicles here.
Searching (:func:`search_scope`): a driver among their own, an operator (never seeing idTags) or an
admin among all, also by owner. A vehicle the caller may not see is answered exactly as an
unknown one. The authorization lists are not scoped: every site authorizes every vehicle's idTags.

Where a vehicle is (:class:`VehicleStatus`) is built from parking's bay events (:class:`BayLink`:
which connector serves a bay, whether it is occupied) and charging's session events.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from cloud.contracts.errors import Conflict, DomainError, NotFound
from cloud.contracts.identity import OPERATOR, Forbidden, Principal
from mqtt import AuthListEntry, AuthListUpdate, CommandResult, CommandStatus, IdTagStatus, SiteHello

# OCPP 1.6 idTag is CiString20; cards print hex UIDs, apps use tokens: printable ASCII only.
_ID_TAG = re.compile(r"^[\x21-\x7e]{1,20}$")
_PLATE = re.compile(r"^[A-Z0-9][A-Z0-9 -]{0,14}[A-Z0-9]$|^[A-Z0-9]$")

MAX_ID_TAGS = 10

KINDS = ("electric", "plug_in_hybrid", "hybrid", "combustion")
"""What a vehicle is: the kinds that plug in (electric, plug-in hybrid) may have idTags and connectors."""
PLUG_IN_KINDS = ("electric", "plug_in_hybrid")
CONNECTOR_TYPES = ("type1", "type2", "ccs1", "ccs2", "chademo", "nacs", "gbt")
"""Vehicle inlets: IEC 62196 Type 1 / Type 2 (AC), CCS1 / CCS2 and CHAdeMO (DC), NACS (SAE J3400), GB/T."""
MAX_BATTERY_KWH = Decimal("1000")
MAX_POWER_KW = Decimal("1000")

RESEND_AFTER = timedelta(minutes=10)
"""A site that reconnects says hello and is resynced at once; resending to a site that is away
would only pile duplicate commands up in its broker queue."""

DUPLICATE_REASON = "another vehicle registered this idTag first (idTags are case-insensitive, OCPP 1.6)"
"""Why a case-duplicate idTag found by migration 0004 is blocked; its owner sees it."""


class InvalidVehicle(DomainError):
    title = "Invalid vehicle"

    def __init__(self, detail: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(detail, code=code)
        self.field = field


def has_control_characters(text: str) -> bool:
    """NUL, other C0/C1 controls, and Unicode format characters (bidi overrides) are never data."""
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text)


def check_text(name: str, value: str | None) -> str | None:
    if value is not None and has_control_characters(value):
        raise InvalidVehicle(f"{name} must not contain control characters", code="control_characters", field=name)
    return value


def fold_id_tag(id_tag: str) -> str:
    """OCPP 1.6 compares idTags case-insensitively (CiString): the form two idTags collide in."""
    return id_tag.upper()


def plate_key(plate: str) -> str:
    """Two plates are the same when they differ only in case, spaces or dashes."""
    return "".join(ch for ch in plate.upper() if ch not in " -")


@dataclass(frozen=True)
class VehicleDetails:
    """What a vehicle is: the fields a registration and a full update carry (besides idTags)."""

    plate: str
    kind: str = "electric"
    make: str | None = None
    model: str | None = None
    vehicle_type_id: str | None = None
    battery_kwh: Decimal | None = None
    connector_types: tuple[str, ...] | None = None
    """None: not given (the catalogue entry's, if any); () : none."""


@dataclass(frozen=True)
class RegisterVehicle:
    """Command: register a vehicle with the RFID idTags that may charge it."""

    plate: str
    id_tags: tuple[str, ...] = ()
    make: str | None = None
    model: str | None = None
    kind: str = "electric"
    vehicle_type_id: str | None = None
    battery_kwh: Decimal | None = None
    connector_types: tuple[str, ...] | None = None

    def details(self) -> VehicleDetails:
        return VehicleDetails(plate=self.plate, kind=self.kind, make=self.make, model=self.model,
                              vehicle_type_id=self.vehicle_type_id, battery_kwh=self.battery_kwh,
                              connector_types=self.connector_types)


@dataclass(frozen=True)
class UpdateVehicle:
    """Command: the whole vehicle as it is now (PUT), over the ``version`` the caller read."""

    version: int
    plate: str
    id_tags: tuple[str, ...] = ()
    make: str | None = None
    model: str | None = None
    kind: str = "electric"
    vehicle_type_id: str | None = None
    battery_kwh: Decimal | None = None
    connector_types: tuple[str, ...] | None = None
    owner_id: str | None = None
    """None: the owner stays; another account: a transfer (admin only)."""

    def details(self) -> VehicleDetails:
        return VehicleDetails(plate=self.plate, kind=self.kind, make=self.make, model=self.model,
                              vehicle_type_id=self.vehicle_type_id, battery_kwh=self.battery_kwh,
                              connector_types=self.connector_types)


@dataclass
class IdTag:
    """An RFID card or app token (OCPP idTag) that belongs to one vehicle."""

    id_tag: str
    vehicle_id: str
    status: IdTagStatus
    created_at: datetime
    blocked_reason: str | None = None
    """Why the registry blocked it (a case-duplicate of an older idTag); shown to its owner."""


@dataclass
class Vehicle:
    vehicle_id: str
    plate: str
    make: str | None
    model: str | None
    created_at: datetime
    id_tags: list[IdTag] = field(default_factory=list)
    owner_id: str | None = None
    """The account that registered the vehicle; None for vehicles older than ownership (admin only)."""
    kind: str = "electric"
    vehicle_type_id: str | None = None
    battery_kwh: Decimal | None = None
    connector_types: tuple[str, ...] = ()
    version: int = 1
    updated_at: datetime | None = None


@dataclass
class VehicleType:
    """An entry of the vehicle-type catalogue (a make and model and its figures)."""

    type_id: str
    make: str
    model: str
    battery_kwh: Decimal | None
    max_ac_kw: Decimal | None
    max_dc_kw: Decimal | None
    connector_types: tuple[str, ...]
    kind: str = "electric"
    source: str | None = None
    version: int = 1


@dataclass
class Registration:
    """One stretch of a vehicle's registration history: a plate and an owner from ``started_at``
    until ``ended_at`` (None: still so), and why it ended."""

    vehicle_id: str
    plate: str
    owner_id: str | None
    started_at: datetime
    ended_at: datetime | None = None
    ended_because: str | None = None
    """``plate_changed``, ``owner_changed`` or ``deleted``."""


@dataclass
class AuthListChange:
    """One change to the authorization list; ``version`` is None until the registry issues it."""

    id_tag: str
    status: IdTagStatus
    vehicle_id: str | None
    changed_at: datetime
    version: int | None = None


@dataclass
class SiteSync:
    """A site's edge as the registry sees it: the list version it confirmed, the update pending."""

    site_id: str
    last_seen_at: datetime
    synced_version: int = 0
    pending_command_id: str | None = None
    pending_version: int | None = None
    pending_sent_at: datetime | None = None

    def said_hello(self, hello: SiteHello, current_version: int) -> None:
        """The site (re)connected and told its list version: trust it unless it was never issued."""
        self.synced_version = hello.authlist_version if hello.authlist_version <= current_version else 0
        self._clear_pending()

    def answered(self, result: CommandResult) -> None:
        """The site answered a command; only the answer to the pending update counts."""
        if result.command_type != AuthListUpdate.TYPE or self.pending_command_id != str(result.command_id):
            return
        if result.status == CommandStatus.ACCEPTED and self.pending_version is not None:
            self.synced_version = max(self.synced_version, self.pending_version)
        self._clear_pending()

    def lags(self, current_version: int) -> bool:
        return self.synced_version < current_version

    def awaits_answer(self, now: datetime) -> bool:
        """An update was sent less than :data:`RESEND_AFTER` ago and is still unanswered."""
        return (self.pending_command_id is not None and self.pending_sent_at is not None
                and now - self.pending_sent_at < RESEND_AFTER)

    def needs_update(self, current_version: int, now: datetime) -> bool:
        return self.lags(current_version) and not self.awaits_answer(now)

    def sending(self, command_id: str, version: int, now: datetime) -> None:
        """An update to ``version`` is about to go out as command ``command_id``."""
        self.pending_command_id = command_id
        self.pending_version = version
        self.pending_sent_at = now

    def not_sent(self, command_id: str) -> None:
        """Command ``command_id`` could not go out; forget it unless another one replaced it."""
        if self.pending_command_id == command_id:
            self._clear_pending(sent_at=True)

    def has_authorization(self, needed_version: int) -> bool:
        """The site's list includes every change up to ``needed_version`` (0: nothing needed)."""
        return self.synced_version >= needed_version

    def _clear_pending(self, *, sent_at: bool = False) -> None:
        self.pending_command_id = None
        self.pending_version = None
        if sent_at:
            self.pending_sent_at = None


# --- who may do what -------------------------------------------------------------------

def check_may_register(user: Principal) -> str:
    """A driver or an admin registers a vehicle, which becomes theirs: the owner id it gets."""
    if not (user.is_driver or user.is_admin):
        raise Forbidden("only a driver or an admin registers vehicles")
    return user.subject


def check_may_search(user: Principal) -> None:
    """Looking vehicles up by plate is for drivers (their own) and admins (any)."""
    if not (user.is_driver or user.is_admin):
        raise Forbidden("only a driver or an admin looks vehicles up")


def check_may_change(user: Principal) -> None:
    """Changing or deleting a vehicle is for its owner (a driver) and admins."""
    if not (user.is_driver or user.is_admin):
        raise Forbidden("only a driver or an admin changes vehicles")


@dataclass(frozen=True)
class SearchScope:
    """Which vehicles a search may list, and what of them it shows."""

    owner_id: str | None
    """Only this account's vehicles; None: everyone's."""
    shows_id_tags: bool

    @property
    def key(self) -> str:
        """Names the scope in a cache key: answers cached for one scope never reach another."""
        return f"owner={self.owner_id}" if self.owner_id is not None else f"all:{int(self.shows_id_tags)}"


def search_scope(user: Principal, *, by_owner: bool) -> SearchScope:
    """A driver searches their own vehicles; an operator or an admin every vehicle (and may filter
    by owner); an operator never sees idTags (an idTag is enough to clone a card). Anyone else: 403."""
    if user.is_admin:
        return SearchScope(owner_id=None, shows_id_tags=True)
    if OPERATOR in user.roles:
        return SearchScope(owner_id=None, shows_id_tags=False)
    if user.is_driver:
        if by_owner:
            raise Forbidden("only operators and admins search vehicles by owner")
        return SearchScope(owner_id=user.subject, shows_id_tags=True)
    raise Forbidden("only a driver, an operator or an admin searches vehicles")


def check_may_edit_types(user: Principal) -> None:
    if not user.is_admin:
        raise Forbidden("only an admin adds or edits vehicle types")


def check_may_read_types(user: Principal) -> None:
    if not user.roles:
        raise Forbidden("reading the vehicle-type catalogue needs a role")


def visible_to(user: Principal, vehicle: Vehicle) -> bool:
    """An admin sees every vehicle; anyone else only the vehicles they own."""
    return user.is_admin or (vehicle.owner_id is not None and vehicle.owner_id == user.subject)


def unknown_vehicle(vehicle_id: str) -> NotFound:
    """The answer for a vehicle that does not exist or that the caller may not see: the same."""
    return NotFound(f"no vehicle {vehicle_id!r}", code="unknown_vehicle")


def unknown_type(type_id: str) -> NotFound:
    return NotFound(f"no vehicle type {type_id!r}", code="unknown_vehicle_type")


# --- what a vehicle may be ----------------------------------------------------------------

def normalise_plate(plate: str) -> str:
    check_text("plate", plate)
    cleaned = " ".join(plate.upper().split())
    if not _PLATE.fullmatch(cleaned):
        raise InvalidVehicle(f"plate {plate!r} must be 1-16 letters, digits, spaces or dashes",
                             code="invalid_plate", field="plate")
    return cleaned


def check_id_tags(id_tags: tuple[str, ...], *, allow_none: bool = False) -> tuple[str, ...]:
    if not id_tags and not allow_none:
        raise InvalidVehicle("id_tags must name at least one idTag", code="invalid_id_tags", field="id_tags")
    if len(id_tags) > MAX_ID_TAGS:
        raise InvalidVehicle(f"id_tags may name at most {MAX_ID_TAGS} idTags", code="invalid_id_tags",
                             field="id_tags")
    for tag in id_tags:
        if not _ID_TAG.fullmatch(tag):
            raise InvalidVehicle(f"idTag {tag!r} must be 1-20 printable ASCII characters without spaces",
                                 code="invalid_id_tags", field="id_tags")
    if len({fold_id_tag(t) for t in id_tags}) != len(id_tags):
        raise InvalidVehicle("id_tags lists the same idTag twice (idTags are case-insensitive)",
                             code="invalid_id_tags", field="id_tags")
    return id_tags


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidVehicle(f"type must be one of {', '.join(KINDS)}", code="invalid_type", field="type")
    return kind


def check_connector_types(connectors: Iterable[str], name: str = "connector_types") -> tuple[str, ...]:
    found = tuple(connectors)
    unknown = [c for c in found if c not in CONNECTOR_TYPES]
    if unknown:
        raise InvalidVehicle(f"{name}: {', '.join(repr(c) for c in unknown)} unknown; one of "
                             f"{', '.join(CONNECTOR_TYPES)}", code="invalid_connector_types", field=name)
    if len(set(found)) != len(found):
        raise InvalidVehicle(f"{name} lists a connector type twice", code="invalid_connector_types", field=name)
    return found


def check_amount(name: str, value: Decimal | None, maximum: Decimal) -> Decimal | None:
    if value is None:
        return None
    if not value.is_finite() or value <= 0 or value > maximum:
        raise InvalidVehicle(f"{name} must be above 0 and at most {maximum}", code=f"invalid_{name}", field=name)
    if value != value.quantize(Decimal("0.001")):  # stored exactly, in Wh / W
        raise InvalidVehicle(f"{name} has at most three decimals", code=f"invalid_{name}", field=name)
    return canonical(value)


def canonical(value: Decimal) -> Decimal:
    """One spelling of an amount however it was sent: 52, 52.000 and 5.2E+1 are all 52.0."""
    return value.normalize() + Decimal("0.0")


def checked_details(details: VehicleDetails, catalogue_entry: VehicleType | None,
                    id_tags: tuple[str, ...]) -> tuple[VehicleDetails, tuple[str, ...]]:
    """The details with the plate normalised and, where not given, the catalogue entry's make,
    model, battery and connectors; the idTags checked. A vehicle that does not plug in (hybrid,
    combustion) has neither idTags nor connectors."""
    plate = normalise_plate(details.plate)
    kind = check_kind(details.kind)
    make, model = check_text("make", details.make), check_text("model", details.model)
    battery = check_amount("battery_kwh", details.battery_kwh, MAX_BATTERY_KWH)
    connectors = None if details.connector_types is None else check_connector_types(details.connector_types)
    tags = check_id_tags(id_tags, allow_none=True)
    if catalogue_entry is not None:
        make = make if make is not None else catalogue_entry.make
        model = model if model is not None else catalogue_entry.model
        battery = battery if battery is not None else catalogue_entry.battery_kwh
        connectors = connectors if connectors is not None else catalogue_entry.connector_types
    if kind not in PLUG_IN_KINDS:
        if tags:
            raise InvalidVehicle(f"a {kind} vehicle does not plug in: it has no idTags", code="invalid_id_tags",
                                 field="id_tags")
        if connectors:
            raise InvalidVehicle(f"a {kind} vehicle does not plug in: it has no connector types",
                                 code="invalid_connector_types", field="connector_types")
    return replace(details, plate=plate, kind=kind, make=make, model=model, battery_kwh=battery,
                   connector_types=connectors or ()), tags


def check_unclaimed(plate: str, *, plate_holder: Vehicle | None, taken_id_tags: Sequence[str]) -> None:
    """A plate and an idTag belong to one vehicle at most."""
    if plate_holder is not None:
        raise Conflict(f"a vehicle with plate {plate!r} is already registered", code="plate_taken")
    if taken_id_tags:
        raise Conflict(f"idTag(s) {', '.join(taken_id_tags)} already belong to another vehicle",
                       code="id_tag_taken")


def register(command: RegisterVehicle, *, owner_id: str, vehicle_id: str, now: datetime,
             catalogue_entry: VehicleType | None = None) -> tuple[Vehicle, list[AuthListChange]]:
    """The new vehicle of ``owner_id`` with its idTags accepted, and the authorization-list changes
    that adds (for every site: the lists are not scoped by owner)."""
    details, id_tags = checked_details(command.details(), catalogue_entry, command.id_tags)
    vehicle = Vehicle(vehicle_id=vehicle_id, plate=details.plate, make=details.make, model=details.model,
                      created_at=now, updated_at=now,
                      id_tags=[IdTag(id_tag=tag, vehicle_id=vehicle_id, status=IdTagStatus.ACCEPTED, created_at=now)
                               for tag in id_tags],
                      owner_id=owner_id, kind=details.kind, vehicle_type_id=details.vehicle_type_id,
                      battery_kwh=details.battery_kwh, connector_types=details.connector_types or ())
    changes = [AuthListChange(id_tag=tag.id_tag, status=tag.status, vehicle_id=vehicle_id, changed_at=now)
               for tag in vehicle.id_tags]
    return vehicle, changes


@dataclass(frozen=True)
class Update:
    """What a full update did: the vehicle after it, its authorization-list changes, and whether
    its plate or owner changed (a new stretch of its registration history)."""

    vehicle: Vehicle
    changes: list[AuthListChange]
    new_registration: str | None
    """``plate_changed`` / ``owner_changed`` when the history gains a stretch, else None."""


def update(vehicle: Vehicle, command: UpdateVehicle, user: Principal, *, now: datetime,
           catalogue_entry: VehicleType | None = None) -> Update:
    """Apply a full update read at ``command.version``: a stale version is a conflict; only an
    admin gives a vehicle another owner; idTags it no longer lists are withdrawn from every site
    (Invalid), new ones accepted, kept ones keep their status (a blocked duplicate stays blocked)."""
    if command.version != vehicle.version:
        raise Conflict(f"vehicle {vehicle.vehicle_id!r} is at version {vehicle.version}, not {command.version}: "
                       "read it again and reapply the change", code="stale_version")
    owner_id = vehicle.owner_id
    if command.owner_id is not None and command.owner_id != vehicle.owner_id:
        if not user.is_admin:
            raise Forbidden("only an admin gives a vehicle another owner")
        owner_id = check_text("owner_id", command.owner_id)
    details, id_tags = checked_details(command.details(), catalogue_entry, command.id_tags)
    kept = {fold_id_tag(t.id_tag): t for t in vehicle.id_tags}
    wanted = {fold_id_tag(t): t for t in id_tags}
    changes: list[AuthListChange] = []
    tags: list[IdTag] = []
    for folded, tag in wanted.items():
        old = kept.get(folded)
        if old is not None and old.id_tag == tag:
            tags.append(old)
            continue
        if old is not None:  # the same card written in another case: the new spelling replaces it
            changes.append(AuthListChange(id_tag=old.id_tag, status=IdTagStatus.INVALID,
                                          vehicle_id=vehicle.vehicle_id, changed_at=now))
        tags.append(IdTag(id_tag=tag, vehicle_id=vehicle.vehicle_id, status=IdTagStatus.ACCEPTED, created_at=now))
        changes.append(AuthListChange(id_tag=tag, status=IdTagStatus.ACCEPTED, vehicle_id=vehicle.vehicle_id,
                                      changed_at=now))
    for folded, old in kept.items():
        if folded not in wanted:
            changes.append(AuthListChange(id_tag=old.id_tag, status=IdTagStatus.INVALID,
                                          vehicle_id=vehicle.vehicle_id, changed_at=now))
    because = ("owner_changed" if owner_id != vehicle.owner_id
               else "plate_changed" if details.plate != vehicle.plate else None)
    after = replace(vehicle, plate=details.plate, kind=details.kind, make=details.make, model=details.model,
                    vehicle_type_id=details.vehicle_type_id, battery_kwh=details.battery_kwh,
                    connector_types=details.connector_types or (), owner_id=owner_id,
                    id_tags=sorted(tags, key=lambda t: t.id_tag), version=vehicle.version + 1, updated_at=now)
    return Update(after, changes, because)


def withdraw(vehicle: Vehicle, now: datetime) -> list[AuthListChange]:
    """Deleting a vehicle: every idTag of it becomes Invalid on every site's list."""
    return [AuthListChange(id_tag=t.id_tag, status=IdTagStatus.INVALID, vehicle_id=vehicle.vehicle_id,
                           changed_at=now) for t in vehicle.id_tags]


def vehicle_type(type_id: str, *, make: str, model: str, battery_kwh: Decimal | None, max_ac_kw: Decimal | None,
                 max_dc_kw: Decimal | None, connector_types: Iterable[str], kind: str = "electric",
                 source: str | None = None, version: int = 1) -> VehicleType:
    """A catalogue entry, checked."""
    for name, text in (("make", make), ("model", model), ("source", source)):
        check_text(name, text)
    if not make.strip() or not model.strip():
        raise InvalidVehicle("make and model must not be blank", code="invalid_vehicle_type",
                             field="make" if not make.strip() else "model")
    kind = check_kind(kind)
    return VehicleType(type_id=type_id, make=make.strip(), model=model.strip(),
                       battery_kwh=check_amount("battery_kwh", battery_kwh, MAX_BATTERY_KWH),
                       max_ac_kw=check_amount("max_ac_kw", max_ac_kw, MAX_POWER_KW),
                       max_dc_kw=check_amount("max_dc_kw", max_dc_kw, MAX_POWER_KW),
                       connector_types=check_connector_types(connector_types), kind=kind, source=source,
                       version=version)


# --- where a vehicle is and what it does (from parking.* and charging.* events) --------------

@dataclass
class BayLink:
    """A bay of a site as the registry learned it from parking events: the charger connector
    serving it (from its usage events) and whether a car is in it."""

    site_id: str
    bay_id: str
    charger_id: str | None = None
    connector_id: int | None = None
    occupied: bool | None = None
    since: datetime | None = None


@dataclass
class VehicleStatus:
    """Where a vehicle is and what it does, built from events.

    ``reservation_*`` are kept for parking's reservation events, which do not exist yet: until
    they do, no vehicle is reserved."""

    vehicle_id: str
    site_id: str | None = None
    charger_id: str | None = None
    connector_id: int | None = None
    bay_id: str | None = None
    parked_since: datetime | None = None
    left_at: datetime | None = None
    session_id: str | None = None
    charging: bool = False
    charging_since: datetime | None = None
    energy_wh: int = 0
    reservation_id: str | None = None
    reserved_site_id: str | None = None
    reserved_bay_id: str | None = None
    reserved_from: datetime | None = None
    reserved_until: datetime | None = None
    updated_at: datetime | None = None

    @property
    def parked(self) -> bool:
        """At a site now: charging there, or in a bay whose sensor has not seen it leave."""
        return self.site_id is not None and self.left_at is None and (self.charging or self.bay_id is not None)

    def charging_started(self, *, session_id: str, site_id: str, charger_id: str, connector_id: int | None,
                         started_at: datetime | None, energy_wh: int, bay: BayLink | None, now: datetime) -> None:
        self.site_id, self.charger_id, self.connector_id = site_id, charger_id, connector_id
        self.session_id, self.charging = session_id, True
        self.charging_since = started_at or now
        self.energy_wh = energy_wh
        self.left_at = None
        self.bay_id = bay.bay_id if bay is not None else None
        self.parked_since = (bay.since if bay is not None and bay.occupied and bay.since is not None
                             else self.charging_since)
        self.updated_at = now

    def charging_completed(self, *, session_id: str, energy_wh: int, bay_occupied: bool | None,
                           now: datetime) -> None:
        """The session ended: the car stays parked while its bay is occupied; without a known
        bay nothing tells it is still there, so it counts as gone."""
        if self.session_id not in (None, session_id) and self.charging:
            return  # the end of an older session: the running one is newer
        self.session_id, self.charging, self.energy_wh = session_id, False, energy_wh
        if self.bay_id is None or bay_occupied is False:
            self.left_at = now
        self.updated_at = now

    def in_bay(self, bay: BayLink, now: datetime) -> None:
        """A parking event named the bay this vehicle's charger connector serves."""
        if self.bay_id is None and self.left_at is None:
            self.bay_id = bay.bay_id
            if bay.occupied and bay.since is not None and (self.parked_since is None or bay.since < self.parked_since):
                self.parked_since = bay.since
            self.updated_at = now

    def bay_freed(self, at: datetime, now: datetime) -> None:
        """Its bay's sensor saw the car leave."""
        if self.left_at is None:
            self.left_at = at
            self.updated_at = now


def serves(link: BayLink, status: VehicleStatus) -> bool:
    """The bay is the one the vehicle's charger connector serves."""
    return (link.charger_id is not None and status.site_id == link.site_id and status.charger_id == link.charger_id
            and (status.connector_id is None or link.connector_id is None or status.connector_id == link.connector_id))


def needs_full_list(synced_version: int) -> bool:
    """A site at version 0 has no list to apply changes to: it gets the whole list."""
    return synced_version == 0


def full_update(current_version: int, id_tags: Iterable[IdTag]) -> AuthListUpdate:
    """The whole list at ``current_version``, by idTag."""
    entries = [AuthListEntry(id_tag=t.id_tag, status=t.status, vehicle_id=t.vehicle_id)
               for t in sorted(id_tags, key=lambda t: t.id_tag)]
    return AuthListUpdate(version=current_version, since_version=0, full=True, entries=entries)


def changes_update(since_version: int, current_version: int, changes: Iterable[AuthListChange]) -> AuthListUpdate:
    """What a site at ``since_version`` lacks: the latest change of each idTag since then, each
    idTag in the order of its first change."""
    latest: dict[str, AuthListChange] = {}
    for change in sorted(changes, key=lambda c: c.version or 0):
        if change.version is not None and change.version > since_version:
            latest[change.id_tag] = change
    entries = [AuthListEntry(id_tag=c.id_tag, status=c.status, vehicle_id=c.vehicle_id) for c in latest.values()]
    return AuthListUpdate(version=current_version, since_version=since_version, full=False, entries=entries)
