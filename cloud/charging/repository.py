"""Where charging sessions and the idTag → vehicle and vehicle → owner projections are kept.

:class:`ChargingRepository` is what the use cases need, in domain terms;
:class:`SqlChargingRepository` keeps it in the service's own database, over one platform
transaction, mapping :mod:`cloud.charging.models` rows to :class:`~cloud.charging.domain.Session`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import fields, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, Table, delete, tuple_
from sqlalchemy import select as core_select
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

SessionKey = tuple[str, str, str, int]
"""What identifies a session: (site, store, charger, transaction id)."""


class ChargingRepository(Protocol):
    async def preload(self, sessions: Collection[SessionKey], stations: Collection[tuple[str, str]],
                      id_tags: Collection[str]) -> None:
        """A batch is about to read these sessions, chargers (site, charger) and idTags: read them at once
        (a repository that reads each on demand anyway may ignore it)."""

    async def write_back(self) -> None:
        """Write what the batch changed (a repository that writes each change at once has nothing to do)."""

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

    async def preload(self, sessions: Collection[SessionKey], stations: Collection[tuple[str, str]],
                      id_tags: Collection[str]) -> None:
        return None  # reads each row when asked (:class:`BatchChargingRepository` reads a batch's at once)

    async def write_back(self) -> None:
        return None  # every save is written at once

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


class BatchChargingRepository(SqlChargingRepository):
    """The repository of one MQTT batch (``ChargingService.record_session_messages``): the sessions, chargers and
    idTags the batch names are read with one query each (:meth:`preload`), the batch's envelopes then read and
    change them in memory, in order, and :meth:`write_back` writes the changed ones with one upsert per table.

    Reads within the batch see the batch's own changes (the running sessions of a charger or of a store are
    the database's, overlaid with the sessions changed in memory). Every object handed out is a copy, so, as
    with the plain repository, only what is saved counts. Everything else (history, anomalies, commands,
    vehicles, rates) goes to the database as in :class:`SqlChargingRepository`. Sessions and chargers are read
    and written with SQLAlchemy Core, never through the ORM's identity map, so nothing stale is ever read back.
    """

    def __init__(self, tx: Transaction) -> None:
        super().__init__(tx)
        self._sessions: dict[SessionKey, Session | None] = {}
        self._changed_sessions: dict[str, Session] = {}
        self._stations: dict[tuple[str, str], Station | None] = {}
        self._changed_stations: dict[tuple[str, str], Station] = {}
        self._vehicles: dict[str, str | None] = {}
        self._owners: dict[str, str | None] = {}

    async def preload(self, sessions: Collection[SessionKey], stations: Collection[tuple[str, str]],
                      id_tags: Collection[str]) -> None:
        wanted = [key for key in dict.fromkeys(sessions) if key not in self._sessions]
        for chunk in _chunks(wanted, PRELOAD_CHUNK):
            table = _SESSIONS
            found = {_key_of(s): s for s in await self._select_sessions(
                tuple_(table.c.site_id, table.c.store_id, table.c.charger_id, table.c.transaction_id).in_(chunk))}
            for key in chunk:
                self._sessions[key] = found.get(key)
        pairs = [pair for pair in dict.fromkeys(stations) if pair not in self._stations]
        for pair_chunk in _chunks(pairs, PRELOAD_CHUNK):
            table = _STATIONS
            rows = (await self._tx.session.execute(core_select(table).where(
                tuple_(table.c.site_id, table.c.charger_id).in_(pair_chunk)).order_by(table.c.connector_id))).all()
            grouped: dict[tuple[str, str], list[Any]] = {}
            for row in rows:
                grouped.setdefault((row.site_id, row.charger_id), []).append(row)
            for pair in pair_chunk:
                self._stations[pair] = _station(grouped[pair]) if pair in grouped else None
        tags = set(id_tags) | {s.id_tag for s in self._sessions.values() if s is not None and s.id_tag}
        await self._preload_vehicles([tag for tag in tags if tag not in self._vehicles])

    async def _preload_vehicles(self, tags: Sequence[str]) -> None:
        tag_table, owner_table = VehicleIdTag.__table__, VehicleOwner.__table__  # type: ignore[attr-defined]
        for chunk in _chunks(list(tags), PRELOAD_CHUNK):
            rows = (await self._tx.session.execute(
                core_select(tag_table.c.id_tag, tag_table.c.vehicle_id, owner_table.c.vehicle_id.label("owned"),
                       owner_table.c.owner_id)
                .select_from(tag_table.outerjoin(owner_table, owner_table.c.vehicle_id == tag_table.c.vehicle_id))
                .where(tag_table.c.id_tag.in_(chunk)))).all()
            for tag in chunk:
                self._vehicles[tag] = None
            for row in rows:
                self._vehicles[row.id_tag] = row.vehicle_id
                if row.owned is not None:
                    self._owners[row.vehicle_id] = row.owner_id

    async def write_back(self) -> None:
        if self._changed_sessions:
            rows = [{c.name: getattr(session, c.name) for c in _SESSIONS.columns}
                    for session in self._changed_sessions.values()]
            await self._upsert(_SESSIONS, rows, ["id"])
            self._changed_sessions.clear()
        if self._changed_stations:
            rows = [_station_row(station, state) for station in self._changed_stations.values()
                    for state in station.connectors.values()]
            await self._upsert(_STATIONS, rows, ["site_id", "charger_id", "connector_id"])
            self._changed_stations.clear()

    async def _upsert(self, table: Table, rows: list[dict[str, object]], keys: list[str]) -> None:
        """One ``INSERT … ON CONFLICT (keys) DO UPDATE`` for every row, executed for all rows at once (executemany:
        the statement is compiled once and cached, whatever the number of rows)."""
        dialect = sqlite if self._tx.is_sqlite else postgresql
        statement = dialect.insert(table)
        await self._tx.session.execute(statement.on_conflict_do_update(
            index_elements=keys,
            set_={c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys}), rows)

    async def _select_sessions(self, *where: ColumnElement[bool]) -> list[Session]:
        rows = (await self._tx.session.execute(core_select(_SESSIONS).where(*where))).mappings().all()
        return [Session(**{name: row[name] for name in _SESSION_FIELDS}) for row in rows]

    def _overlaid(self, found: list[Session], keep: Callable[[Session], bool]) -> list[Session]:
        """The sessions that match ``keep``: those read from the database (``found``) as they are in memory, if
        the batch read or changed them already, and those changed in memory that the database has not yet."""
        for session in found:
            key = _key_of(session)
            if self._sessions.get(key) is None:
                self._sessions[key] = session
        return [replace(s) for s in self._sessions.values() if s is not None and keep(s)]

    async def get(self, site_id: str, store_id: str, charger_id: str, transaction_id: int) -> Session | None:
        key = (site_id, store_id, charger_id, transaction_id)
        if key not in self._sessions:
            await self.preload([key], [], [])
        session = self._sessions[key]
        return None if session is None else replace(session)

    async def save(self, session: Session) -> None:
        kept = replace(session)
        self._sessions[_key_of(kept)] = kept
        self._changed_sessions[kept.id] = kept

    async def open_sessions_of_store(self, site_id: str, store_id: str) -> list[Session]:
        table = _SESSIONS
        found = await self._select_sessions(table.c.site_id == site_id, table.c.store_id == store_id,
                                            table.c.status == ACTIVE)
        return sorted(self._overlaid(found, lambda s: s.site_id == site_id and s.store_id == store_id and s.active),
                      key=lambda s: s.transaction_id)

    async def active_at_charger(self, site_id: str, charger_id: str) -> list[Session]:
        table = _SESSIONS
        found = await self._select_sessions(table.c.site_id == site_id, table.c.charger_id == charger_id,
                                            table.c.status == ACTIVE)
        return self._overlaid(found, lambda s: s.site_id == site_id and s.charger_id == charger_id and s.active)

    async def by_id(self, session_id: str) -> Session | None:
        for session in self._sessions.values():
            if session is not None and session.id == session_id:
                return replace(session)
        found = await self._select_sessions(_SESSIONS.c.id == session_id)
        return found[0] if found else None

    async def station(self, site_id: str, charger_id: str) -> Station | None:
        if (site_id, charger_id) not in self._stations:
            await self.preload([], [(site_id, charger_id)], [])
        station = self._stations[(site_id, charger_id)]
        return None if station is None else _station_copy(station)

    async def save_station(self, station: Station) -> None:
        station.connector(0)
        kept = _station_copy(station)
        self._stations[(kept.site_id, kept.charger_id)] = kept
        self._changed_stations[(kept.site_id, kept.charger_id)] = kept

    async def vehicle_of(self, id_tag: str) -> str | None:
        if id_tag not in self._vehicles:
            await self._preload_vehicles([id_tag])
        return self._vehicles[id_tag]

    async def owner_of(self, vehicle_id: str) -> str | None:
        if vehicle_id not in self._owners:
            self._owners[vehicle_id] = await super().owner_of(vehicle_id)
        return self._owners[vehicle_id]


PRELOAD_CHUNK = 500
"""Keys per preloading query (4 parameters each at most)."""

_SESSIONS: Table = ChargingSession.__table__  # type: ignore[attr-defined]
_STATIONS: Table = ChargerStationRow.__table__  # type: ignore[attr-defined]
_SESSION_FIELDS = [f.name for f in fields(Session) if f.name in _SESSIONS.columns]

T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _key_of(session: Session) -> SessionKey:
    return session.site_id, session.store_id, session.charger_id, session.transaction_id


def _station_copy(station: Station) -> Station:
    return replace(station, connectors={n: replace(state) for n, state in station.connectors.items()})


def _station_row(station: Station, state: ConnectorState) -> dict[str, object]:
    return {"site_id": station.site_id, "charger_id": station.charger_id, "connector_id": state.connector_id,
            "status": state.status, "error_code": state.error_code, "info": state.info, "status_at": state.status_at,
            "profile_limit": state.profile_limit, "online": station.online, "online_since": station.online_since,
            "max_power_w": station.max_power_w, "connector_count": station.connector_count,
            "updated_at": station.updated_at}


def _station(rows: Sequence[Any]) -> Station:
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
