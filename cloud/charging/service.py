"""Charging use cases: record the edge's sessions, answer drivers' status and history."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import structlog
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from cloud.charging import domain, events
from cloud.charging.models import ChargingSession, VehicleIdTag
from cloud.contracts import Received
from cloud.contracts.vehicles import VehicleRegistered
from cloud.platform.errors import NotFound
from cloud.platform.outbox import Outbox, Transaction
from cloud.platform.ports import Cache
from mqtt import Envelope, SessionMeter, SessionStarted, SessionStopped, parse_body

log = structlog.get_logger(__name__)

STATUS_TTL_SECONDS = 5.0


class ChargingService:
    def __init__(self, outbox: Outbox, cache: Cache) -> None:
        self._outbox = outbox
        self._cache = cache

    # --- consumers ------------------------------------------------------------------

    async def record_session_message(self, tx: Transaction, envelope: Envelope) -> None:
        """One session message from a site's edge (already deduplicated by the inbox)."""
        body = parse_body(envelope.type, envelope.body)
        now = datetime.now(UTC)
        if isinstance(body, SessionStarted):
            session = await self._get_or_create(tx, envelope.site_id, body.transaction_id, body.charger_id, now)
            was_new = session.started_at is None
            domain.apply_started(session, body, now)
            if was_new and session.status == domain.ACTIVE:
                tx.emit(events.session_event(events.ChargingStarted, session, await self._vehicle_of(tx, session)))
        elif isinstance(body, SessionMeter):
            if body.transaction_id is None:
                return
            # A meter value may come before its start (replay after an outage): the start follows.
            session = await self._get_or_create(tx, envelope.site_id, body.transaction_id, body.charger_id, now)
            domain.apply_meter(session, body, now)
        elif isinstance(body, SessionStopped):
            session = await self._get_or_create(tx, envelope.site_id, body.transaction_id, body.charger_id, now)
            if domain.apply_stopped(session, body, now):
                tx.emit(events.session_event(events.ChargingCompleted, session,
                                             await self._vehicle_of(tx, session)))
        else:
            return
        await tx.session.flush()
        vehicle_id = await self._vehicle_of(tx, session)
        if vehicle_id:
            await self._cache.delete(_status_key(vehicle_id))

    async def on_vehicle_registered(self, event: Received[VehicleRegistered]) -> None:
        vehicle_id = event.body.vehicle_id
        id_tags = event.body.id_tags
        async with self._outbox.transaction() as tx:
            if not await tx.claim(str(event.id), events.QUEUE):
                return
            dialect = sqlite if self._outbox.db.is_sqlite else postgresql
            table = VehicleIdTag.__table__  # type: ignore[attr-defined]
            for tag in id_tags:
                statement = dialect.insert(table).values(id_tag=tag, vehicle_id=vehicle_id)
                await tx.session.execute(statement.on_conflict_do_update(
                    index_elements=["id_tag"], set_={"vehicle_id": vehicle_id}))
        await self._cache.delete(_status_key(vehicle_id))

    # --- queries --------------------------------------------------------------------

    async def status(self, vehicle_id: str) -> dict[str, object]:
        cached = await self._cache.get(_status_key(vehicle_id))
        if cached is not None:
            return dict(json.loads(cached))
        async with self._outbox.db.session() as session:
            tags = await self._tags_of(session, vehicle_id)
            active = (await session.execute(
                select(ChargingSession).where(col(ChargingSession.id_tag).in_(tags),
                                              col(ChargingSession.status) == domain.ACTIVE)
                .order_by(col(ChargingSession.started_at).desc())
            )).scalars().all()
        result: dict[str, object] = {
            "vehicle_id": vehicle_id,
            "charging": bool(active),
            "sessions": [session_view(s) for s in active],
        }
        await self._cache.set(_status_key(vehicle_id), json.dumps(result).encode(), STATUS_TTL_SECONDS)
        return result

    async def history(self, vehicle_id: str, *, limit: int, offset: int) -> list[dict[str, object]]:
        async with self._outbox.db.session() as session:
            tags = await self._tags_of(session, vehicle_id)
            rows = (await session.execute(
                select(ChargingSession).where(col(ChargingSession.id_tag).in_(tags),
                                              col(ChargingSession.status) == domain.COMPLETED)
                .order_by(col(ChargingSession.stopped_at).desc(), col(ChargingSession.id))
                .limit(limit).offset(offset)
            )).scalars().all()
        return [session_view(s) for s in rows]

    # --- helpers --------------------------------------------------------------------

    async def _tags_of(self, session: AsyncSession, vehicle_id: str) -> list[str]:
        tags = list((await session.execute(
            select(VehicleIdTag.id_tag).where(col(VehicleIdTag.vehicle_id) == vehicle_id))).scalars())
        if not tags:
            raise NotFound(f"no vehicle {vehicle_id!r} is known to the charging service", code="unknown_vehicle")
        return tags

    async def _get(self, tx: Transaction, site_id: str, transaction_id: int) -> ChargingSession | None:
        return await tx.session.get(ChargingSession, domain.session_key(site_id, transaction_id))

    async def _get_or_create(self, tx: Transaction, site_id: str, transaction_id: int, charger_id: str,
                             now: datetime) -> ChargingSession:
        session = await self._get(tx, site_id, transaction_id)
        if session is None:
            session = domain.new_session(site_id, transaction_id, charger_id, now)
            tx.session.add(session)
        return session

    async def _vehicle_of(self, tx: Transaction, session: ChargingSession) -> str | None:
        if not session.id_tag:
            return None
        tag = await tx.session.get(VehicleIdTag, session.id_tag)
        return tag.vehicle_id if tag else None


def _status_key(vehicle_id: str) -> str:
    return f"charging:status:{vehicle_id}"


def session_view(session: ChargingSession) -> dict[str, object]:
    return {
        "session_id": session.id,
        "site_id": session.site_id,
        "charger_id": session.charger_id,
        "connector_id": session.connector_id,
        "transaction_id": session.transaction_id,
        "id_tag": session.id_tag,
        "status": session.status,
        "started_at": session.started_at.isoformat() if session.started_at else None,
        "stopped_at": session.stopped_at.isoformat() if session.stopped_at else None,
        "duration_s": domain.duration_seconds(session),
        "energy_wh": session.energy_wh,
        "stop_reason": session.stop_reason,
        "clock_suspect": session.clock_suspect,
    }
