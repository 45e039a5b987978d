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

Who may do what (:func:`check_may_register`, :func:`check_may_search`, :func:`visible_to`): a
vehicle belongs to the account that registered it (``owner_id``; vehicles registered before
ownership existed have none and belong to no driver). A driver or an admin registers vehicles; a
driver sees only their own, an admin every one; operators and technicians neither register nor
look vehicles up here. A vehicle the caller may not see is answered exactly as an unknown one.
The authorization lists are not scoped: every site authorizes every vehicle's idTags.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cloud.contracts.errors import Conflict, DomainError, NotFound
from cloud.contracts.identity import Forbidden, Principal
from mqtt import AuthListEntry, AuthListUpdate, CommandResult, CommandStatus, IdTagStatus, SiteHello

# OCPP 1.6 idTag is CiString20; cards print hex UIDs, apps use tokens: printable ASCII only.
_ID_TAG = re.compile(r"^[\x21-\x7e]{1,20}$")
_PLATE = re.compile(r"^[A-Z0-9][A-Z0-9 -]{0,14}[A-Z0-9]$|^[A-Z0-9]$")

MAX_ID_TAGS = 10

RESEND_AFTER = timedelta(minutes=10)
"""A site that reconnects says hello and is resynced at once; resending to a site that is away
would only pile duplicate commands up in its broker queue."""


class InvalidVehicle(DomainError):
    title = "Invalid vehicle"


@dataclass(frozen=True)
class RegisterVehicle:
    """Command: register a vehicle with the RFID idTags that may charge it."""

    plate: str
    id_tags: tuple[str, ...]
    make: str | None = None
    model: str | None = None


@dataclass
class IdTag:
    """An RFID card or app token (OCPP idTag) that belongs to one vehicle."""

    id_tag: str
    vehicle_id: str
    status: IdTagStatus
    created_at: datetime


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


def visible_to(user: Principal, vehicle: Vehicle) -> bool:
    """An admin sees every vehicle; anyone else only the vehicles they own."""
    return user.is_admin or (vehicle.owner_id is not None and vehicle.owner_id == user.subject)


def unknown_vehicle(vehicle_id: str) -> NotFound:
    """The answer for a vehicle that does not exist or that the caller may not see: the same."""
    return NotFound(f"no vehicle {vehicle_id!r}", code="unknown_vehicle")


def normalise_plate(plate: str) -> str:
    cleaned = " ".join(plate.upper().split())
    if not _PLATE.fullmatch(cleaned):
        raise InvalidVehicle(f"plate {plate!r} must be 1-16 letters, digits, spaces or dashes",
                             code="invalid_plate")
    return cleaned


def check_id_tags(id_tags: tuple[str, ...]) -> tuple[str, ...]:
    if not id_tags:
        raise InvalidVehicle("id_tags must name at least one idTag", code="invalid_id_tags")
    if len(id_tags) > MAX_ID_TAGS:
        raise InvalidVehicle(f"id_tags may name at most {MAX_ID_TAGS} idTags", code="invalid_id_tags")
    for tag in id_tags:
        if not _ID_TAG.fullmatch(tag):
            raise InvalidVehicle(f"idTag {tag!r} must be 1-20 printable ASCII characters without spaces",
                                 code="invalid_id_tags")
    if len(set(id_tags)) != len(id_tags):
        raise InvalidVehicle("id_tags lists the same idTag twice", code="invalid_id_tags")
    return id_tags


def check_unclaimed(plate: str, *, plate_holder: Vehicle | None, taken_id_tags: Sequence[str]) -> None:
    """A plate and an idTag belong to one vehicle at most."""
    if plate_holder is not None:
        raise Conflict(f"a vehicle with plate {plate!r} is already registered", code="plate_taken")
    if taken_id_tags:
        raise Conflict(f"idTag(s) {', '.join(taken_id_tags)} already belong to another vehicle",
                       code="id_tag_taken")


def register(command: RegisterVehicle, *, owner_id: str, vehicle_id: str,
             now: datetime) -> tuple[Vehicle, list[AuthListChange]]:
    """The new vehicle of ``owner_id`` with its idTags accepted, and the authorization-list changes
    that adds (for every site: the lists are not scoped by owner)."""
    plate = normalise_plate(command.plate)
    id_tags = check_id_tags(command.id_tags)
    vehicle = Vehicle(vehicle_id=vehicle_id, plate=plate, make=command.make, model=command.model, created_at=now,
                      id_tags=[IdTag(id_tag=tag, vehicle_id=vehicle_id, status=IdTagStatus.ACCEPTED, created_at=now)
                               for tag in id_tags],
                      owner_id=owner_id)
    changes = [AuthListChange(id_tag=tag.id_tag, status=tag.status, vehicle_id=vehicle_id, changed_at=now)
               for tag in vehicle.id_tags]
    return vehicle, changes


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
