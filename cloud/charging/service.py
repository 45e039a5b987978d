"""Charging use cases: record the edge's sessions and the chargers' state (stations, energy finished,
faults, links), answer status (with cost so far), history, stations and rates to who may see them, and
send remote commands (start, stop, unlock, reset, availability) that wait for the charger's answer.

Status and history: the vehicle's owner and an admin see every session; an operator or technician
the sessions at their sites without their idTags; to anyone else the vehicle is unknown
(:func:`cloud.charging.domain.reader_scope`). The status cache holds the owner's full view (and
the owner): every caller's answer is cut from it by that caller's scope after reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog
from pydantic import BaseModel, ValidationError

from cloud.charging import domain, events
from cloud.charging.domain import RemoteCommand, Session, SiteRates, Station
from cloud.charging.repository import ChargingRepository, SessionKey
from cloud.charging.views import (
    AnomaliesView,
    AvailabilityRequest,
    CommandAnswer,
    HistoryView,
    RatesView,
    ResetRequest,
    SessionView,
    StartRequest,
    StationCommandAnswer,
    StationsView,
    StationView,
    StatusView,
    StopRequest,
    UnlockRequest,
)
from cloud.contracts import Received
from cloud.contracts.charging import ChargerFaulted, ChargerOffline, ChargerOnline, ChargingAnomaly, ChargingFailed
from cloud.contracts.errors import Conflict, DomainError, NotFound
from cloud.contracts.identity import OPERATOR, Forbidden, Principal
from cloud.contracts.payments import PaymentCompleted, PaymentFailed, TariffChanged
from cloud.contracts.vehicles import VehicleDeleted, VehicleRegistered, VehicleUpdated
from cloud.platform.ports import Cache
from cloud.platform.unit_of_work import UnitOfWork, UnitOfWorkFactory
from cloud.pricing import Tariff
from mqtt import (
    ChangeAvailability,
    ChargerBoot,
    ChargerCall,
    ChargerConnection,
    ChargerStatus,
    Command,
    CommandResult,
    CommandStatus,
    Envelope,
    RemoteStart,
    RemoteStop,
    Reset,
    SessionAnomaly,
    SessionMeter,
    SessionsOpen,
    SessionStarted,
    SessionStopped,
    SiteInventory,
    UnlockConnector,
    parse_body,
)

log = structlog.get_logger(__name__)

STATUS_TTL_SECONDS = 5.0

Work = UnitOfWork[ChargingRepository]


class CachedStatus(BaseModel):
    """What the status cache holds for a vehicle: its owner and the full (owner's) view."""

    owner_id: str | None
    status: StatusView


class CommandSender(Protocol):
    """The MQTT link (or a test's stand-in): publishes a command to its site."""

    async def send_command(self, command: Command) -> None: ...


class ChargingService:
    def __init__(self, units: UnitOfWorkFactory[ChargingRepository], cache: Cache, *,
                 sender: CommandSender | None = None, answer_within: float = domain.REMOTE_START_WAIT_S,
                 command_ttl: float = domain.COMMAND_TTL_S, session_wait: float = domain.SESSION_WAIT_S,
                 low_power_seconds: float = domain.LOW_POWER_SECONDS) -> None:
        self._units = units
        self._cache = cache
        self.sender = sender
        self.answer_within = answer_within
        self.command_ttl = command_ttl
        self.session_wait = session_wait
        self.low_power_seconds = low_power_seconds
        self._answered: dict[str, asyncio.Event] = {}
        """Commands this process waits for, woken when their result is recorded (the wait also re-reads)."""

    # --- consumers ------------------------------------------------------------------

    async def record_session_message(self, uow: Work, envelope: Envelope) -> None:
        """One session message from a site's edge, in the unit of work of the MQTT link (which
        already deduplicated it by envelope id and commits it with the inbox claim).

        Sessions are found by (site, store instance, charger, transaction id): a replaced edge
        store, or another charger quoting the same transaction id, never reaches another session."""
        stale: set[str] = set()
        await self._record(uow, envelope, parse_body(envelope.type, envelope.body), stale)
        for vehicle_id in stale:
            await self._cache.delete(_status_key(vehicle_id))

    async def record_session_messages(self, uow: Work, envelopes: Sequence[Envelope]) -> None:
        """The new envelopes of one MQTT batch, in one unit of work: the same rules, in the same order, as
        :meth:`record_session_message` on each in turn (two messages of one session are applied one after the
        other), set-based: the sessions, chargers and idTags the batch names are read at once
        (``uow.repo.preload``), the changes written at the end (``uow.repo.write_back``: one upsert per table
        with :class:`~cloud.charging.repository.BatchChargingRepository`), and the status cache of every vehicle
        whose sessions changed dropped with one call."""
        parsed = [(envelope, parse_body(envelope.type, envelope.body)) for envelope in envelopes]
        sessions: list[SessionKey] = []
        stations: list[tuple[str, str]] = []
        tags: list[str] = []
        for envelope, body in parsed:
            _names(envelope.site_id, domain.store_of(envelope.store_id), body, sessions, stations, tags)
        await uow.repo.preload(sessions, stations, tags)
        stale: set[str] = set()
        for envelope, body in parsed:
            await self._record(uow, envelope, body, stale)
        await uow.repo.write_back()
        if stale:
            await self._cache.delete_many([_status_key(vehicle_id) for vehicle_id in sorted(stale)])

    async def _record(self, uow: Work, envelope: Envelope, body: BaseModel, stale: set[str]) -> None:
        """The rules of one session message (``stale``: gets the vehicles whose status cache must be dropped)."""
        now = datetime.now(UTC)
        site_id, store_id = envelope.site_id, domain.store_of(envelope.store_id)
        if isinstance(body, SessionStarted):
            session = await self._get_or_open(uow, site_id, store_id, body.transaction_id, body.charger_id, now)
            if session.apply_started(body, now):
                station = await uow.repo.station(site_id, body.charger_id)
                session.power_class = station.power_class if station is not None else None
                uow.emit(events.started(session, *await self._vehicle_and_owner(uow, session)))
        elif isinstance(body, SessionMeter):
            if body.transaction_id is None:
                return
            # A meter value may come before its start (replay after an outage): the start follows.
            session = await self._get_or_open(uow, site_id, store_id, body.transaction_id, body.charger_id, now)
            if session.active and body.energy_register_wh is None and body.power_w is None:
                return
            station = await uow.repo.station(site_id, body.charger_id)
            held = station is not None and station.held_at_zero(session.connector_id or body.connector_id)
            if domain.note_meter(session, body.energy_register_wh, body.power_w, body.sampled_at, held_at_zero=held,
                                 low_power_seconds=self.low_power_seconds):
                uow.emit(events.energy_finished(session, *await self._vehicle_and_owner(uow, session), "low_power"))
            session.updated_at = now
        elif isinstance(body, SessionStopped):
            session = await self._get_or_open(uow, site_id, store_id, body.transaction_id, body.charger_id, now)
            if session.apply_stopped(body, now):
                await self._completed(uow, session)
        elif isinstance(body, SessionAnomaly):
            await self._anomaly(uow, site_id, store_id, body, now)
            return
        elif isinstance(body, SessionsOpen):
            await self._reconcile(uow, site_id, store_id, body, now, stale)
            return
        elif isinstance(body, ChargerStatus | ChargerConnection | ChargerBoot | ChargerCall):
            await self._charger_message(uow, site_id, body, now, stale)
            return
        elif isinstance(body, SiteInventory):
            await self._inventory(uow, site_id, body, now)
            return
        elif isinstance(body, CommandResult):
            await self._command_result(uow, body, now)
            return
        else:
            return
        await self._saved(uow, session, stale)

    async def _completed(self, uow: Work, session: Session) -> None:
        """A session ended: ``charging.completed`` 1.3, its summary in the history, and ``charging.failed`` for a
        stop the driver did not make (EmergencyStop, PowerLoss, a reset, ...)."""
        vehicle_id, owner_id = await self._vehicle_and_owner(uow, session)
        uow.emit(events.completed(session, vehicle_id, owner_id))
        await uow.repo.add_history(session, vehicle_id)
        if session.stop_reason in domain.ABNORMAL_STOPS:
            uow.emit(ChargingFailed(site_id=session.site_id, charger_id=session.charger_id, reason="abnormal_stop",
                                    connector_id=session.connector_id, session_id=session.id, vehicle_id=vehicle_id,
                                    owner_id=owner_id, stop_reason=session.stop_reason,
                                    detail=f"the charger stopped the session: {session.stop_reason}",
                                    failed_at=session.stopped_at or datetime.now(UTC)))

    # --- chargers ---------------------------------------------------------------------

    async def _station(self, uow: Work, site_id: str, charger_id: str, now: datetime) -> Station:
        station = await uow.repo.station(site_id, charger_id)
        return station if station is not None else Station(site_id=site_id, charger_id=charger_id, updated_at=now)

    async def _inventory(self, uow: Work, site_id: str, inventory: SiteInventory, now: datetime) -> None:
        """The site's chargers as configured at the site: maximum power, connectors (the link state and
        statuses come from the chargers' own messages)."""
        for charger in inventory.chargers:
            station = await self._station(uow, site_id, charger.charger_id, now)
            station.apply_inventory(charger.max_power_w, charger.connectors, now)
            await uow.repo.save_station(station)

    async def _charger_message(self, uow: Work, site_id: str,
                               body: ChargerStatus | ChargerConnection | ChargerBoot | ChargerCall,
                               now: datetime, stale: set[str]) -> None:
        station = await self._station(uow, site_id, body.charger_id, now)
        if isinstance(body, ChargerConnection):
            if station.apply_connection(body.online, body.at):
                event = ChargerOnline if body.online else ChargerOffline
                uow.emit(event(site_id=site_id, charger_id=body.charger_id, since=body.at))
        elif isinstance(body, ChargerBoot):
            if station.apply_connection(True, now):
                uow.emit(ChargerOnline(site_id=site_id, charger_id=body.charger_id, since=now))
        elif isinstance(body, ChargerStatus):
            await self._charger_status(uow, station, body, now, stale)
        elif isinstance(body, ChargerCall):
            self._charger_call(station, body)
        await uow.repo.save_station(station)

    async def _charger_status(self, uow: Work, station: Station, body: ChargerStatus, now: datetime,
                              stale: set[str]) -> None:
        if not station.online and station.apply_connection(True, body.observed_at):
            uow.emit(ChargerOnline(site_id=station.site_id, charger_id=station.charger_id, since=body.observed_at))
        error = None if body.error_code == "NoError" else body.error_code
        faulted = station.apply_status(body.connector_id, body.status, error, body.info, body.observed_at)
        running = [s for s in await uow.repo.active_at_charger(station.site_id, station.charger_id)
                   if body.connector_id == 0 or s.connector_id == body.connector_id]
        if faulted:
            uow.emit(ChargerFaulted(site_id=station.site_id, charger_id=station.charger_id,
                                    connector_id=body.connector_id, error_code=body.error_code, info=body.info,
                                    faulted_at=body.observed_at))
        for session in running:
            vehicle_id, owner_id = await self._vehicle_and_owner(uow, session)
            if faulted:
                uow.emit(ChargingFailed(site_id=session.site_id, charger_id=session.charger_id,
                                        reason="charger_faulted", connector_id=session.connector_id,
                                        session_id=session.id, vehicle_id=vehicle_id, owner_id=owner_id,
                                        detail=f"{body.error_code}: {body.info or ''}".rstrip(": "),
                                        failed_at=body.observed_at))
            if body.connector_id == 0:
                continue
            trigger = domain.note_status(session, body.status, body.observed_at)
            if trigger is not None:
                uow.emit(events.energy_finished(session, vehicle_id, owner_id, trigger))
            session.updated_at = now
            await self._saved(uow, session, stale)

    @staticmethod
    def _charger_call(station: Station, body: ChargerCall) -> None:
        """A charging profile the charger accepted (the site's load manager's, or another): it may hold the car
        at 0 A, which is never energy finished."""
        if body.outcome != "result" or (body.response or {}).get("payload", {}).get("status") != "Accepted":
            return
        connector = body.request.get("connectorId")
        if body.action == "SetChargingProfile" and isinstance(connector, int):
            station.apply_profile(connector, domain.profile_limit(body.request))
        elif body.action == "ClearChargingProfile":
            targets = [connector] if isinstance(connector, int) else list(station.connectors)
            for n in targets:
                station.apply_profile(n, None)

    async def _command_result(self, uow: Work, result: CommandResult, now: datetime) -> None:
        """The edge's answer to a command of ours (results of other services' commands are not ours: skipped)."""
        command = await uow.repo.command(str(result.command_id))
        if command is None:
            return
        response = result.data.get("response")
        if command.answer(str(result.status), result.detail, response if isinstance(response, dict) else None, now):
            await uow.repo.save_command(command)
            if command.type == RemoteStart.TYPE and result.status != CommandStatus.ACCEPTED:
                reason = "remote_start_timeout" if command.unanswered_by_charger else "remote_start_rejected"
                uow.emit(self._start_failed(command, reason, result.detail or str(result.status), now))
        else:
            log.info("charging.late_command_result", command_id=command.id, status=str(result.status),
                     kept=command.status)
        waiter = self._answered.get(command.id)
        if waiter is not None:
            waiter.set()

    @staticmethod
    def _start_failed(command: RemoteCommand, reason: str, detail: str, at: datetime) -> ChargingFailed:
        return ChargingFailed(site_id=command.site_id, charger_id=command.charger_id, reason=reason,  # type: ignore[arg-type]
                              connector_id=command.connector_id, vehicle_id=command.vehicle_id,
                              owner_id=command.owner_id, detail=detail[:1000], failed_at=at)

    async def on_tariff_changed(self, event: Received[TariffChanged]) -> None:
        """Keep the site's tariff (a version not newer than the one kept changes nothing); once per event id."""
        body = event.body
        tariff = Tariff.model_validate(body.tariff)
        async with self._units() as uow:
            if not await uow.claim(str(event.id), events.RATES_QUEUE):
                return
            await uow.repo.set_rates(SiteRates(site_id=body.site_id, currency=body.currency, version=body.version,
                                               changed_at=body.changed_at, tariff=tariff))

    async def on_payment_failed(self, event: Received[PaymentFailed]) -> None:
        """An invoice left due: opened in the driver-debt projection (``refuse_driver`` says whether the site
        refuses remote starts until it is paid); a failure without an invoice (an ad-hoc charge) opens
        nothing; once per event id."""
        body = event.body
        if body.invoice_id is None:
            return
        async with self._units() as uow:
            if not await uow.claim(str(event.id), events.DEBTS_QUEUE):
                return
            kept = await uow.repo.debt(body.invoice_id)
            await uow.repo.save_debt(domain.debt_failed(
                kept, invoice_id=body.invoice_id, account_id=body.account_id, site_id=body.site_id,
                amount=body.amount, currency=body.currency, refuse=body.refuse_driver, failed_at=body.failed_at))

    async def on_payment_completed(self, event: Received[PaymentCompleted]) -> None:
        """An invoice paid (at once, or later by a wallet top-up): settled in the driver-debt projection;
        once per event id."""
        body = event.body
        if body.invoice_id is None:
            return
        async with self._units() as uow:
            if not await uow.claim(str(event.id), events.DEBTS_QUEUE):
                return
            kept = await uow.repo.debt(body.invoice_id)
            await uow.repo.save_debt(domain.debt_paid(
                kept, invoice_id=body.invoice_id, account_id=body.account_id, site_id=body.site_id,
                amount=body.amount, currency=body.currency, paid_at=body.completed_at))

    async def _saved(self, uow: Work, session: Session, stale: set[str]) -> None:
        await uow.repo.save(session)
        vehicle_id = await self._vehicle_of(uow, session)
        if vehicle_id:
            stale.add(vehicle_id)

    async def _anomaly(self, uow: Work, site_id: str, store_id: str, body: SessionAnomaly, now: datetime) -> None:
        """An edge's report of a message it answered but did not apply (e.g. a foreign stop): kept and
        published; no session changes."""
        session_id = None
        if body.transaction_id is not None and body.session_charger_id is not None:
            session = await uow.repo.get(site_id, store_id, body.session_charger_id, body.transaction_id)
            session_id = session.id if session is not None else None
        await self._raise(uow, ChargingAnomaly(
            anomaly_id=str(uuid.uuid4()), kind=body.kind, site_id=site_id, store_id=store_id,
            charger_id=body.charger_id, transaction_id=body.transaction_id, session_id=session_id,
            detail=body.detail, observed_at=body.observed_at), now)

    async def _raise(self, uow: Work, anomaly: ChargingAnomaly, now: datetime) -> None:
        await uow.repo.add_anomaly(anomaly, now)
        uow.emit(anomaly)

    async def _reconcile(self, uow: Work, site_id: str, store_id: str, report: SessionsOpen, now: datetime,
                         stale: set[str]) -> None:
        """Close the sessions of this store that the edge no longer has open: with the edge's final
        figures when it has them, else with the energy known so far and a ``session_lost`` anomaly.
        A session newer than the report (a transaction id above ``last_transaction_id``) is left alone."""
        still_open = {(t.charger_id, t.transaction_id) for t in report.open}
        ended = {(t.charger_id, t.transaction_id): t for t in report.ended}
        for session in await uow.repo.open_sessions_of_store(site_id, store_id):
            key = (session.charger_id, session.transaction_id)
            if key in still_open or session.transaction_id > report.last_transaction_id:
                continue
            final = ended.get(key)
            if final is not None:
                session.close_with(final, now)
            else:
                session.close_lost(now)
                await self._raise(uow, ChargingAnomaly(
                    anomaly_id=str(uuid.uuid4()), kind="session_lost", site_id=site_id, store_id=store_id,
                    charger_id=session.charger_id, transaction_id=session.transaction_id, session_id=session.id,
                    detail=(f"the edge no longer has transaction {session.transaction_id} open and cannot say how it "
                            f"ended; closed with the {session.energy_wh} Wh known so far"),
                    observed_at=report.at), now)
            await self._completed(uow, session)
            await self._saved(uow, session, stale)

    async def on_vehicle_registered(self, event: Received[VehicleRegistered]) -> None:
        """Learn which vehicle the registered idTags belong to, and whose the vehicle is (1.1
        names the owner; a vehicle of a 1.0 event belongs to no driver); once per event id."""
        vehicle_id = event.body.vehicle_id
        async with self._units() as uow:
            if not await uow.claim(str(event.id), events.QUEUE):
                return
            await uow.repo.assign_id_tags(vehicle_id, event.body.id_tags)
            await uow.repo.set_owner(vehicle_id, event.body.owner_id)
        await self._cache.delete(_status_key(vehicle_id))

    async def on_vehicle_updated(self, event: Received[VehicleUpdated]) -> None:
        """The vehicle's idTags are exactly the event's now (those it lost belong to no vehicle),
        and its owner the event's; once per event id."""
        vehicle_id = event.body.vehicle_id
        async with self._units() as uow:
            if not await uow.claim(str(event.id), events.QUEUE):
                return
            await uow.repo.forget_vehicle(vehicle_id)
            await uow.repo.assign_id_tags(vehicle_id, event.body.id_tags)
            await uow.repo.set_owner(vehicle_id, event.body.owner_id)
        await self._cache.delete(_status_key(vehicle_id))

    async def on_vehicle_deleted(self, event: Received[VehicleDeleted]) -> None:
        """The vehicle is gone: its idTags belong to no vehicle, and it has no owner; its sessions
        stay (they were charged and billed); once per event id."""
        vehicle_id = event.body.vehicle_id
        async with self._units() as uow:
            if not await uow.claim(str(event.id), events.QUEUE):
                return
            await uow.repo.forget_vehicle(vehicle_id, owner_too=True)
        await self._cache.delete(_status_key(vehicle_id))

    # --- queries --------------------------------------------------------------------

    async def status(self, user: Principal, vehicle_id: str) -> StatusView:
        """The vehicle's running sessions that ``user`` may see; the full view is cached for a
        few seconds and dropped on every change, each caller's answer cut from it."""
        domain.require_session_reader(user)
        full = await self._full_status(vehicle_id)
        scope = domain.reader_scope(user, full.owner_id)
        if scope is None:
            raise _unknown(vehicle_id)
        if scope.sites is None:
            return full.status
        shown = [s.seen_with(scope) for s in full.status.sessions if scope.covers(s.site_id)]
        # Nothing running at their sites: the vehicle exists for them only if it charged there before.
        if not shown and not domain.sees_vehicle(scope, await self._has_sessions_at(vehicle_id, scope.sites)):
            raise _unknown(vehicle_id)
        return StatusView(vehicle_id=vehicle_id, charging=bool(shown), sessions=shown)

    async def history(self, user: Principal, vehicle_id: str, *, limit: int, offset: int) -> HistoryView:
        """A page of the vehicle's completed sessions that ``user`` may see, newest first."""
        domain.require_session_reader(user)
        async with self._units() as uow:
            tags = await self._tags_of(uow, vehicle_id)
            scope = domain.reader_scope(user, await uow.repo.owner_of(vehicle_id))
            if scope is None:
                raise _unknown(vehicle_id)
            at_sites = scope.sites is not None and await uow.repo.has_sessions_at(tags, scope.sites)
            if not domain.sees_vehicle(scope, at_sites):
                raise _unknown(vehicle_id)
            rows = await uow.repo.completed_sessions(tags, limit=limit, offset=offset, sites=scope.sites)
        return HistoryView(vehicle_id=vehicle_id, sessions=[SessionView.of(s, scope) for s in rows],
                           limit=limit, offset=offset)

    async def anomalies(self, user: Principal, site_id: str | None, *, limit: int, offset: int) -> AnomaliesView:
        """The anomalies of a site (or of every site the caller may see), newest first: an admin sees every
        site; an operator only their sites (another site is answered as unknown, 404); nobody else."""
        sites = _anomaly_sites(user, site_id)
        async with self._units() as uow:
            found = await uow.repo.anomalies(sites, limit=limit, offset=offset)
        return AnomaliesView(site_id=site_id, anomalies=found, limit=limit, offset=offset)

    # --- remote commands ------------------------------------------------------------

    async def remote_start(self, user: Principal, request: StartRequest) -> CommandAnswer:
        """RemoteStartTransaction with the vehicle's first idTag, answered within the bound
        (:data:`domain.REMOTE_START_WAIT_S`): Accepted (with the session once StartTransaction came) or
        Rejected; 409 when the charger is offline, the connector busy or the vehicle charging already;
        402 (:class:`domain.DriverInDebt`) when the vehicle's owner has an unpaid invoice at the site and the
        site refuses remote starts until it is paid; 504 when nobody answered (the command has expired at
        the edge by then)."""
        now = datetime.now(UTC)
        async with self._units() as uow:
            owner_id = await uow.repo.owner_of(request.vehicle_id)
            tags = sorted(await uow.repo.id_tags_of(request.vehicle_id))
            if not tags or not domain.may_start_for(user, owner_id):
                raise _unknown(request.vehicle_id)
            station = await self._known_station(uow, user, request.site_id, request.charger_id, staff_only=False)
            debt = None if owner_id is None else await uow.repo.refusing_debt(owner_id, request.site_id)
            if debt is not None:
                raise domain.DriverInDebt(debt)
            if request.connector_id is not None and not 1 <= request.connector_id <= max(station.connector_count, 1):
                raise NotFound(f"charger {request.charger_id!r} has no connector {request.connector_id}",
                               code="unknown_connector")
            if not station.online:
                raise Conflict(f"charger {request.charger_id!r} is offline", code="charger_offline")
            if await uow.repo.active_sessions(tags):
                raise Conflict(f"vehicle {request.vehicle_id!r} is charging already", code="vehicle_charging")
            busy = {s.connector_id for s in await uow.repo.active_at_charger(request.site_id, request.charger_id)
                    if s.connector_id is not None}
            connector = station.startable_connector(request.connector_id, busy)
            if connector is None:
                which = f"connector {request.connector_id}" if request.connector_id else "every connector"
                raise Conflict(f"{which} of charger {request.charger_id!r} is busy", code="connector_busy")
            command = Command.new(request.site_id, RemoteStart(charger_id=request.charger_id, id_tag=tags[0],
                                                               connector_id=connector),
                                  ttl=timedelta(seconds=self.command_ttl), now=now)
            record = RemoteCommand(id=str(command.id), site_id=request.site_id, charger_id=request.charger_id,
                                   type=command.type, issued_at=now, expires_at=command.expires_at,
                                   connector_id=connector, vehicle_id=request.vehicle_id, owner_id=owner_id,
                                   id_tag=tags[0])
            await uow.repo.add_command(record)
        deadline = time.monotonic() + self.answer_within
        answered = await self._round_trip(command, record, deadline)
        if answered.status != CommandStatus.ACCEPTED:
            return CommandAnswer(status="Rejected", session_id=None, command_id=record.id, connector_id=connector,
                                 detail=answered.detail)
        session = await self._session_started(request.site_id, request.charger_id, tags[0], now,
                                              min(deadline, time.monotonic() + self.session_wait))
        return CommandAnswer(status="Accepted", session_id=session, command_id=record.id, connector_id=connector,
                             detail=answered.detail)

    async def remote_stop(self, user: Principal, request: StopRequest) -> CommandAnswer:
        """RemoteStopTransaction of a running session (by id, or the vehicle's): its owner, the site's operators
        and admins; answered like a start (the session's StopTransaction follows the charger's answer)."""
        if (request.session_id is None) == (request.vehicle_id is None):
            raise DomainError("give exactly one of session_id or vehicle_id", code="invalid_stop")
        now = datetime.now(UTC)
        async with self._units() as uow:
            session = await self._session_to_stop(uow, user, request)
            command = Command.new(session.site_id, RemoteStop(charger_id=session.charger_id,
                                                              transaction_id=session.transaction_id),
                                  ttl=timedelta(seconds=self.command_ttl), now=now)
            vehicle_id, owner_id = await self._vehicle_and_owner(uow, session)
            record = RemoteCommand(id=str(command.id), site_id=session.site_id, charger_id=session.charger_id,
                                   type=command.type, issued_at=now, expires_at=command.expires_at,
                                   connector_id=session.connector_id, vehicle_id=vehicle_id, owner_id=owner_id,
                                   id_tag=session.id_tag)
            await uow.repo.add_command(record)
        answered = await self._round_trip(command, record, time.monotonic() + self.answer_within)
        return CommandAnswer(status="Accepted" if answered.status == CommandStatus.ACCEPTED else "Rejected",
                             session_id=session.id, command_id=record.id,
                             connector_id=session.connector_id, detail=answered.detail)

    async def _session_to_stop(self, uow: Work, user: Principal, request: StopRequest) -> Session:
        if request.session_id is not None:
            session = await uow.repo.by_id(request.session_id)
            if session is None:
                raise NotFound(f"no session {request.session_id!r}", code="unknown_session")
            vehicle_id = await self._vehicle_of(uow, session)
            owner_id = await uow.repo.owner_of(vehicle_id) if vehicle_id else None
            if not domain.may_stop(user, owner_id, session.site_id):
                raise NotFound(f"no session {request.session_id!r}", code="unknown_session")
            if not session.active:
                raise Conflict(f"session {session.id!r} has ended already", code="session_ended")
            return session
        assert request.vehicle_id is not None
        owner_id = await uow.repo.owner_of(request.vehicle_id)
        tags = await uow.repo.id_tags_of(request.vehicle_id)
        if not tags or not domain.may_start_for(user, owner_id):
            raise _unknown(request.vehicle_id)
        active = await uow.repo.active_sessions(tags)
        if not active:
            raise Conflict(f"vehicle {request.vehicle_id!r} is not charging", code="not_charging")
        return active[0]

    async def unlock(self, user: Principal, site_id: str, charger_id: str,
                     request: UnlockRequest) -> StationCommandAnswer:
        """UnlockConnector (a stuck cable): the site's operators and technicians, admins."""
        return await self._station_command(user, site_id, charger_id, UnlockConnector(
            charger_id=charger_id, connector_id=request.connector_id), request.connector_id)

    async def reset(self, user: Principal, site_id: str, charger_id: str,
                    request: ResetRequest) -> StationCommandAnswer:
        return await self._station_command(user, site_id, charger_id, Reset(charger_id=charger_id, type=request.type),
                                           None)

    async def change_availability(self, user: Principal, site_id: str, charger_id: str,
                                  request: AvailabilityRequest) -> StationCommandAnswer:
        return await self._station_command(user, site_id, charger_id, ChangeAvailability(
            charger_id=charger_id, connector_id=request.connector_id, type=request.type), request.connector_id)

    async def _station_command(self, user: Principal, site_id: str, charger_id: str,
                               body: UnlockConnector | Reset | ChangeAvailability,
                               connector_id: int | None) -> StationCommandAnswer:
        now = datetime.now(UTC)
        async with self._units() as uow:
            station = await self._known_station(uow, user, site_id, charger_id, staff_only=True)
            if connector_id and connector_id > max(station.connector_count, 1):
                raise NotFound(f"charger {charger_id!r} has no connector {connector_id}", code="unknown_connector")
            if not station.online:
                raise Conflict(f"charger {charger_id!r} is offline", code="charger_offline")
            command = Command.new(site_id, body, ttl=timedelta(seconds=self.command_ttl), now=now)
            record = RemoteCommand(id=str(command.id), site_id=site_id, charger_id=charger_id, type=command.type,
                                   issued_at=now, expires_at=command.expires_at, connector_id=connector_id)
            await uow.repo.add_command(record)
        answered = await self._round_trip(command, record, time.monotonic() + self.answer_within)
        return StationCommandAnswer.of(answered)

    async def _known_station(self, uow: Work, user: Principal, site_id: str, charger_id: str, *,
                             staff_only: bool) -> Station:
        """The charger, for a caller who may act on it; anyone else gets the answer an unknown charger gets."""
        allowed = domain.may_command_station(user, site_id) if staff_only else (
            user.is_admin or user.is_driver or user.operates(site_id))
        station = await uow.repo.station(site_id, charger_id)
        if station is None or not allowed:
            raise NotFound(f"no charger {charger_id!r} at site {site_id!r} is known to you", code="unknown_charger")
        return station

    async def _round_trip(self, command: Command, record: RemoteCommand, deadline: float) -> RemoteCommand:
        """Send the command and wait for its answer until ``deadline``; 503 when it cannot be sent, 504
        (and, for a remote start, ``charging.failed``) when no answer came."""
        waiter = self._answered[record.id] = asyncio.Event()
        try:
            if self.sender is None:
                raise domain.SiteUnreachable("no link to the sites is configured", code="sites_unreachable")
            try:
                await self.sender.send_command(command)
            except Exception as exc:  # NotConnected, or the broker refused it
                await self._finish(record.id, "failed", f"not sent: {exc}")
                raise domain.SiteUnreachable(f"the command could not be sent to site {record.site_id!r}: {exc}",
                                             code="sites_unreachable") from exc
            while True:
                async with self._units() as uow:
                    current = await uow.repo.command(record.id)
                if current is not None and current.answered:
                    return _answered(current)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                waiter.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, 0.25)):  # not wait_for: 3.11 can swallow a cancel
                        await waiter.wait()
        finally:
            self._answered.pop(record.id, None)
        given_up = await self._give_up(record.id)
        if given_up.answered:  # the answer came in the last moment
            return _answered(given_up)
        raise domain.NoAnswer(
            f"charger {record.charger_id!r} of site {record.site_id!r} did not answer within "
            f"{self.answer_within:g} s; the command expired at the site at {record.expires_at.isoformat()} and "
            "will not be carried out", code="no_answer")

    async def _give_up(self, command_id: str) -> RemoteCommand:
        now = datetime.now(UTC)
        async with self._units() as uow:
            command = await uow.repo.command(command_id)
            assert command is not None
            if command.give_up(now):
                await uow.repo.save_command(command)
                if command.type == RemoteStart.TYPE:
                    uow.emit(self._start_failed(command, "remote_start_timeout",
                                                "the site or the charger did not answer in time", now))
        return command

    async def _finish(self, command_id: str, status: str, detail: str) -> None:
        async with self._units() as uow:
            command = await uow.repo.command(command_id)
            if command is not None and command.answer(status, detail, None, datetime.now(UTC)):
                await uow.repo.save_command(command)

    async def _session_started(self, site_id: str, charger_id: str, id_tag: str, since: datetime,
                               deadline: float) -> str | None:
        """The session a remote start opened, once its StartTransaction arrived (else None by ``deadline``)."""
        while True:
            async with self._units() as uow:
                for session in await uow.repo.active_at_charger(site_id, charger_id):
                    if session.id_tag == id_tag:
                        return session.id
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            await asyncio.sleep(min(remaining, 0.2))

    # --- stations and rates -----------------------------------------------------------

    async def stations(self, user: Principal, site_id: str) -> StationsView:
        """A site's chargers and connectors with their live status; the session on each for the site's staff."""
        if not domain.may_see_stations(user, site_id):
            raise _unknown_site(site_id)
        async with self._units() as uow:
            found = await uow.repo.stations(site_id)
            if not found:
                raise _unknown_site(site_id)
            shown = []
            for station in found:
                sessions = None
                if domain.sees_sessions_of(user, site_id):
                    running = await uow.repo.active_at_charger(site_id, station.charger_id)
                    sessions = {s.connector_id: s.id for s in running if s.connector_id is not None}
                shown.append(StationView.of(station, sessions))
        return StationsView(site_id=site_id, stations=shown)

    async def rates(self, user: Principal, site_id: str) -> RatesView:
        """What a driver pays at the site, per bay type and power class (any signed-in caller with a role)."""
        domain.require_session_reader(user)
        async with self._units() as uow:
            rates = await uow.repo.rates(site_id)
        if rates is None:
            raise NotFound(f"no tariff is known for site {site_id!r}", code="unknown_rates")
        return RatesView.of(rates)

    # --- helpers --------------------------------------------------------------------

    async def _full_status(self, vehicle_id: str) -> CachedStatus:
        """The owner and every running session of the vehicle (its owner's view), cached."""
        cached = await self._cache.get(_status_key(vehicle_id))
        if cached is not None:
            try:
                return CachedStatus.model_validate_json(cached)
            except ValidationError:
                pass  # written by an older version: read it again
        now = datetime.now(UTC)
        async with self._units() as uow:
            tags = await self._tags_of(uow, vehicle_id)
            owner_id = await uow.repo.owner_of(vehicle_id)
            active = await uow.repo.active_sessions(tags)
            rates = {site: await uow.repo.rates(site) for site in {s.site_id for s in active}}
        full = CachedStatus(owner_id=owner_id, status=StatusView(
            vehicle_id=vehicle_id, charging=bool(active),
            sessions=[_live(s, rates.get(s.site_id), now) for s in active]))
        await self._cache.set(_status_key(vehicle_id), full.model_dump_json().encode(), STATUS_TTL_SECONDS)
        return full

    async def _has_sessions_at(self, vehicle_id: str, sites: frozenset[str]) -> bool:
        async with self._units() as uow:
            return await uow.repo.has_sessions_at(await self._tags_of(uow, vehicle_id), sites)

    @staticmethod
    async def _tags_of(uow: Work, vehicle_id: str) -> list[str]:
        tags = await uow.repo.id_tags_of(vehicle_id)
        if not tags:
            raise _unknown(vehicle_id)
        return tags

    @staticmethod
    async def _get_or_open(uow: Work, site_id: str, store_id: str, transaction_id: int, charger_id: str,
                           now: datetime) -> Session:
        session = await uow.repo.get(site_id, store_id, charger_id, transaction_id)
        return session if session is not None else Session.new(site_id, transaction_id, charger_id, now, store_id)

    @staticmethod
    async def _vehicle_of(uow: Work, session: Session) -> str | None:
        return await uow.repo.vehicle_of(session.id_tag) if session.id_tag else None

    @classmethod
    async def _vehicle_and_owner(cls, uow: Work, session: Session) -> tuple[str | None, str | None]:
        vehicle_id = await cls._vehicle_of(uow, session)
        return vehicle_id, (await uow.repo.owner_of(vehicle_id) if vehicle_id else None)


def _names(site_id: str, store_id: str, body: BaseModel, sessions: list[SessionKey], stations: list[tuple[str, str]],
           tags: list[str]) -> None:
    """What a session message reads: the sessions, the chargers (site, charger) and the idTags it names."""
    if isinstance(body, SessionStarted | SessionMeter | SessionStopped):
        if body.transaction_id is not None:
            sessions.append((site_id, store_id, body.charger_id, body.transaction_id))
        stations.append((site_id, body.charger_id))
        if isinstance(body, SessionStarted | SessionStopped) and body.id_tag:
            tags.append(body.id_tag)
    elif isinstance(body, SessionAnomaly):
        if body.transaction_id is not None and body.session_charger_id is not None:
            sessions.append((site_id, store_id, body.session_charger_id, body.transaction_id))
    elif isinstance(body, ChargerStatus | ChargerConnection | ChargerBoot | ChargerCall):
        stations.append((site_id, body.charger_id))
    elif isinstance(body, SiteInventory):
        stations.extend((site_id, charger.charger_id) for charger in body.chargers)


def _anomaly_sites(user: Principal, site_id: str | None) -> Collection[str] | None:
    if user.is_admin:
        return None if site_id is None else [site_id]
    if OPERATOR not in user.roles:
        raise Forbidden("charging anomalies are for the site's operators and admins")
    mine = set(user.sites)
    if site_id is None:
        return sorted(mine)
    if site_id not in mine:
        raise NotFound(f"no site {site_id!r} is known to you", code="unknown_site")
    return [site_id]


def _live(session: Session, rates: SiteRates | None, now: datetime) -> SessionView:
    """A running session as the status shows it: duration and cost so far, now."""
    view = SessionView.of(session)
    update: dict[str, Any] = {}
    if session.started_at is not None and not session.clock_suspect:
        update["duration_s"] = max(0, int((now - session.started_at).total_seconds()))
    if rates is not None:
        update["cost_so_far"] = domain.cost_so_far(rates, session, now)
        update["currency"] = rates.currency
    return view.model_copy(update=update)


def _answered(command: RemoteCommand) -> RemoteCommand:
    """The edge's answer, unless it says the charger never answered (then: 504, as for no answer at all)."""
    if command.unanswered_by_charger:
        raise domain.NoAnswer(
            f"charger {command.charger_id!r} of site {command.site_id!r} did not answer in time "
            f"({command.detail or command.status}); the command will not be carried out", code="no_answer")
    return command


def _unknown_site(site_id: str) -> NotFound:
    return NotFound(f"no site {site_id!r} with chargers is known to you", code="unknown_site")


def _unknown(vehicle_id: str) -> NotFound:
    """The one answer for an unknown vehicle and for a vehicle the caller may not see."""
    return NotFound(f"no vehicle {vehicle_id!r} is known to the charging service", code="unknown_vehicle")


def _status_key(vehicle_id: str) -> str:
    return f"charging:status:{vehicle_id}"
