"""Charging use cases: record the edge's sessions, answer status and history to who may see them.

Status and history: the vehicle's owner and an admin see every session; an operator or technician
the sessions at their sites without their idTags; to anyone else the vehicle is unknown
(:func:`cloud.charging.domain.reader_scope`). The status cache holds the owner's full view (and
the owner): every caller's answer is cut from it by that caller's scope after reading.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import UTC, datetime

from pydantic import BaseModel, ValidationError

from cloud.charging import domain, events
from cloud.charging.domain import Session
from cloud.charging.repository import ChargingRepository
from cloud.charging.views import AnomaliesView, HistoryView, SessionView, StatusView
from cloud.contracts import Received
from cloud.contracts.charging import ChargingAnomaly
from cloud.contracts.errors import NotFound
from cloud.contracts.identity import OPERATOR, Forbidden, Principal
from cloud.contracts.vehicles import VehicleDeleted, VehicleRegistered, VehicleUpdated
from cloud.platform.ports import Cache
from cloud.platform.unit_of_work import UnitOfWork, UnitOfWorkFactory
from mqtt import Envelope, SessionAnomaly, SessionMeter, SessionsOpen, SessionStarted, SessionStopped, parse_body

STATUS_TTL_SECONDS = 5.0

Work = UnitOfWork[ChargingRepository]


class CachedStatus(BaseModel):
    """What the status cache holds for a vehicle: its owner and the full (owner's) view."""

    owner_id: str | None
    status: StatusView


class ChargingService:
    def __init__(self, units: UnitOfWorkFactory[ChargingRepository], cache: Cache) -> None:
        self._units = units
        self._cache = cache

    # --- consumers ------------------------------------------------------------------

    async def record_session_message(self, uow: Work, envelope: Envelope) -> None:
        """One session message from a site's edge, in the unit of work of the MQTT link (which
        already deduplicated it by envelope id and commits it with the inbox claim).

        Sessions are found by (site, store instance, charger, transaction id): a replaced edge
        store, or another charger quoting the same transaction id, never reaches another session."""
        body = parse_body(envelope.type, envelope.body)
        now = datetime.now(UTC)
        site_id, store_id = envelope.site_id, domain.store_of(envelope.store_id)
        if isinstance(body, SessionStarted):
            session = await self._get_or_open(uow, site_id, store_id, body.transaction_id, body.charger_id, now)
            if session.apply_started(body, now):
                uow.emit(events.started(session, *await self._vehicle_and_owner(uow, session)))
        elif isinstance(body, SessionMeter):
            if body.transaction_id is None:
                return
            # A meter value may come before its start (replay after an outage): the start follows.
            session = await self._get_or_open(uow, site_id, store_id, body.transaction_id, body.charger_id, now)
            session.apply_meter(body, now)
        elif isinstance(body, SessionStopped):
            session = await self._get_or_open(uow, site_id, store_id, body.transaction_id, body.charger_id, now)
            if session.apply_stopped(body, now):
                uow.emit(events.completed(session, *await self._vehicle_and_owner(uow, session)))
        elif isinstance(body, SessionAnomaly):
            await self._anomaly(uow, site_id, store_id, body, now)
            return
        elif isinstance(body, SessionsOpen):
            await self._reconcile(uow, site_id, store_id, body, now)
            return
        else:
            return
        await self._saved(uow, session)

    async def _saved(self, uow: Work, session: Session) -> None:
        await uow.repo.save(session)
        vehicle_id = await self._vehicle_of(uow, session)
        if vehicle_id:
            await self._cache.delete(_status_key(vehicle_id))

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

    async def _reconcile(self, uow: Work, site_id: str, store_id: str, report: SessionsOpen, now: datetime) -> None:
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
            uow.emit(events.completed(session, *await self._vehicle_and_owner(uow, session)))
            await self._saved(uow, session)

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

    # --- helpers --------------------------------------------------------------------

    async def _full_status(self, vehicle_id: str) -> CachedStatus:
        """The owner and every running session of the vehicle (its owner's view), cached."""
        cached = await self._cache.get(_status_key(vehicle_id))
        if cached is not None:
            try:
                return CachedStatus.model_validate_json(cached)
            except ValidationError:
                pass  # written by an older version: read it again
        async with self._units() as uow:
            tags = await self._tags_of(uow, vehicle_id)
            owner_id = await uow.repo.owner_of(vehicle_id)
            active = await uow.repo.active_sessions(tags)
        full = CachedStatus(owner_id=owner_id, status=StatusView(
            vehicle_id=vehicle_id, charging=bool(active), sessions=[SessionView.of(s) for s in active]))
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


def _unknown(vehicle_id: str) -> NotFound:
    """The one answer for an unknown vehicle and for a vehicle the caller may not see."""
    return NotFound(f"no vehicle {vehicle_id!r} is known to the charging service", code="unknown_vehicle")


def _status_key(vehicle_id: str) -> str:
    return f"charging:status:{vehicle_id}"
