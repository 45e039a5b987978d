"""Where charging sessions and the idTag → vehicle and vehicle → owner projections are kept.

:class:`ChargingRepository` is what the use cases need, in domain terms;
:class:`SqlChargingRepository` keeps it in the service's own database, over one platform
transaction, mapping :mod:`cloud.charging.models` rows to :class:`~cloud.charging.domain.Session`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select

from cloud.charging.domain import ACTIVE, COMPLETED, Session
from cloud.charging.models import ChargingAnomalyRow, ChargingSession, VehicleIdTag, VehicleOwner
from cloud.contracts.charging import ChargingAnomaly
from cloud.platform.outbox import Transaction


class ChargingRepository(Protocol):
    async def get(self, site_id: str, store_id: str, charger_id: str, transaction_id: int) -> Session | None:
        """The session of this transaction of this site's store and charger, if any message of it came."""

    async def open_sessions_of_store(self, site_id: str, store_id: str) -> list[Session]:
        """The running sessions of one store instance of a site (reconciliation)."""

    async def add_anomaly(self, anomaly: ChargingAnomaly, recorded_at: datetime) -> None:
        """Keep an anomaly for the site's operators."""

    async def anomalies(self, site_ids: Collection[str] | None, *, limit: int, offset: int) -> list[ChargingAnomaly]:
        """The anomalies of ``site_ids`` (every site when None), the latest first."""

    async def save(self, session: Session) -> None:
        """Insert or update the session."""

    async def active_sessions(self, id_tags: Sequence[str], *, sites: Collection[str] | None = None) -> list[Session]:
        """The running sessions started with any of ``id_tags``, the latest start first (only
        those at ``sites``, unless it is None)."""

    async def completed_sessions(self, id_tags: Sequence[str], *, limit: int, offset: int,
                                 sites: Collection[str] | None = None) -> list[Session]:
        """A page of the completed sessions of ``id_tags``, the latest stop first (then by id);
        only those at ``sites``, unless it is None."""

    async def has_sessions_at(self, id_tags: Sequence[str], sites: Collection[str]) -> bool:
        """Whether any session (running or completed) of ``id_tags`` was at one of ``sites``."""

    async def vehicle_of(self, id_tag: str) -> str | None:
        """The vehicle ``id_tag`` belongs to, if the vehicle service told us."""

    async def id_tags_of(self, vehicle_id: str) -> list[str]:
        """The idTags known to belong to ``vehicle_id`` (none for a vehicle we never heard of)."""

    async def assign_id_tags(self, vehicle_id: str, id_tags: Sequence[str]) -> None:
        """Record that ``id_tags`` belong to ``vehicle_id`` now, whoever had them before."""

    async def forget_vehicle(self, vehicle_id: str, *, owner_too: bool = False) -> None:
        """``vehicle_id`` has no idTags any more (and, ``owner_too``, no owner: it was deleted)."""

    async def owner_of(self, vehicle_id: str) -> str | None:
        """The account ``vehicle_id`` belongs to (None: unknown vehicle, or one of no driver)."""

    async def set_owner(self, vehicle_id: str, owner_id: str | None) -> None:
        """Record that ``vehicle_id`` belongs to ``owner_id`` (None: to no driver)."""


class SqlChargingRepository:
    """:class:`ChargingRepository` on the service's database, in the transaction ``tx``."""

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    async def get(self, site_id: str, store_id: str, charger_id: str, transaction_id: int) -> Session | None:
        row = (await self._tx.session.execute(select(ChargingSession).where(
            col(ChargingSession.site_id) == site_id, col(ChargingSession.store_id) == store_id,
            col(ChargingSession.charger_id) == charger_id,
            col(ChargingSession.transaction_id) == transaction_id))).scalars().first()
        return None if row is None else _session(row)

    async def open_sessions_of_store(self, site_id: str, store_id: str) -> list[Session]:
        rows = (await self._tx.session.execute(select(ChargingSession).where(
            col(ChargingSession.site_id) == site_id, col(ChargingSession.store_id) == store_id,
            col(ChargingSession.status) == ACTIVE).order_by(col(ChargingSession.transaction_id)))).scalars().all()
        return [_session(row) for row in rows]

    async def add_anomaly(self, anomaly: ChargingAnomaly, recorded_at: datetime) -> None:
        self._tx.session.add(ChargingAnomalyRow(
            id=anomaly.anomaly_id, site_id=anomaly.site_id, store_id=anomaly.store_id or "legacy", kind=anomaly.kind,
            charger_id=anomaly.charger_id, transaction_id=anomaly.transaction_id, session_id=anomaly.session_id,
            detail=anomaly.detail, observed_at=anomaly.observed_at, recorded_at=recorded_at))
        await self._tx.session.flush()

    async def anomalies(self, site_ids: Collection[str] | None, *, limit: int, offset: int) -> list[ChargingAnomaly]:
        query = select(ChargingAnomalyRow)
        if site_ids is not None:
            query = query.where(col(ChargingAnomalyRow.site_id).in_(site_ids))
        rows = (await self._tx.session.execute(
            query.order_by(col(ChargingAnomalyRow.recorded_at).desc(), col(ChargingAnomalyRow.id))
            .limit(limit).offset(offset))).scalars().all()
        return [ChargingAnomaly(anomaly_id=r.id, kind=r.kind, site_id=r.site_id, store_id=r.store_id,  # type: ignore[arg-type]
                                charger_id=r.charger_id, transaction_id=r.transaction_id, session_id=r.session_id,
                                detail=r.detail, observed_at=r.observed_at) for r in rows]

    async def save(self, session: Session) -> None:
        row = await self._tx.session.get(ChargingSession, session.id)
        if row is None:
            row = ChargingSession(id=session.id, site_id=session.site_id, store_id=session.store_id,
                                  transaction_id=session.transaction_id,
                                  charger_id=session.charger_id, status=session.status,
                                  updated_at=session.updated_at)
            self._tx.session.add(row)
        _copy(session, row)
        await self._tx.session.flush()

    async def active_sessions(self, id_tags: Sequence[str], *, sites: Collection[str] | None = None) -> list[Session]:
        query = select(ChargingSession).where(col(ChargingSession.id_tag).in_(id_tags),
                                              col(ChargingSession.status) == ACTIVE)
        if sites is not None:
            query = query.where(col(ChargingSession.site_id).in_(sites))
        rows = (await self._tx.session.execute(
            query.order_by(col(ChargingSession.started_at).desc()))).scalars().all()
        return [_session(row) for row in rows]

    async def completed_sessions(self, id_tags: Sequence[str], *, limit: int, offset: int,
                                 sites: Collection[str] | None = None) -> list[Session]:
        query = select(ChargingSession).where(col(ChargingSession.id_tag).in_(id_tags),
                                              col(ChargingSession.status) == COMPLETED)
        if sites is not None:
            query = query.where(col(ChargingSession.site_id).in_(sites))
        rows = (await self._tx.session.execute(
            query.order_by(col(ChargingSession.stopped_at).desc(), col(ChargingSession.id))
            .limit(limit).offset(offset)
        )).scalars().all()
        return [_session(row) for row in rows]

    async def has_sessions_at(self, id_tags: Sequence[str], sites: Collection[str]) -> bool:
        found = await self._tx.session.execute(
            select(ChargingSession.id).where(col(ChargingSession.id_tag).in_(id_tags),
                                             col(ChargingSession.site_id).in_(sites)).limit(1))
        return found.first() is not None

    async def vehicle_of(self, id_tag: str) -> str | None:
        row = await self._tx.session.get(VehicleIdTag, id_tag)
        return row.vehicle_id if row else None

    async def id_tags_of(self, vehicle_id: str) -> list[str]:
        return list((await self._tx.session.execute(
            select(VehicleIdTag.id_tag).where(col(VehicleIdTag.vehicle_id) == vehicle_id))).scalars())

    async def assign_id_tags(self, vehicle_id: str, id_tags: Sequence[str]) -> None:
        # An upsert, not read-then-write: two deliveries racing on one idTag must not both insert.
        dialect = sqlite if self._tx.is_sqlite else postgresql
        table = VehicleIdTag.__table__  # type: ignore[attr-defined]
        for tag in id_tags:
            statement = dialect.insert(table).values(id_tag=tag, vehicle_id=vehicle_id)
            await self._tx.session.execute(statement.on_conflict_do_update(
                index_elements=["id_tag"], set_={"vehicle_id": vehicle_id}))

    async def forget_vehicle(self, vehicle_id: str, *, owner_too: bool = False) -> None:
        await self._tx.session.execute(delete(VehicleIdTag).where(col(VehicleIdTag.vehicle_id) == vehicle_id))
        if owner_too:
            await self._tx.session.execute(delete(VehicleOwner).where(col(VehicleOwner.vehicle_id) == vehicle_id))

    async def owner_of(self, vehicle_id: str) -> str | None:
        row = await self._tx.session.get(VehicleOwner, vehicle_id)
        return row.owner_id if row else None

    async def set_owner(self, vehicle_id: str, owner_id: str | None) -> None:
        dialect = sqlite if self._tx.is_sqlite else postgresql
        table = VehicleOwner.__table__  # type: ignore[attr-defined]
        statement = dialect.insert(table).values(vehicle_id=vehicle_id, owner_id=owner_id)
        await self._tx.session.execute(statement.on_conflict_do_update(
            index_elements=["vehicle_id"], set_={"owner_id": owner_id}))


def _session(row: ChargingSession) -> Session:
    return Session(
        id=row.id, site_id=row.site_id, store_id=row.store_id, transaction_id=row.transaction_id,
        charger_id=row.charger_id, updated_at=row.updated_at, status=row.status,
        connector_id=row.connector_id, id_tag=row.id_tag,
        started_at=row.started_at, stopped_at=row.stopped_at, meter_start_wh=row.meter_start_wh,
        meter_stop_wh=row.meter_stop_wh, meter_last_wh=row.meter_last_wh, energy_wh=row.energy_wh,
        stop_reason=row.stop_reason, clock_suspect=row.clock_suspect, reconciled=row.reconciled,
        closed_by=row.closed_by)


def _copy(session: Session, row: ChargingSession) -> None:
    row.charger_id = session.charger_id
    row.status = session.status
    row.connector_id = session.connector_id
    row.id_tag = session.id_tag
    row.started_at = session.started_at
    row.stopped_at = session.stopped_at
    row.meter_start_wh = session.meter_start_wh
    row.meter_stop_wh = session.meter_stop_wh
    row.meter_last_wh = session.meter_last_wh
    row.energy_wh = session.energy_wh
    row.stop_reason = session.stop_reason
    row.clock_suspect = session.clock_suspect
    row.reconciled = session.reconciled
    row.closed_by = session.closed_by
    row.updated_at = session.updated_at
