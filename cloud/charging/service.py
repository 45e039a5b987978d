"""Charging use cases: record the edge's sessions, answer drivers' status and history."""

from __future__ import annotations

from datetime import UTC, datetime

from cloud.charging import events
from cloud.charging.domain import Session
from cloud.charging.repository import ChargingRepository
from cloud.charging.views import HistoryView, SessionView, StatusView
from cloud.contracts import Received
from cloud.contracts.errors import NotFound
from cloud.contracts.vehicles import VehicleRegistered
from cloud.platform.ports import Cache
from cloud.platform.unit_of_work import UnitOfWork, UnitOfWorkFactory
from mqtt import Envelope, SessionMeter, SessionStarted, SessionStopped, parse_body

STATUS_TTL_SECONDS = 5.0

Work = UnitOfWork[ChargingRepository]


class ChargingService:
    def __init__(self, units: UnitOfWorkFactory[ChargingRepository], cache: Cache) -> None:
        self._units = units
        self._cache = cache

    # --- consumers ------------------------------------------------------------------

    async def record_session_message(self, uow: Work, envelope: Envelope) -> None:
        """One session message from a site's edge, in the unit of work of the MQTT link (which
        already deduplicated it by envelope id and commits it with the inbox claim)."""
        body = parse_body(envelope.type, envelope.body)
        now = datetime.now(UTC)
        if isinstance(body, SessionStarted):
            session = await self._get_or_open(uow, envelope.site_id, body.transaction_id, body.charger_id, now)
            if session.apply_started(body, now):
                uow.emit(events.started(session, await self._vehicle_of(uow, session)))
        elif isinstance(body, SessionMeter):
            if body.transaction_id is None:
                return
            # A meter value may come before its start (replay after an outage): the start follows.
            session = await self._get_or_open(uow, envelope.site_id, body.transaction_id, body.charger_id, now)
            session.apply_meter(body, now)
        elif isinstance(body, SessionStopped):
            session = await self._get_or_open(uow, envelope.site_id, body.transaction_id, body.charger_id, now)
            if session.apply_stopped(body, now):
                uow.emit(events.completed(session, await self._vehicle_of(uow, session)))
        else:
            return
        await uow.repo.save(session)
        vehicle_id = await self._vehicle_of(uow, session)
        if vehicle_id:
            await self._cache.delete(_status_key(vehicle_id))

    async def on_vehicle_registered(self, event: Received[VehicleRegistered]) -> None:
        """Learn which vehicle the registered idTags belong to (once per event id)."""
        vehicle_id = event.body.vehicle_id
        async with self._units() as uow:
            if not await uow.claim(str(event.id), events.QUEUE):
                return
            await uow.repo.assign_id_tags(vehicle_id, event.body.id_tags)
        await self._cache.delete(_status_key(vehicle_id))

    # --- queries --------------------------------------------------------------------

    async def status(self, vehicle_id: str) -> StatusView:
        """The vehicle's running sessions; cached for a few seconds, dropped on every change."""
        cached = await self._cache.get(_status_key(vehicle_id))
        if cached is not None:
            return StatusView.model_validate_json(cached)
        async with self._units() as uow:
            tags = await self._tags_of(uow, vehicle_id)
            active = await uow.repo.active_sessions(tags)
        view = StatusView(vehicle_id=vehicle_id, charging=bool(active),
                          sessions=[SessionView.of(s) for s in active])
        await self._cache.set(_status_key(vehicle_id), view.model_dump_json().encode(), STATUS_TTL_SECONDS)
        return view

    async def history(self, vehicle_id: str, *, limit: int, offset: int) -> HistoryView:
        """A page of the vehicle's completed sessions, newest first."""
        async with self._units() as uow:
            tags = await self._tags_of(uow, vehicle_id)
            rows = await uow.repo.completed_sessions(tags, limit=limit, offset=offset)
        return HistoryView(vehicle_id=vehicle_id, sessions=[SessionView.of(s) for s in rows],
                           limit=limit, offset=offset)

    # --- helpers --------------------------------------------------------------------

    @staticmethod
    async def _tags_of(uow: Work, vehicle_id: str) -> list[str]:
        tags = await uow.repo.id_tags_of(vehicle_id)
        if not tags:
            raise NotFound(f"no vehicle {vehicle_id!r} is known to the charging service", code="unknown_vehicle")
        return tags

    @staticmethod
    async def _get_or_open(uow: Work, site_id: str, transaction_id: int, charger_id: str,
                           now: datetime) -> Session:
        session = await uow.repo.get(site_id, transaction_id)
        return session if session is not None else Session.new(site_id, transaction_id, charger_id, now)

    @staticmethod
    async def _vehicle_of(uow: Work, session: Session) -> str | None:
        return await uow.repo.vehicle_of(session.id_tag) if session.id_tag else None


def _status_key(vehicle_id: str) -> str:
    return f"charging:status:{vehicle_id}"
