"""Where charging sessions and the idTag → vehicle and vehicle → owner projections are kept.

:class:`ChargingRepository` is what the use cases need, in domain terms;
:class:`SqlChargingRepository` keeps it in the service's own database, over one platform
transaction, mapping :mod:`cloud.charging.models` rows to :class:`~cloud.charging.domain.Session`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select

from cloud.charging.domain import (
    ACTIVE,
    COMPLETED,
    ConnectorState,
    Debt,
    RemoteCommand,
    Session,
    SiteRates,
    Station,
)
from cloud.charging.models import (
    ChargerStationRow,
    ChargingAnomalyRow,
    ChargingCommandRow,
    ChargingDebtRow,
    ChargingHistoryRow,
    ChargingRateRow,
    ChargingSession,
    VehicleIdTag,
    VehicleOwner,
)
from cloud.contracts.charging import ChargingAnomaly
from cloud.platform.outbox import Transaction
from cloud.pricing import Tariff


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

    async def by_id(self, session_id: str) -> Session | None:
        """The session with this opaque id."""

    async def active_at_charger(self, site_id: str, charger_id: str) -> list[Session]:
        """The running sessions on a charger's connectors (every store of the site)."""

    async def add_history(self, session: Session, vehicle_id: str | None) -> None:
        """Keep a closed session's summary in ``charging_history`` (once; a repeat changes nothing)."""

    async def station(self, site_id: str, charger_id: str) -> Station | None:
        """A charger of a site with its connectors, if its inventory or a message named it."""

    async def stations(self, site_id: str) -> list[Station]:
        """The chargers of a site, by charger id."""

    async def save_station(self, station: Station) -> None:
        """Insert or update a charger and its connectors."""

    async def rates(self, site_id: str) -> SiteRates | None:
        """The site's tariff in force (from ``payment.tariff_changed``)."""

    async def set_rates(self, rates: SiteRates) -> None:
        """Keep ``rates`` unless a newer version is kept already."""

    async def add_command(self, command: RemoteCommand) -> None:
        """Keep a command sent to a charger."""

    async def command(self, command_id: str) -> RemoteCommand | None:
        """A command sent to a charger, with its answer once it came."""

    async def save_command(self, command: RemoteCommand) -> None:
        """Update a command's answer."""

    async def debt(self, invoice_id: str) -> Debt | None:
        """The invoice's row of the driver-debt projection (locked until the transaction ends)."""

    async def save_debt(self, debt: Debt) -> None:
        """Insert or update an invoice's row of the driver-debt projection."""

    async def refusing_debt(self, account_id: str, site_id: str) -> Debt | None:
        """The account's oldest open debt at the site whose site refuses it remote starts until paid."""


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


    async def by_id(self, session_id: str) -> Session | None:
        row = await self._tx.session.get(ChargingSession, session_id)
        return None if row is None else _session(row)

    async def active_at_charger(self, site_id: str, charger_id: str) -> list[Session]:
        rows = (await self._tx.session.execute(select(ChargingSession).where(
            col(ChargingSession.site_id) == site_id, col(ChargingSession.charger_id) == charger_id,
            col(ChargingSession.status) == ACTIVE))).scalars().all()
        return [_session(row) for row in rows]

    async def add_history(self, session: Session, vehicle_id: str | None) -> None:
        if await self._tx.session.get(ChargingHistoryRow, session.id) is not None:
            return
        self._tx.session.add(ChargingHistoryRow(
            session_id=session.id, site_id=session.site_id, charger_id=session.charger_id,
            connector_id=session.connector_id, vehicle_id=vehicle_id, started_at=session.started_at,
            stopped_at=session.stopped_at, duration_s=session.duration_seconds(), energy_wh=session.energy_wh,
            meter_start_wh=session.meter_start_wh, meter_stop_wh=session.meter_stop_wh,
            stop_reason=session.stop_reason, energy_finished_at=session.energy_finished_at,
            power_class=session.power_class, meter_backwards=session.meter_backwards, closed_by=session.closed_by))
        await self._tx.session.flush()

    async def station(self, site_id: str, charger_id: str) -> Station | None:
        rows = (await self._tx.session.execute(select(ChargerStationRow).where(
            col(ChargerStationRow.site_id) == site_id, col(ChargerStationRow.charger_id) == charger_id)
            .order_by(col(ChargerStationRow.connector_id)))).scalars().all()
        return _station(list(rows)) if rows else None

    async def stations(self, site_id: str) -> list[Station]:
        rows = (await self._tx.session.execute(select(ChargerStationRow).where(
            col(ChargerStationRow.site_id) == site_id)
            .order_by(col(ChargerStationRow.charger_id), col(ChargerStationRow.connector_id)))).scalars().all()
        by_charger: dict[str, list[ChargerStationRow]] = {}
        for row in rows:
            by_charger.setdefault(row.charger_id, []).append(row)
        return [_station(group) for group in by_charger.values()]

    async def save_station(self, station: Station) -> None:
        station.connector(0)
        for state in station.connectors.values():
            key = (station.site_id, station.charger_id, state.connector_id)
            row = await self._tx.session.get(ChargerStationRow, key)
            if row is None:
                row = ChargerStationRow(site_id=station.site_id, charger_id=station.charger_id,
                                        connector_id=state.connector_id, updated_at=station.updated_at)
                self._tx.session.add(row)
            row.status, row.error_code, row.info = state.status, state.error_code, state.info
            row.status_at, row.profile_limit = state.status_at, state.profile_limit
            row.online, row.online_since = station.online, station.online_since
            row.max_power_w, row.connector_count = station.max_power_w, station.connector_count
            row.updated_at = station.updated_at
        await self._tx.session.flush()

    async def rates(self, site_id: str) -> SiteRates | None:
        row = await self._tx.session.get(ChargingRateRow, site_id)
        if row is None:
            return None
        return SiteRates(site_id=row.site_id, currency=row.currency, version=row.version, changed_at=row.changed_at,
                         tariff=Tariff.model_validate_json(row.tariff))

    async def set_rates(self, rates: SiteRates) -> None:
        row = await self._tx.session.get(ChargingRateRow, rates.site_id)
        if row is None:
            row = ChargingRateRow(site_id=rates.site_id, currency=rates.currency, version=rates.version,
                                  changed_at=rates.changed_at, tariff="")
            self._tx.session.add(row)
        elif row.version >= rates.version:
            return
        row.currency, row.version, row.changed_at = rates.currency, rates.version, rates.changed_at
        row.tariff = rates.tariff.model_dump_json()
        await self._tx.session.flush()

    async def add_command(self, command: RemoteCommand) -> None:
        self._tx.session.add(ChargingCommandRow(
            id=command.id, status=command.status, site_id=command.site_id, charger_id=command.charger_id,
            connector_id=command.connector_id, type=command.type, vehicle_id=command.vehicle_id,
            owner_id=command.owner_id, id_tag=command.id_tag, detail=command.detail,
            response=None if command.response is None else json.dumps(command.response),
            issued_at=command.issued_at, expires_at=command.expires_at, answered_at=command.answered_at))
        await self._tx.session.flush()

    async def command(self, command_id: str) -> RemoteCommand | None:
        row = await self._tx.session.get(ChargingCommandRow, command_id)
        if row is None:
            return None
        return RemoteCommand(id=row.id, site_id=row.site_id, charger_id=row.charger_id, connector_id=row.connector_id,
                             type=row.type, vehicle_id=row.vehicle_id, owner_id=row.owner_id, id_tag=row.id_tag,
                             status=row.status, detail=row.detail,
                             response=json.loads(row.response) if row.response else None,
                             issued_at=row.issued_at, expires_at=row.expires_at, answered_at=row.answered_at)

    async def save_command(self, command: RemoteCommand) -> None:
        row = await self._tx.session.get(ChargingCommandRow, command.id)
        assert row is not None
        row.status, row.detail, row.answered_at = command.status, command.detail, command.answered_at
        row.response = None if command.response is None else json.dumps(command.response)
        await self._tx.session.flush()

    async def debt(self, invoice_id: str) -> Debt | None:
        row = await self._tx.session.get(ChargingDebtRow, invoice_id, with_for_update=not self._tx.is_sqlite)
        return None if row is None else _debt(row)

    async def save_debt(self, debt: Debt) -> None:
        row = await self._tx.session.get(ChargingDebtRow, debt.invoice_id)
        if row is None:
            row = ChargingDebtRow(invoice_id=debt.invoice_id, account_id=debt.account_id, site_id=debt.site_id,
                                  amount="0", currency=debt.currency)
            self._tx.session.add(row)
        row.amount, row.currency, row.refuse = str(debt.amount), debt.currency, debt.refuse
        row.failed_at, row.paid_at = debt.failed_at, debt.paid_at
        await self._tx.session.flush()

    async def refusing_debt(self, account_id: str, site_id: str) -> Debt | None:
        statement = (select(ChargingDebtRow)
                     .where(col(ChargingDebtRow.account_id) == account_id, col(ChargingDebtRow.site_id) == site_id,
                            col(ChargingDebtRow.paid_at).is_(None), col(ChargingDebtRow.refuse).is_(True))
                     .order_by(col(ChargingDebtRow.failed_at), col(ChargingDebtRow.invoice_id)).limit(1))
        row = (await self._tx.session.execute(statement)).scalars().first()
        return None if row is None else _debt(row)


def _station(rows: list[ChargerStationRow]) -> Station:
    head = rows[0]
    station = Station(site_id=head.site_id, charger_id=head.charger_id, updated_at=head.updated_at,
                      online=head.online, online_since=head.online_since, max_power_w=head.max_power_w,
                      connector_count=head.connector_count)
    for row in rows:
        station.connectors[row.connector_id] = ConnectorState(
            connector_id=row.connector_id, status=row.status, error_code=row.error_code, info=row.info,
            status_at=row.status_at, profile_limit=row.profile_limit)
    return station


def _session(row: ChargingSession) -> Session:
    return Session(
        id=row.id, site_id=row.site_id, store_id=row.store_id, transaction_id=row.transaction_id,
        charger_id=row.charger_id, updated_at=row.updated_at, status=row.status,
        connector_id=row.connector_id, id_tag=row.id_tag,
        started_at=row.started_at, stopped_at=row.stopped_at, meter_start_wh=row.meter_start_wh,
        meter_stop_wh=row.meter_stop_wh, meter_last_wh=row.meter_last_wh, energy_wh=row.energy_wh,
        stop_reason=row.stop_reason, clock_suspect=row.clock_suspect, reconciled=row.reconciled,
        closed_by=row.closed_by, power_w=row.power_w, sampled_at=row.sampled_at, low_power_since=row.low_power_since,
        energy_finished_at=row.energy_finished_at, meter_backwards=row.meter_backwards, power_class=row.power_class)


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
    row.power_w = session.power_w
    row.sampled_at = session.sampled_at
    row.low_power_since = session.low_power_since
    row.energy_finished_at = session.energy_finished_at
    row.meter_backwards = session.meter_backwards
    row.power_class = session.power_class


def _debt(row: ChargingDebtRow) -> Debt:
    return Debt(invoice_id=row.invoice_id, account_id=row.account_id, site_id=row.site_id,
                amount=Decimal(row.amount), currency=row.currency, refuse=row.refuse, failed_at=row.failed_at,
                paid_at=row.paid_at)
