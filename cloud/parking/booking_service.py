"""Booking use cases: reservations, the lot's status, stays driven by the bay sensors, the lot's
configuration, and ReserveNow / CancelReservation through the site's command path.

Reservations of one site are serialised by :meth:`BookingRepository.lock_site_for_booking`, the
first write of the unit of work: on PostgreSQL a row lock on the site (plus an exclusion constraint
on overlapping windows of one bay), on SQLite the single writer. So two requests never both see a
bay free: exactly one gets it, the other a 409.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import structlog
from prometheus_client import Counter

from cloud.contracts import Received
from cloud.contracts.charging import ChargingCompleted, ChargingStarted
from cloud.contracts.errors import Conflict, NotFound
from cloud.contracts.identity import Principal
from cloud.contracts.parking import Arrived, Cancelled, LotConfigured, NoShow, Overstay, Released, Reserved
from cloud.contracts.payments import PaymentCompleted, PaymentFailed
from cloud.contracts.vehicles import VehicleDeleted, VehicleRegistered, VehicleUpdated
from cloud.parking import booking
from cloud.parking.booking import (
    CANCELLED,
    COMPLETED,
    FULFILLED,
    NO_SHOW,
    RELEASED,
    RESERVE_LEAD,
    RESERVED,
    InvalidField,
    Lot,
    Reservation,
    Stay,
    Vehicle,
)
from cloud.parking.booking_repository import BookingRepository
from cloud.parking.domain import OCCUPIED, UNKNOWN, Bay, check_may_see_site
from cloud.parking.views import (
    SLOT_STATES,
    HistoryItemOut,
    HistoryOut,
    LotOut,
    ReservationOut,
    SlotDetailOut,
    SlotOut,
    StatusOut,
    StayOut,
)
from cloud.platform.mqtt_link import NotConnected
from cloud.platform.ports import Cache
from cloud.platform.unit_of_work import UnitOfWork, UnitOfWorkFactory
from mqtt import BayOccupancy, CancelReservation, Command, CommandResult, Envelope, Reserve, parse_body

log = structlog.get_logger(__name__)

QUEUE = "parking.booking-events"
DEBTS_QUEUE = "parking.payment-events"
"""``payment.failed`` and ``payment.completed``: the driver-debt projection behind refused reservations."""
STATUS_TTL_SECONDS = 30.0
COMMAND_TTL = timedelta(minutes=5)

UNKNOWN_BAYS = Counter("evpark_parking_unknown_bay_reports_total",
                       "sensor reports of bays the site's lot does not list", ["site_id"])

Work = UnitOfWork[BookingRepository]


class CommandSender(Protocol):
    async def send_command(self, command: Command) -> None: ...


def status_key(site_id: str, version: int | None) -> str:
    """The cache key of a site's status at one version (every change bumps it in its own commit)."""
    return f"parking:status:{site_id}:{version}"


class BookingService:
    def __init__(self, units: UnitOfWorkFactory[BookingRepository], cache: Cache, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._units = units
        self._cache = cache
        self._clock = clock
        self.wanted = asyncio.Event()
        """Set when a reservation command or a deadline may be due; wakes :meth:`run`."""

    # --- reserving --------------------------------------------------------------------------

    async def reserve(self, user: Principal, *, vehicle_id: str, site_id: str, bay_id: str | None,
                      bay_type: str | None, starts_at: datetime, ends_at: datetime) -> ReservationOut:
        if (bay_id is None) == (bay_type is None):
            raise InvalidField("bay_id", "give exactly one of bay_id or bay_type")
        now = self._clock()
        async with self._units() as uow:
            seq = await uow.repo.lock_site_for_booking(site_id)  # first: serialises the site's reservations
            if seq is None:
                raise booking.unknown_lot(site_id)
            vehicle = booking.check_may_reserve_for(user, await uow.repo.get_vehicle(vehicle_id), vehicle_id)
            debt = await uow.repo.refusing_debt(vehicle.owner_id or user.subject, site_id)
            if debt is not None:
                raise booking.DriverInDebt(debt)  # the unit of work rolls back: nothing stored
            lot = await uow.repo.get_lot(site_id) or Lot(site_id=site_id)
            booking.check_window(lot, starts_at, ends_at, now)
            bays = [bay for bay in await uow.repo.bays_of(site_id) if bay.in_service and bay.type is not None]
            holding = await uow.repo.holding(site_id, starts_at, ends_at)
            if bay_id is not None:
                bay = next((b for b in bays if b.bay_id == bay_id), None)
                if bay is None:
                    raise NotFound(f"site {site_id!r} has no bay {bay_id!r}", code="unknown_bay")
                assert bay.type is not None
                if bay.type not in lot.reservable_types:
                    raise InvalidField("bay_id", f"{bay.type} bays of this lot are not reservable")
                booking.check_vehicle_fits(vehicle, bay.type)
                if bay.out_of_service:
                    raise Conflict(f"bay {bay_id!r} is out of service", code="bay_out_of_service")
                if booking.pick_bay([bay.bay_id], holding, starts_at, ends_at) is None:
                    raise Conflict(f"bay {bay_id!r} is held for an overlapping window", code="bay_taken")
                chosen = bay
            else:
                assert bay_type is not None
                if bay_type not in booking.BAY_TYPES:
                    raise InvalidField("bay_type", f"use one of {list(booking.BAY_TYPES)}")
                if bay_type not in lot.reservable_types:
                    raise InvalidField("bay_type", f"{bay_type} bays of this lot are not reservable")
                booking.check_vehicle_fits(vehicle, bay_type)
                candidates = [b.bay_id for b in bays if b.type == bay_type and not b.out_of_service]
                picked = booking.pick_bay(candidates, holding, starts_at, ends_at)
                if picked is None:
                    raise booking.NoBayFree(f"no {bay_type} bay of site {site_id!r} is free for that window",
                                            code="no_bay_free")
                chosen = next(b for b in bays if b.bay_id == picked)
            assert chosen.type is not None
            reservation = Reservation(
                reservation_id=str(uuid.uuid4()), site_id=site_id, bay_id=chosen.bay_id,
                slot_id=booking.slot_id_of(site_id, chosen.bay_id), bay_type=chosen.type, vehicle_id=vehicle_id,
                owner_id=vehicle.owner_id or user.subject, starts_at=starts_at.astimezone(UTC),
                ends_at=ends_at.astimezone(UTC), status=RESERVED, created_at=now, updated_at=now,
                charger_id=chosen.charger_id, connector_id=chosen.connector_id if chosen.charger_id else None,
                ocpp_reservation_id=seq if chosen.charger_id else None, id_tag=vehicle.id_tag)
            await uow.repo.save_reservation(reservation)
            uow.emit(Reserved(**_reservation_facts(reservation), reserved_at=now))
        await self._changed(site_id)
        log.info("bay reserved", site_id=site_id, bay_id=reservation.bay_id, reservation_id=reservation.reservation_id)
        return _reservation_out(reservation, True)

    async def release(self, user: Principal, *, reservation_id: str | None, vehicle_id: str | None) -> ReservationOut:
        """Cancel a reservation not yet fulfilled, or release the hold of a fulfilled one."""
        if (reservation_id is None) == (vehicle_id is None):
            raise InvalidField("reservation_id", "give exactly one of reservation_id or vehicle_id")
        now = self._clock()
        async with self._units() as uow:
            if reservation_id is not None:
                found = await uow.repo.get_reservation(reservation_id, lock=False)
                if found is None or not _may_hold(user, found):
                    raise booking.unknown_reservation(reservation_id)
            else:
                assert vehicle_id is not None
                vehicle = await uow.repo.get_vehicle(vehicle_id)
                if not booking.may_see_vehicle(user, vehicle):
                    raise booking.unknown_vehicle(vehicle_id)
                holding = await uow.repo.reservations_of_vehicle(vehicle_id, booking.HOLDING)
                if not holding:
                    raise NotFound(f"vehicle {vehicle_id!r} holds no reservation", code="no_reservation")
                found = min(holding, key=lambda r: r.starts_at)
            # the site first, then the reservation read afresh (the sensor's lock order): an arrival that
            # fulfilled it meanwhile makes this a release, not a cancel
            await uow.repo.lock_site_for_booking(found.site_id)
            reservation = await uow.repo.get_reservation(found.reservation_id) or found
            if reservation.status == RESERVED:
                reservation.end(CANCELLED, now)
                uow.emit(Cancelled(**_reservation_facts(reservation), cancelled_at=now,
                                   by="driver" if reservation.owner_id == user.subject else "operator"))
            elif reservation.status == FULFILLED:
                reservation.end(RELEASED, now)
            else:
                raise Conflict(f"reservation {reservation.reservation_id!r} has ended already ({reservation.status})",
                               code="reservation_ended")
            await uow.repo.save_reservation(reservation)
        await self._changed(reservation.site_id)
        return _reservation_out(reservation, True)

    # --- reads -------------------------------------------------------------------------------

    async def status(self, user: Principal, site_id: str) -> StatusOut:
        """Every bay of the site with its state and usage, counted (see :meth:`status_json`)."""
        return StatusOut.model_validate_json(await self.status_json(user, site_id))

    async def status_json(self, user: Principal, site_id: str) -> bytes:
        """:class:`StatusOut` as JSON, cached under the site's status version: every change bumps
        the version in its own commit, so a cached answer is never older than the last change."""
        now = self._clock()
        async with self._units() as uow:
            version = await uow.repo.status_version(site_id)
        key = status_key(site_id, version)
        cached = None if version is None else await self._cache.get(key)
        if cached is not None:
            return cached
        async with self._units() as uow:
            await uow.repo.one_snapshot()  # the bays and their stays as of one moment (and the version they are)
            version = await uow.repo.status_version(site_id)
            bays = [bay for bay in await uow.repo.bays_of(site_id) if bay.in_service]
            if not bays:
                raise booking.unknown_lot(site_id)
            holding = await uow.repo.holding(site_id, now, now + timedelta(days=400))
            stays = {bay.bay_id: await uow.repo.open_stay(site_id, bay.bay_id, lock=False) for bay in bays}
        # valid until the next reservation starts or ends (the state changes then without a write)
        boundaries = [t for r in holding for t in (r.starts_at, r.ends_at) if t > now]
        ttl = min([STATUS_TTL_SECONDS, *((t - now).total_seconds() for t in boundaries)])
        holding = [r for r in holding if r.starts_at <= now < r.ends_at]
        held = {r.bay_id for r in holding}
        slots = [_slot_out(bay, bay.bay_id in held, stays[bay.bay_id], now) for bay in bays]
        counts: dict[str, int] = {state: sum(1 for s in slots if s.state == state) for state in SLOT_STATES}
        by_type: dict[str, dict[str, int]] = {}
        for slot in slots:
            per = by_type.setdefault(slot.type or "unknown", dict.fromkeys(SLOT_STATES, 0))
            per[slot.state] += 1
        body = StatusOut(site_id=site_id, slots=slots, counts=counts, by_type=by_type).model_dump_json().encode()
        if ttl > 0.05 and version is not None:
            await self._cache.set(status_key(site_id, version), body, ttl)
        return body

    async def slot(self, user: Principal, slot_id: str) -> SlotDetailOut:
        now = self._clock()
        async with self._units() as uow:
            await uow.repo.one_snapshot()  # the bay's state and its stay as of one moment
            bay = await uow.repo.bay_by_slot(slot_id)
            if bay is None:
                raise booking.unknown_slot(slot_id)
            stay = await uow.repo.open_stay(bay.site_id, bay.bay_id, lock=False)
            upcoming = await uow.repo.reservations_of_bay(bay.site_id, bay.bay_id, now, lock=False)
        current = next((r for r in upcoming if r.starts_at <= now < r.ends_at), None)
        after = [r for r in upcoming if r is not current][:10]
        details = booking.sees_site_details(user, bay.site_id)
        base = _slot_out(bay, current is not None, stay, now)
        return SlotDetailOut(**base.model_dump(), site_id=bay.site_id,
                             stay=None if stay is None else _stay_out(stay, details or stay.owner_id == user.subject),
                             reservation=None if current is None else _reservation_out(current, _may_hold(user,
                                                                                                          current)),
                             next_reservations=[_reservation_out(r, _may_hold(user, r)) for r in after])

    async def history(self, user: Principal, vehicle_id: str, *, limit: int, offset: int) -> HistoryOut:
        async with self._units() as uow:
            vehicle = await uow.repo.get_vehicle(vehicle_id)
            if not booking.may_see_vehicle(user, vehicle):
                raise booking.unknown_vehicle(vehicle_id)
            stays = [s for s in await uow.repo.stays_of_vehicle(vehicle_id) if not s.open]
            reservations = [r for r in await uow.repo.reservations_of_vehicle(vehicle_id)
                            if r.status in (COMPLETED, RELEASED, CANCELLED, NO_SHOW, FULFILLED)]
        items = [HistoryItemOut(kind="stay", at=s.arrived_at, stay=_stay_out(s, True)) for s in stays]
        items += [HistoryItemOut(kind="reservation", at=r.starts_at, reservation=_reservation_out(r, True))
                  for r in reservations]
        items.sort(key=lambda item: item.at, reverse=True)
        return HistoryOut(vehicle_id=vehicle_id, items=items[offset:offset + limit], total=len(items), limit=limit,
                          offset=offset)

    # --- the lot and its bays (operators) ---------------------------------------------------------

    async def lot(self, user: Principal, site_id: str) -> LotOut:
        check_may_see_site(user, site_id, hidden=booking.unknown_lot(site_id))
        async with self._units() as uow:
            if not await uow.repo.site_exists(site_id):
                raise booking.unknown_lot(site_id)
            lot = await uow.repo.get_lot(site_id) or Lot(site_id=site_id)
        return _lot_out(lot)

    def check_may_configure(self, user: Principal, site_id: str) -> None:
        booking.check_may_configure(user, site_id)

    async def configure_lot(self, user: Principal, lot: Lot) -> LotOut:
        booking.check_may_configure(user, lot.site_id)
        booking.check_lot(lot)
        lot.updated_at = now = self._clock()
        async with self._units() as uow:
            if not await uow.repo.site_exists(lot.site_id):
                raise booking.unknown_lot(lot.site_id)
            await uow.repo.save_lot(lot)
            uow.emit(LotConfigured(site_id=lot.site_id, time_zone=lot.time_zone,
                                   arrival_grace_minutes=lot.arrival_grace_minutes,
                                   max_stay_minutes=lot.max_stay_minutes, configured_at=now))
        await self._changed(lot.site_id)
        return _lot_out(lot)

    async def set_service(self, user: Principal, slot_id: str, *, in_service: bool, reason: str) -> SlotOut:
        now = self._clock()
        async with self._units() as uow:
            bay = await uow.repo.bay_by_slot(slot_id)
            if bay is None:
                raise booking.unknown_slot(slot_id)
            try:
                booking.check_may_configure(user, bay.site_id)
            except NotFound:  # an operator of another site: as for a slot that does not exist
                raise booking.unknown_slot(slot_id) from None
            bay.out_of_service = not in_service
            bay.service_reason = reason
            bay.service_changed_at = now
            await uow.repo.save_bay(bay)
            await uow.repo.bump_status(bay.site_id)
            stay = await uow.repo.open_stay(bay.site_id, bay.bay_id, lock=False)
        await self._changed(bay.site_id)
        return _slot_out(bay, False, stay, now)

    # --- what the sites and the other services say -----------------------------------------------

    async def on_site_message(self, uow: Work, envelope: Envelope) -> None:
        """In the link's unit of work, after the bay itself was updated: a sensor report opens or
        closes the bay's stay; a command result of ReserveNow / CancelReservation is kept."""
        if envelope.type.startswith(("bay.", "site.inventory")):
            await uow.repo.bump_status(envelope.site_id)
        body = parse_body(envelope.type, envelope.body)
        if isinstance(body, BayOccupancy):
            await self._sensed(uow, envelope.site_id, body)
        elif isinstance(body, CommandResult) and body.command_type in (Reserve.TYPE, CancelReservation.TYPE):
            await self._charger_answered(uow, body)

    async def _sensed(self, uow: Work, site_id: str, report: BayOccupancy) -> None:
        bay = await uow.repo.get_bay(site_id, report.bay_id)
        if bay is None or bay.type is None:
            UNKNOWN_BAYS.labels(site_id=site_id).inc()
            log.warning("sensor reported a bay the lot does not list", site_id=site_id, bay_id=report.bay_id)
            return
        if bay.changed_at != report.changed_at:  # an older report the bay did not take
            return
        stay = await uow.repo.open_stay(site_id, bay.bay_id)
        lot = await uow.repo.get_lot(site_id) or Lot(site_id=site_id)
        at = report.changed_at
        if report.state == OCCUPIED and stay is None:
            candidates = await uow.repo.reservations_of_bay(site_id, bay.bay_id, at - lot.grace)
            reservation = next((r for r in candidates if booking.fulfils(r, at, lot)), None)
            stay = booking.open_stay(site_id, bay.bay_id, bay.type, at, lot, reservation,
                                     (reservation.vehicle_id, reservation.owner_id) if reservation else (None, None),
                                     bay.charger_id, bay.connector_id)
            if reservation is not None:
                reservation.status = FULFILLED
                reservation.fulfilled_at = at
                reservation.stay_id = stay.stay_id
                reservation.updated_at = self._clock()
                await uow.repo.save_reservation(reservation)
            await uow.repo.save_stay(stay)
            uow.emit(Arrived(**_stay_facts(stay)))
            log.info("stay opened", site_id=site_id, bay_id=bay.bay_id, reservation_id=stay.reservation_id)
        elif report.state == OCCUPIED and stay is not None:
            stay.sensor_known = True
            await uow.repo.save_stay(stay)
        elif report.state == UNKNOWN and stay is not None:
            stay.sensor_known = False
            await uow.repo.save_stay(stay)
        elif stay is not None:  # free: the car left
            await self._close(uow, stay, at, "sensor")

    async def _close(self, uow: Work, stay: Stay, at: datetime,
                     closed_by: Literal["sensor", "session", "operator"]) -> None:
        booking.close_stay(stay, at, closed_by)
        await uow.repo.save_stay(stay)
        if stay.reservation_id is not None:
            reservation = await uow.repo.get_reservation(stay.reservation_id)
            if reservation is not None and reservation.status in (FULFILLED, RELEASED):
                reservation.end(COMPLETED if reservation.status == FULFILLED else RELEASED, self._clock())
                if reservation.charger_holds() and reservation.cancel_command_id is None \
                        and not stay.session_ids:
                    reservation.cancel_wanted = True
                await uow.repo.save_reservation(reservation)
        uow.emit(Released(**_stay_facts(stay), departed_at=stay.departed_at or at, duration_s=stay.duration_s,
                          overstay_minutes=stay.overstay_minutes, session_ids=list(stay.session_ids),
                          closed_by=closed_by, sensor_known=stay.sensor_known))
        log.info("stay closed", site_id=stay.site_id, bay_id=stay.bay_id, vehicle_id=stay.vehicle_id,
                 overstay_minutes=stay.overstay_minutes)

    async def _charger_answered(self, uow: Work, result: CommandResult) -> None:
        reservation = await uow.repo.reservation_by_command(str(result.command_id))
        if reservation is None:
            return
        answer = booking.charger_answer(result.detail, dict(result.data), str(result.status))
        if str(result.command_id) == reservation.reserve_command_id:
            reservation.charger_status = answer
            reservation.charger_detail = (result.detail or "")[:500] or None
            if answer != "Accepted":
                log.info("charger did not take the reservation; held in the cloud only",
                         reservation_id=reservation.reservation_id, answer=answer)
        else:
            reservation.cancel_status = answer
        reservation.updated_at = self._clock()
        await uow.repo.save_reservation(reservation)

    async def on_charging_started(self, event: Received[ChargingStarted]) -> None:
        """A session started on a bay's connector: it joins the bay's open stay and attributes it
        when nothing did yet. On a bay without a sensor (it never reported) the session opens the
        stay (glossary: such stays are opened and closed by their sessions)."""
        body = event.body
        async with self._units() as uow:
            if not await uow.claim(str(event.id), QUEUE):
                return
            bay = await uow.repo.bay_by_connector(body.site_id, body.charger_id, body.connector_id)
            if bay is None or bay.type is None:
                return
            await uow.repo.bump_status(bay.site_id)  # the site before the stay: the sensor's lock order
            stay = await uow.repo.open_stay(bay.site_id, bay.bay_id)
            if stay is None and not bay.ever_reported:
                at = body.started_at or self._clock()
                lot = await uow.repo.get_lot(bay.site_id) or Lot(site_id=bay.site_id)
                candidates = await uow.repo.reservations_of_bay(bay.site_id, bay.bay_id, at - lot.grace)
                reservation = next((r for r in candidates if booking.fulfils(r, at, lot)
                                    and r.vehicle_id == body.vehicle_id), None)
                stay = booking.open_stay(bay.site_id, bay.bay_id, bay.type, at, lot, reservation,
                                         (body.vehicle_id, body.owner_id), bay.charger_id, bay.connector_id)
                stay.sensor_known = False
                if reservation is not None:
                    reservation.status, reservation.fulfilled_at, reservation.stay_id = FULFILLED, at, stay.stay_id
                    reservation.updated_at = self._clock()
                    await uow.repo.save_reservation(reservation)
                booking.attribute(stay, body.session_id, body.vehicle_id, body.owner_id)
                await uow.repo.save_stay(stay)
                uow.emit(Arrived(**_stay_facts(stay)))
            elif stay is None or not booking.attribute(stay, body.session_id, body.vehicle_id, body.owner_id):
                return
            else:
                await uow.repo.save_stay(stay)
        await self._changed(bay.site_id)

    async def on_charging_completed(self, event: Received[ChargingCompleted]) -> None:
        """A session ended: the stay it belongs to ends with it when nothing else can tell the
        departure, i.e. on a bay without a sensor, or whose sensor is unknown now (the stay's
        ``sensor_known`` is false then: idle ends at the session's end)."""
        body = event.body
        async with self._units() as uow:
            if not await uow.claim(str(event.id), QUEUE):
                return
            bay = await uow.repo.bay_by_connector(body.site_id, body.charger_id, body.connector_id)
            if bay is None:
                return
            await uow.repo.bump_status(bay.site_id)  # the site before the stay: the sensor's lock order
            stay = await uow.repo.open_stay(bay.site_id, bay.bay_id)
            if stay is None or body.session_id not in stay.session_ids:
                return
            if bay.ever_reported and bay.state != UNKNOWN:
                return  # the sensor will see the departure
            stay.sensor_known = False
            await self._close(uow, stay, body.stopped_at or self._clock(), "session")
        await self._changed(bay.site_id)

    async def on_payment_failed(self, event: Received[PaymentFailed]) -> None:
        """An invoice left due: opened in the driver-debt projection (``refuse_driver`` says whether the site
        refuses new reservations until it is paid); a failure without an invoice (an ad-hoc charge) opens
        nothing; once per event id."""
        body = event.body
        if body.invoice_id is None:
            return
        async with self._units() as uow:
            if not await uow.claim(str(event.id), DEBTS_QUEUE):
                return
            kept = await uow.repo.debt(body.invoice_id)
            await uow.repo.save_debt(booking.debt_failed(
                kept, invoice_id=body.invoice_id, account_id=body.account_id, site_id=body.site_id,
                amount=body.amount, currency=body.currency, refuse=body.refuse_driver, failed_at=body.failed_at))

    async def on_payment_completed(self, event: Received[PaymentCompleted]) -> None:
        """An invoice paid (at once, or later by a wallet top-up): settled in the driver-debt projection;
        once per event id."""
        body = event.body
        if body.invoice_id is None:
            return
        async with self._units() as uow:
            if not await uow.claim(str(event.id), DEBTS_QUEUE):
                return
            kept = await uow.repo.debt(body.invoice_id)
            await uow.repo.save_debt(booking.debt_paid(
                kept, invoice_id=body.invoice_id, account_id=body.account_id, site_id=body.site_id,
                amount=body.amount, currency=body.currency, paid_at=body.completed_at))

    async def on_vehicle_registered(self, event: Received[VehicleRegistered]) -> None:
        body = event.body
        await self._vehicle(event, Vehicle(vehicle_id=body.vehicle_id, type=body.type or "electric",
                                           owner_id=body.owner_id, id_tag=next(iter(body.id_tags), None)))

    async def on_vehicle_updated(self, event: Received[VehicleUpdated]) -> None:
        body = event.body
        await self._vehicle(event, Vehicle(vehicle_id=body.vehicle_id, type=body.type, owner_id=body.owner_id,
                                           id_tag=next(iter(body.id_tags), None)))

    async def on_vehicle_deleted(self, event: Received[VehicleDeleted]) -> None:
        body = event.body
        await self._vehicle(event, Vehicle(vehicle_id=body.vehicle_id, type=body.type, owner_id=body.owner_id,
                                           deleted=True))

    async def _vehicle(self, event: Received[Any], vehicle: Vehicle) -> None:
        async with self._units() as uow:
            if await uow.claim(str(event.id), QUEUE):
                await uow.repo.save_vehicle(vehicle)

    # --- deadlines and the chargers' reservations (a supervised loop) --------------------------------

    async def tick(self, sender: CommandSender | None) -> None:
        """No-shows, overstays, and the ReserveNow / CancelReservation commands due now.

        Each no-show and overstay is its own transaction that locks the site first, then re-reads its
        row locked (the order a sensor report takes: site, stay, reservation), so an arrival or a
        departure that lands meanwhile is neither undone nor deadlocked against."""
        now = self._clock()
        async with self._units() as uow:
            lots: dict[str, Lot] = {}
            late = []
            for candidate in await uow.repo.reserved_before(now):
                lot = lots.get(candidate.site_id) or await uow.repo.get_lot(candidate.site_id) \
                    or Lot(site_id=candidate.site_id)
                lots[candidate.site_id] = lot
                if now > candidate.grace_ends_at(lot):
                    late.append((candidate.reservation_id, candidate.site_id))
            overdue = [(s.stay_id, s.site_id) for s in await uow.repo.open_stays_past_limit(now)]
        for reservation_id, site_id in late:
            async with self._units() as uow:
                await uow.repo.bump_status(site_id)
                reservation = await uow.repo.get_reservation(reservation_id)
                lot = await uow.repo.get_lot(site_id) or Lot(site_id=site_id)
                if reservation is None or reservation.status != RESERVED or now <= reservation.grace_ends_at(lot):
                    continue
                reservation.end(NO_SHOW, now)
                await uow.repo.save_reservation(reservation)
                uow.emit(NoShow(**_reservation_facts(reservation), grace_ended_at=reservation.grace_ends_at(lot)))
            log.info("no-show", reservation_id=reservation.reservation_id, site_id=reservation.site_id)
        for stay_id, site_id in overdue:
            async with self._units() as uow:
                await uow.repo.bump_status(site_id)
                stay = await uow.repo.get_stay(stay_id)
                if stay is None or not stay.open or stay.overstay_at is not None or stay.limit_at >= now:
                    continue
                stay.overstay_at = now
                await uow.repo.save_stay(stay)
                uow.emit(Overstay(**_stay_facts(stay), limit="reservation" if stay.limit_kind == "reservation"
                                  else "max_stay", limit_at=stay.limit_at))
        if sender is not None:
            await self.send_due_commands(sender)

    async def send_due_commands(self, sender: CommandSender) -> int:
        now = self._clock()
        async with self._units() as uow:
            due = await uow.repo.commands_due(now + RESERVE_LEAD)
        sent = 0
        for item in due:
            command = await self._prepare(item.reservation_id, now)
            if command is None:
                continue
            try:
                await sender.send_command(command)
            except NotConnected:
                return sent
            async with self._units() as uow:
                reservation = await uow.repo.get_reservation(item.reservation_id)
                if reservation is not None:
                    if str(command.id) == reservation.reserve_command_id:
                        reservation.reserve_sent_at = self._clock()
                    elif str(command.id) == reservation.cancel_command_id:
                        reservation.cancel_sent_at = self._clock()
                    await uow.repo.save_reservation(reservation)
            sent += 1
            log.info("reservation command sent", reservation_id=item.reservation_id, type=command.type)
        return sent

    async def _prepare(self, reservation_id: str, now: datetime) -> Command | None:
        async with self._units() as uow:
            reservation = await uow.repo.get_reservation(reservation_id)
            if reservation is None or reservation.charger_id is None or reservation.ocpp_reservation_id is None:
                return None
            lot = await uow.repo.get_lot(reservation.site_id) or Lot(site_id=reservation.site_id)
            if reservation.cancel_wanted and reservation.cancel_sent_at is None:
                body: Reserve | CancelReservation = CancelReservation(
                    charger_id=reservation.charger_id, reservation_id=reservation.ocpp_reservation_id)
                command = Command.new(reservation.site_id, body, ttl=COMMAND_TTL, now=now)
                reservation.cancel_command_id = str(command.id)
            elif reservation.status == RESERVED and reservation.reserve_sent_at is None:
                if reservation.id_tag is None:
                    reservation.reserve_sent_at = now
                    reservation.charger_status = "NoIdTag"
                    reservation.charger_detail = "the vehicle has no idTag: held in the cloud only"
                    await uow.repo.save_reservation(reservation)
                    return None
                body = Reserve(charger_id=reservation.charger_id, connector_id=reservation.connector_id or 0,
                               reservation_id=reservation.ocpp_reservation_id, id_tag=reservation.id_tag,
                               expiry_date=reservation.grace_ends_at(lot))
                command = Command.new(reservation.site_id, body, ttl=COMMAND_TTL, now=now)
                reservation.reserve_command_id = str(command.id)
            else:
                return None
            await uow.repo.save_reservation(reservation)
        return command

    async def run(self, sender: CommandSender | None, *, interval: float = 5.0) -> None:
        while True:
            self.wanted.clear()
            try:
                await self.tick(sender)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database away: next round
                log.warning("booking tick failed; will retry", error=repr(exc))
            with suppress(TimeoutError):
                async with asyncio.timeout(interval):  # not wait_for: on 3.11 it can swallow a cancel (gh-86296)
                    await self.wanted.wait()

    async def _changed(self, site_id: str) -> None:
        self.wanted.set()


# --- read models --------------------------------------------------------------------------------


def _may_hold(user: Principal, reservation: Reservation) -> bool:
    return user.is_admin or reservation.owner_id == user.subject or user.manages(reservation.site_id)


def _reservation_facts(r: Reservation) -> dict[str, Any]:
    return {"reservation_id": r.reservation_id, "slot_id": r.slot_id, "site_id": r.site_id, "bay_id": r.bay_id,
            "bay_type": r.bay_type, "vehicle_id": r.vehicle_id, "owner_id": r.owner_id, "starts_at": r.starts_at,
            "ends_at": r.ends_at, "charger_id": r.charger_id, "connector_id": r.connector_id}


def _stay_facts(s: Stay) -> dict[str, Any]:
    return {"stay_id": s.stay_id, "slot_id": s.slot_id, "site_id": s.site_id, "bay_id": s.bay_id,
            "bay_type": s.bay_type, "arrived_at": s.arrived_at, "reservation_id": s.reservation_id,
            "vehicle_id": s.vehicle_id, "owner_id": s.owner_id, "charger_id": s.charger_id,
            "connector_id": s.connector_id}


def _reservation_out(r: Reservation, whose: bool) -> ReservationOut:
    return ReservationOut(reservation_id=r.reservation_id, slot_id=r.slot_id, site_id=r.site_id, bay_id=r.bay_id,
                          bay_type=r.bay_type, vehicle_id=r.vehicle_id if whose else None, starts_at=r.starts_at,
                          ends_at=r.ends_at, status=r.status, charger_id=r.charger_id, connector_id=r.connector_id,
                          charger_status=r.charger_status, charger_cancel_status=r.cancel_status,
                          created_at=r.created_at if whose else None)


def _stay_out(s: Stay, whose: bool) -> StayOut:
    return StayOut(stay_id=s.stay_id, slot_id=s.slot_id, site_id=s.site_id, bay_id=s.bay_id, arrived_at=s.arrived_at,
                   departed_at=s.departed_at, duration_s=s.duration_s,
                   reservation_id=s.reservation_id if whose else None,
                   vehicle_id=s.vehicle_id if whose else None, overstay_minutes=s.overstay_minutes,
                   session_ids=list(s.session_ids) if whose else [], closed_by=s.closed_by)




def _slot_out(bay: Bay, held: bool, stay: Stay | None, now: datetime) -> SlotOut:
    if bay.out_of_service or not bay.in_service:
        state = "out_of_service"
    elif bay.state == OCCUPIED:
        state = "occupied"
    elif held:
        state = "reserved"
    elif bay.state == UNKNOWN:
        state = "unknown"
    else:
        state = "free"
    usage: str | None = bay.usage
    if stay is not None and stay.overstay_at is not None:
        usage = "overstay"
    return SlotOut(slot_id=booking.slot_id_of(bay.site_id, bay.bay_id), bay_id=bay.bay_id, type=bay.type,
                   state=state, usage=usage, charger_id=bay.charger_id, connector_id=bay.connector_id,  # type: ignore[arg-type]
                   out_of_service_reason=bay.service_reason if bay.out_of_service else None)


def _lot_out(lot: Lot) -> LotOut:
    return LotOut(site_id=lot.site_id, name=lot.name, time_zone=lot.time_zone, opening_hours=lot.opening_hours,
                  reservable_types=list(lot.reservable_types), max_reservation_minutes=lot.max_reservation_minutes,
                  booking_horizon_days=lot.booking_horizon_days, arrival_grace_minutes=lot.arrival_grace_minutes,
                  max_stay_minutes=lot.max_stay_minutes, updated_at=lot.updated_at)
