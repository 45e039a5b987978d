"""Reservation and stay rules, free of I/O: a lot's configuration (glossary defaults), whether a
window may be booked, which bay a reservation gets, how a sensor's report opens and closes a stay,
attribution by a charging session, no-shows and overstays, and who may reserve and see what.

Everything here is pure (the standard library and the contracts); the use cases in
``service.py`` load the objects, apply these rules and store the result with its events.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cloud.contracts.errors import Conflict, DomainError, NotFound
from cloud.contracts.identity import Forbidden, Principal

BayType = Literal["ev", "regular", "accessible"]
BAY_TYPES: tuple[BayType, ...] = ("ev", "regular", "accessible")

ReservationStatus = Literal["reserved", "fulfilled", "completed", "released", "cancelled", "no_show"]
RESERVED: Final = "reserved"
FULFILLED: Final = "fulfilled"
COMPLETED: Final = "completed"
RELEASED: Final = "released"
CANCELLED: Final = "cancelled"
NO_SHOW: Final = "no_show"
HOLDING: tuple[str, ...] = (RESERVED, FULFILLED)
"""Statuses in which a reservation holds its bay for its window."""

EV_VEHICLE_TYPES = frozenset({"electric", "plug_in_hybrid"})
"""Only these may hold an ``ev`` bay."""

RESERVE_LEAD = timedelta(minutes=5)
"""ReserveNow goes to the charger this long before the window starts (glossary)."""

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

SLOT_NAMESPACE = uuid.UUID("6f1d3b52-5c0e-4a55-9d59-6a0b1a8e2f14")


def slot_id_of(site_id: str, bay_id: str) -> str:
    """The API's opaque id of (site_id, bay_id): stable, so a bay keeps it through re-inventories."""
    return str(uuid.uuid5(SLOT_NAMESPACE, f"{site_id}\x1f{bay_id}"))


# --- errors --------------------------------------------------------------------------------


class InvalidField(DomainError):
    """A request field breaks a rule: a 422 naming ``field``."""

    title = "Invalid request"

    def __init__(self, field_name: str, detail: str, *, code: str = "invalid_field") -> None:
        super().__init__(f"{field_name}: {detail}", code=code)
        self.field = field_name
        self.message = detail


class NoBayFree(Conflict):
    title = "No bay free"


def unknown_slot(slot_id: str) -> NotFound:
    return NotFound(f"no slot {slot_id!r} is known", code="unknown_slot")


def unknown_reservation(reservation_id: str) -> NotFound:
    return NotFound(f"no reservation {reservation_id!r} is known", code="unknown_reservation")


def unknown_vehicle(vehicle_id: str) -> NotFound:
    return NotFound(f"no vehicle {vehicle_id!r} is known", code="unknown_vehicle")


def unknown_lot(site_id: str) -> NotFound:
    return NotFound(f"no site {site_id!r} is known", code="unknown_site")


# --- the lot --------------------------------------------------------------------------------


@dataclass
class Lot:
    """A site's lot rules; a site nobody configured has the glossary's defaults."""

    site_id: str
    name: str | None = None
    time_zone: str = "UTC"
    opening_hours: dict[str, list[str]] | None = None
    """Per weekday (mon..sun) ``[open, close]`` as ``HH:MM`` local time; a weekday missing is closed;
    None: always open."""
    reservable_types: list[str] = field(default_factory=lambda: list(BAY_TYPES))
    max_reservation_minutes: int = 24 * 60
    booking_horizon_days: int = 30
    arrival_grace_minutes: int = 15
    max_stay_minutes: int = 24 * 60
    updated_at: datetime | None = None

    @property
    def grace(self) -> timedelta:
        return timedelta(minutes=self.arrival_grace_minutes)

    @property
    def max_stay(self) -> timedelta:
        return timedelta(minutes=self.max_stay_minutes)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


def check_lot(lot: Lot) -> None:
    """Raise :class:`InvalidField` for the first field of a lot configuration that breaks a rule."""
    try:
        ZoneInfo(lot.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidField("time_zone", f"{lot.time_zone!r} is not an IANA time zone") from None
    for name, value, low, high in (("max_reservation_minutes", lot.max_reservation_minutes, 15, 7 * 24 * 60),
                                   ("booking_horizon_days", lot.booking_horizon_days, 1, 365),
                                   ("arrival_grace_minutes", lot.arrival_grace_minutes, 0, 240),
                                   ("max_stay_minutes", lot.max_stay_minutes, 15, 30 * 24 * 60)):
        if not low <= value <= high:
            raise InvalidField(name, f"must be between {low} and {high}")
    unknown = [t for t in lot.reservable_types if t not in BAY_TYPES]
    if unknown:
        raise InvalidField("reservable_types", f"unknown bay types {unknown}; use {list(BAY_TYPES)}")
    if lot.opening_hours is not None:
        for day, hours in lot.opening_hours.items():
            if day not in WEEKDAYS:
                raise InvalidField("opening_hours", f"{day!r} is not a weekday; use {list(WEEKDAYS)}")
            try:
                opens, closes = (_hhmm(h) for h in hours)
            except (TypeError, ValueError):
                raise InvalidField(f"opening_hours.{day}", 'give ["HH:MM", "HH:MM"]') from None
            if closes <= opens and closes != time(0, 0):
                raise InvalidField(f"opening_hours.{day}", "must close after it opens (24:00 is 00:00)")


def _hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    if hours == "24" and minutes == "00":
        return time(0, 0)
    return time(int(hours), int(minutes))


def _open_interval(lot: Lot, day: datetime) -> tuple[datetime, datetime] | None:
    """The local day's opening interval (aware, local time), or None when closed."""
    assert lot.opening_hours is not None
    hours = lot.opening_hours.get(WEEKDAYS[day.weekday()])
    if not hours:
        return None
    opens, closes = _hhmm(hours[0]), _hhmm(hours[1])
    start = datetime.combine(day.date(), opens, tzinfo=lot.zone)
    end = datetime.combine(day.date(), closes, tzinfo=lot.zone)
    if closes == time(0, 0):
        end = datetime.combine(day.date() + timedelta(days=1), time(0, 0), tzinfo=lot.zone)
    return start, end


def check_window(lot: Lot, starts_at: datetime, ends_at: datetime, now: datetime) -> None:
    """A window a driver may book: not in the past, not reversed, not longer than the lot allows,
    not beyond its booking horizon, within one day's opening hours (site time zone)."""
    if starts_at.tzinfo is None:
        raise InvalidField("starts_at", "give a time with its UTC offset")
    if ends_at.tzinfo is None:
        raise InvalidField("ends_at", "give a time with its UTC offset")
    if starts_at < now - timedelta(minutes=1):
        raise InvalidField("starts_at", "is in the past")
    if ends_at <= starts_at:
        raise InvalidField("ends_at", "must be after starts_at")
    if ends_at - starts_at > timedelta(minutes=lot.max_reservation_minutes):
        raise InvalidField("ends_at", f"the lot allows reservations of at most {lot.max_reservation_minutes} minutes")
    if starts_at > now + timedelta(days=lot.booking_horizon_days):
        raise InvalidField("starts_at", f"the lot takes bookings at most {lot.booking_horizon_days} days ahead")
    if lot.opening_hours is not None:
        local = starts_at.astimezone(lot.zone)
        interval = _open_interval(lot, local)
        if interval is None or not interval[0] <= local < interval[1]:
            raise InvalidField("starts_at", "the lot is closed then (opening hours, site time)")
        if ends_at.astimezone(lot.zone) > interval[1]:
            raise InvalidField("ends_at", "the lot closes before then (opening hours, site time)")


# --- vehicles, as parking knows them -------------------------------------------------------------


@dataclass
class Vehicle:
    vehicle_id: str
    type: str
    owner_id: str | None = None
    id_tag: str | None = None
    deleted: bool = False


def check_may_reserve_for(user: Principal, vehicle: Vehicle | None, vehicle_id: str) -> Vehicle:
    """A driver reserves for their own vehicle; an admin for any; another's vehicle (or an unknown
    or deleted one) is a 404."""
    if vehicle is None or vehicle.deleted:
        raise unknown_vehicle(vehicle_id)
    if user.is_admin or (vehicle.owner_id is not None and vehicle.owner_id == user.subject):
        return vehicle
    raise unknown_vehicle(vehicle_id)


def check_vehicle_fits(vehicle: Vehicle, bay_type: str) -> None:
    if bay_type == "ev" and vehicle.type not in EV_VEHICLE_TYPES:
        raise InvalidField("vehicle_id", f"a {vehicle.type.replace('_', '-')} vehicle may not hold an EV bay; "
                           "only electric and plug-in hybrid vehicles may", code="not_an_ev")


def may_see_vehicle(user: Principal, vehicle: Vehicle | None) -> bool:
    return vehicle is not None and (user.is_admin or (vehicle.owner_id is not None
                                                      and vehicle.owner_id == user.subject))


# --- reservations ------------------------------------------------------------------------------


@dataclass
class Reservation:
    reservation_id: str
    site_id: str
    bay_id: str
    slot_id: str
    bay_type: str
    vehicle_id: str
    owner_id: str
    starts_at: datetime
    ends_at: datetime
    status: str
    created_at: datetime
    updated_at: datetime
    charger_id: str | None = None
    connector_id: int | None = None
    ocpp_reservation_id: int | None = None
    id_tag: str | None = None
    charger_status: str | None = None
    """The charger's answer to ReserveNow (Accepted, Rejected, Occupied, Faulted, Unavailable,
    NotImplemented, or failed/expired when it never answered)."""
    charger_detail: str | None = None
    reserve_command_id: str | None = None
    reserve_sent_at: datetime | None = None
    cancel_wanted: bool = False
    cancel_command_id: str | None = None
    cancel_sent_at: datetime | None = None
    cancel_status: str | None = None
    fulfilled_at: datetime | None = None
    closed_at: datetime | None = None
    stay_id: str | None = None

    @property
    def holding(self) -> bool:
        return self.status in HOLDING

    def overlaps(self, starts_at: datetime, ends_at: datetime) -> bool:
        """Half-open windows: one ending when the next starts does not overlap."""
        return self.starts_at < ends_at and starts_at < self.ends_at

    def grace_ends_at(self, lot: Lot) -> datetime:
        return self.starts_at + lot.grace

    def reserve_due(self, now: datetime) -> bool:
        """ReserveNow should go to the charger now (lead time before the window; once)."""
        return (self.status == RESERVED and self.charger_id is not None and self.reserve_command_id is None
                and self.id_tag is not None and now >= self.starts_at - RESERVE_LEAD)

    def charger_holds(self) -> bool:
        """The charger accepted (or may have accepted) the reservation: cancel it there when it ends."""
        return self.reserve_command_id is not None and self.charger_status not in (
            "Rejected", "Occupied", "Faulted", "Unavailable", "NotImplemented", "rejected")

    def end(self, status: str, now: datetime) -> None:
        self.status = status
        self.closed_at = now
        self.updated_at = now
        if self.charger_holds() and self.cancel_command_id is None and status in (CANCELLED, NO_SHOW, RELEASED):
            self.cancel_wanted = True


def pick_bay(candidates: Sequence[str], holding: Iterable[Reservation], starts_at: datetime,
             ends_at: datetime) -> str | None:
    """The first candidate bay (in the order given) with no holding reservation overlapping the window."""
    taken = {r.bay_id for r in holding if r.holding and r.overlaps(starts_at, ends_at)}
    for bay_id in candidates:
        if bay_id not in taken:
            return bay_id
    return None


def charger_answer(detail: str | None, data: Mapping[str, object], status: str) -> str:
    """The charger's OCPP status from a command.result (the edge's ``data.response.payload.status``);
    else the command's own status (failed, expired, rejected)."""
    response = data.get("response")
    if isinstance(response, dict):
        payload = response.get("payload")
        if isinstance(payload, dict) and isinstance(payload.get("status"), str):
            return str(payload["status"])
    if detail and detail.startswith("charger answered "):
        return detail.removeprefix("charger answered ").split()[0]
    return status


# --- stays -----------------------------------------------------------------------------------------


@dataclass
class Stay:
    stay_id: str
    site_id: str
    bay_id: str
    slot_id: str
    bay_type: str
    arrived_at: datetime
    limit_at: datetime
    limit_kind: Literal["reservation", "max_stay"]
    departed_at: datetime | None = None
    reservation_id: str | None = None
    vehicle_id: str | None = None
    owner_id: str | None = None
    charger_id: str | None = None
    connector_id: int | None = None
    overstay_at: datetime | None = None
    overstay_minutes: int = 0
    session_ids: list[str] = field(default_factory=list)
    sensor_known: bool = True
    closed_by: str | None = None

    @property
    def open(self) -> bool:
        return self.departed_at is None

    @property
    def duration_s(self) -> int:
        end = self.departed_at or datetime.now(UTC)
        return max(0, int((end - self.arrived_at).total_seconds()))


def open_stay(site_id: str, bay_id: str, bay_type: str, arrived_at: datetime, lot: Lot,
              reservation: Reservation | None, vehicle_owner: tuple[str | None, str | None],
              charger_id: str | None, connector_id: int | None) -> Stay:
    """A car arrived. Its limit: the reservation's end plus grace, or the lot's maximum stay."""
    if reservation is not None:
        limit_at, kind = reservation.ends_at + lot.grace, "reservation"
    else:
        limit_at, kind = arrived_at + lot.max_stay, "max_stay"
    return Stay(stay_id=str(uuid.uuid4()), site_id=site_id, bay_id=bay_id, slot_id=slot_id_of(site_id, bay_id),
                bay_type=bay_type, arrived_at=arrived_at, limit_at=limit_at,
                limit_kind="reservation" if kind == "reservation" else "max_stay",
                reservation_id=None if reservation is None else reservation.reservation_id,
                vehicle_id=vehicle_owner[0], owner_id=vehicle_owner[1], charger_id=charger_id,
                connector_id=connector_id)


def fulfils(reservation: Reservation, arrived_at: datetime, lot: Lot) -> bool:
    """An arrival fulfils a bay's reservation from one grace period before its start until its
    start plus grace (after that it is a no-show)."""
    return (reservation.status == RESERVED
            and reservation.starts_at - lot.grace <= arrived_at <= reservation.starts_at + lot.grace)


def close_stay(stay: Stay, departed_at: datetime, closed_by: str) -> None:
    stay.departed_at = max(departed_at, stay.arrived_at)
    stay.closed_by = closed_by
    over = (stay.departed_at - stay.limit_at).total_seconds()
    stay.overstay_minutes = max(0, int(over // 60)) if over > 0 else 0
    if over > 0 and stay.overstay_minutes == 0:
        stay.overstay_minutes = 1  # any time past the limit is at least a minute of overstay


def attribute(stay: Stay, session_id: str, vehicle_id: str | None, owner_id: str | None) -> bool:
    """A charging session started on the bay's connector during the stay: remembered; it
    attributes the stay when nothing did yet. True when the stay changed."""
    changed = False
    if session_id not in stay.session_ids:
        stay.session_ids.append(session_id)
        changed = True
    if stay.vehicle_id is None and vehicle_id is not None:
        stay.vehicle_id = vehicle_id
        stay.owner_id = owner_id
        changed = True
    return changed


# --- who may see and change what ---------------------------------------------------------------


def check_may_configure(user: Principal, site_id: str) -> None:
    """An admin or the site's operators change its lot and bays' service; a technician of the site
    may not (403); a scoped caller of another site gets 404; a driver 403."""
    if user.manages(site_id):
        return
    if user.operates(site_id):
        raise Forbidden("only an admin or an operator of the site changes its lot and bays")
    if user.sites:
        raise unknown_lot(site_id)
    raise Forbidden("only an admin or an operator of the site changes its lot and bays")


def sees_site_details(user: Principal, site_id: str) -> bool:
    """Operators, technicians of the site and admins see who is in a bay; drivers see states only."""
    return user.operates(site_id)


# --- unpaid invoices (the debt projection fed by payment.failed / payment.completed) ----------------


@dataclass(frozen=True)
class Debt:
    """An invoice whose payment failed (open while ``paid_at`` is None); ``refuse`` is the site's billing
    setting carried by ``payment.failed`` (``refuse_driver``). Mirrors the charging service's projection."""

    invoice_id: str
    account_id: str
    site_id: str | None
    amount: Decimal
    currency: str
    refuse: bool
    failed_at: datetime | None = None
    paid_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.paid_at is None

    @property
    def refuses(self) -> bool:
        """Open, and its site refuses the driver new reservations until it is paid."""
        return self.open and self.refuse


def debt_failed(kept: Debt | None, *, invoice_id: str, account_id: str, site_id: str | None, amount: Decimal,
                currency: str, refuse: bool, failed_at: datetime) -> Debt:
    """The row after a failed payment of the invoice: opened; an open one takes the newest failure's
    setting; a paid one stays paid (a late or redelivered failure reopens nothing)."""
    if kept is None:
        return Debt(invoice_id=invoice_id, account_id=account_id, site_id=site_id, amount=amount, currency=currency,
                    refuse=refuse, failed_at=failed_at)
    if not kept.open or (kept.failed_at is not None and failed_at < kept.failed_at):
        return kept
    return Debt(invoice_id=kept.invoice_id, account_id=kept.account_id, site_id=kept.site_id, amount=amount,
                currency=currency, refuse=refuse, failed_at=failed_at)


def debt_paid(kept: Debt | None, *, invoice_id: str, account_id: str, site_id: str | None, amount: Decimal,
              currency: str, paid_at: datetime) -> Debt:
    """The row after the invoice was paid: settled (kept, so that a late failure does not reopen it)."""
    if kept is None:
        return Debt(invoice_id=invoice_id, account_id=account_id, site_id=site_id, amount=amount, currency=currency,
                    refuse=False, paid_at=paid_at)
    if not kept.open:
        return kept
    return Debt(invoice_id=kept.invoice_id, account_id=kept.account_id, site_id=kept.site_id, amount=kept.amount,
                currency=kept.currency, refuse=kept.refuse, failed_at=kept.failed_at, paid_at=paid_at)


class DriverInDebt(DomainError):
    """The driver owes the site an invoice whose payment failed, and the site refuses new reservations until
    it is paid (HTTP 402, naming the oldest such invoice; the charging service's remote start answers alike)."""

    status = 402
    title = "Payment required"

    def __init__(self, debt: Debt) -> None:
        super().__init__(f"invoice {debt.invoice_id} of {debt.amount} {debt.currency} is unpaid: this site refuses "
                         "new reservations until it is paid (a wallet top-up pays it)", code="unpaid_invoice")
        self.invoice_id = debt.invoice_id
        self.amount = debt.amount
        self.currency = debt.currency
