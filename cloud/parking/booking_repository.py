"""Reservations, stays, lots and the vehicle projection ⇄ their tables (and the bays they concern)."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import update
from sqlmodel import col, or_, select

from cloud.parking import models
from cloud.parking.booking import HOLDING, RESERVED, Debt, Lot, Reservation, Stay, Vehicle
from cloud.parking.domain import Bay
from cloud.parking.repository import _bay, save_bay_row
from cloud.platform.outbox import Transaction


class BookingRepository(Protocol):
    async def one_snapshot(self) -> None:
        """The unit of work's reads all see the database as of the first (before its first read)."""

    async def lock_site_for_booking(self, site_id: str) -> int | None:
        """Serialise reservations of the site: the first write of the unit of work (PostgreSQL row
        lock; SQLite's single writer). Returns the site's next OCPP reservation number, None for an
        unknown site."""

    async def bump_status(self, site_id: str) -> None:
        """The site's status changed in this unit of work: a cached status of it is stale once it commits."""

    async def status_version(self, site_id: str) -> int | None: ...

    async def bays_of(self, site_id: str) -> list[Bay]: ...

    async def get_bay(self, site_id: str, bay_id: str) -> Bay | None: ...

    async def bay_by_slot(self, slot_id: str) -> Bay | None: ...

    async def bay_by_connector(self, site_id: str, charger_id: str, connector_id: int | None) -> Bay | None: ...

    async def save_bay(self, bay: Bay) -> None: ...

    async def site_exists(self, site_id: str) -> bool: ...

    async def get_lot(self, site_id: str) -> Lot | None: ...

    async def save_lot(self, lot: Lot) -> None: ...

    async def get_vehicle(self, vehicle_id: str) -> Vehicle | None: ...

    async def save_vehicle(self, vehicle: Vehicle) -> None: ...

    async def holding(self, site_id: str, starts_at: datetime, ends_at: datetime) -> list[Reservation]:
        """Holding reservations of the site whose window overlaps [starts_at, ends_at)."""

    async def get_reservation(self, reservation_id: str, *, lock: bool = True) -> Reservation | None:
        """The reservation, locked until the transaction ends unless ``lock`` is false (a read that takes
        the site's lock before it writes)."""

    async def reservation_by_command(self, command_id: str) -> Reservation | None: ...

    async def save_reservation(self, reservation: Reservation) -> None: ...

    async def reservations_of_bay(self, site_id: str, bay_id: str, since: datetime, *,
                                  lock: bool = True) -> list[Reservation]:
        """Holding reservations of the bay ending after ``since``, soonest first (locked unless ``lock`` is
        false)."""

    async def reservations_of_vehicle(self, vehicle_id: str, statuses: tuple[str, ...] | None = None
                                      ) -> list[Reservation]: ...

    async def reserved_before(self, at: datetime) -> list[Reservation]:
        """Reservations still ``reserved`` whose window started before ``at``."""

    async def commands_due(self, at: datetime) -> list[Reservation]:
        """Reservations with a ReserveNow due (window starting before ``at``) or a cancel wanted."""

    async def open_stay(self, site_id: str, bay_id: str, *, lock: bool = True) -> Stay | None:
        """The bay's open stay, locked until the transaction ends unless ``lock`` is false (a read only)."""

    async def get_stay(self, stay_id: str) -> Stay | None: ...

    async def save_stay(self, stay: Stay) -> None: ...

    async def stays_of_vehicle(self, vehicle_id: str) -> list[Stay]: ...

    async def open_stays_past_limit(self, at: datetime) -> list[Stay]: ...

    async def debt(self, invoice_id: str) -> Debt | None:
        """The invoice's row of the driver-debt projection (locked until the transaction ends)."""

    async def save_debt(self, debt: Debt) -> None:
        """Insert or update an invoice's row of the driver-debt projection."""

    async def refusing_debt(self, account_id: str, site_id: str) -> Debt | None:
        """The account's oldest open debt at the site whose site refuses it new reservations until paid."""


_RESERVATION_FIELDS = tuple(f.name for f in fields(Reservation))
_STAY_FIELDS = tuple(f.name for f in fields(Stay))
_LOT_FIELDS = tuple(f.name for f in fields(Lot))


class SqlBookingRepository:
    def __init__(self, tx: Transaction) -> None:
        self._session = tx.session
        self._locks = not tx.is_sqlite
        self._tx = tx

    async def one_snapshot(self) -> None:
        await self._tx.one_snapshot()

    async def lock_site_for_booking(self, site_id: str) -> int | None:
        result = await self._session.execute(
            update(models.Site).where(col(models.Site.site_id) == site_id)
            .values(reservation_seq=col(models.Site.reservation_seq) + 1,
                    status_version=col(models.Site.status_version) + 1)
            .returning(col(models.Site.reservation_seq)))
        value = result.scalar_one_or_none()
        return None if value is None else int(value) % 2_000_000_000 or 1

    async def bump_status(self, site_id: str) -> None:
        await self._session.execute(update(models.Site).where(col(models.Site.site_id) == site_id)
                                    .values(status_version=col(models.Site.status_version) + 1))

    async def status_version(self, site_id: str) -> int | None:
        value = await self._session.scalar(select(models.Site.status_version).where(
            col(models.Site.site_id) == site_id))
        return None if value is None else int(value)

    async def bays_of(self, site_id: str) -> list[Bay]:
        rows = (await self._session.execute(
            select(models.Bay).where(col(models.Bay.site_id) == site_id).order_by(col(models.Bay.bay_id)))).scalars()
        return [_bay(row) for row in rows]

    async def get_bay(self, site_id: str, bay_id: str) -> Bay | None:
        row = await self._session.get(models.Bay, (site_id, bay_id))
        return None if row is None else _bay(row)

    async def bay_by_slot(self, slot_id: str) -> Bay | None:
        row = (await self._session.execute(select(models.Bay).where(col(models.Bay.slot_id) == slot_id))).scalar()
        return None if row is None else _bay(row)

    async def bay_by_connector(self, site_id: str, charger_id: str, connector_id: int | None) -> Bay | None:
        query = select(models.Bay).where(col(models.Bay.site_id) == site_id, col(models.Bay.charger_id) == charger_id,
                                         col(models.Bay.in_service))
        if connector_id is not None:
            query = query.where(or_(col(models.Bay.connector_id) == connector_id,
                                    col(models.Bay.connector_id).is_(None)))
        row = (await self._session.execute(query.order_by(col(models.Bay.bay_id)))).scalars().first()
        return None if row is None else _bay(row)

    async def save_bay(self, bay: Bay) -> None:
        await save_bay_row(self._session, bay)

    async def site_exists(self, site_id: str) -> bool:
        return await self._session.get(models.Site, site_id) is not None

    async def get_lot(self, site_id: str) -> Lot | None:
        row = await self._session.get(models.LotConfiguration, site_id)
        if row is None:
            return None
        return Lot(**{name: getattr(row, name) for name in _LOT_FIELDS})

    async def save_lot(self, lot: Lot) -> None:
        row = await self._session.get(models.LotConfiguration, lot.site_id)
        values = {name: getattr(lot, name) for name in _LOT_FIELDS}
        if row is None:
            self._session.add(models.LotConfiguration(**values))
            return
        for name, value in values.items():
            setattr(row, name, value)

    async def get_vehicle(self, vehicle_id: str) -> Vehicle | None:
        row = await self._session.get(models.Vehicle, vehicle_id)
        return None if row is None else Vehicle(vehicle_id=row.vehicle_id, type=row.type, owner_id=row.owner_id,
                                                id_tag=row.id_tag, deleted=row.deleted)

    async def save_vehicle(self, vehicle: Vehicle) -> None:
        await self._session.merge(models.Vehicle(vehicle_id=vehicle.vehicle_id, type=vehicle.type,
                                                 owner_id=vehicle.owner_id, id_tag=vehicle.id_tag,
                                                 deleted=vehicle.deleted))

    async def holding(self, site_id: str, starts_at: datetime, ends_at: datetime) -> list[Reservation]:
        rows = (await self._session.execute(select(models.Reservation).where(
            col(models.Reservation.site_id) == site_id, col(models.Reservation.status).in_(HOLDING),
            col(models.Reservation.starts_at) < ends_at, col(models.Reservation.ends_at) > starts_at))).scalars()
        return [_reservation(row) for row in rows]

    def _for_update(self, query: Any) -> Any:
        """A read that a write of the same rows follows: on PostgreSQL the rows stay locked until the
        transaction ends, and are read afresh, so two writers (the sensor's arrival and the loop's
        ReserveNow) cannot each write back a stale copy and undo the other's change."""
        query = query.execution_options(populate_existing=True)
        return query.with_for_update() if self._locks else query

    async def get_reservation(self, reservation_id: str, *, lock: bool = True) -> Reservation | None:
        query = select(models.Reservation).where(col(models.Reservation.reservation_id) == reservation_id)
        row = (await self._session.execute(self._for_update(query) if lock else query)).scalar()
        return None if row is None else _reservation(row)

    async def reservation_by_command(self, command_id: str) -> Reservation | None:
        row = (await self._session.execute(self._for_update(select(models.Reservation).where(or_(
            col(models.Reservation.reserve_command_id) == command_id,
            col(models.Reservation.cancel_command_id) == command_id))))).scalar()
        return None if row is None else _reservation(row)

    async def save_reservation(self, reservation: Reservation) -> None:
        row = await self._session.get(models.Reservation, reservation.reservation_id)
        values = {name: getattr(reservation, name) for name in _RESERVATION_FIELDS}
        if row is None:
            self._session.add(models.Reservation(**values))
            await self._session.flush()
            return
        for name, value in values.items():
            setattr(row, name, value)

    async def reservations_of_bay(self, site_id: str, bay_id: str, since: datetime, *,
                                  lock: bool = True) -> list[Reservation]:
        query = select(models.Reservation).where(
            col(models.Reservation.site_id) == site_id, col(models.Reservation.bay_id) == bay_id,
            col(models.Reservation.status).in_(HOLDING), col(models.Reservation.ends_at) > since
        ).order_by(col(models.Reservation.starts_at))
        rows = (await self._session.execute(self._for_update(query) if lock else query)).scalars()
        return [_reservation(row) for row in rows]

    async def reservations_of_vehicle(self, vehicle_id: str, statuses: tuple[str, ...] | None = None
                                      ) -> list[Reservation]:
        query = select(models.Reservation).where(col(models.Reservation.vehicle_id) == vehicle_id)
        if statuses is not None:
            query = query.where(col(models.Reservation.status).in_(statuses))
        rows = (await self._session.execute(query.order_by(col(models.Reservation.starts_at).desc()))).scalars()
        return [_reservation(row) for row in rows]

    async def reserved_before(self, at: datetime) -> list[Reservation]:
        rows = (await self._session.execute(select(models.Reservation).where(
            col(models.Reservation.status) == RESERVED, col(models.Reservation.starts_at) < at))).scalars()
        return [_reservation(row) for row in rows]

    async def commands_due(self, at: datetime) -> list[Reservation]:
        rows = (await self._session.execute(select(models.Reservation).where(or_(
            (col(models.Reservation.status) == RESERVED) & col(models.Reservation.charger_id).is_not(None)
            & col(models.Reservation.reserve_command_id).is_(None) & (col(models.Reservation.starts_at) <= at),
            col(models.Reservation.cancel_wanted) & col(models.Reservation.cancel_sent_at).is_(None)))
            .order_by(col(models.Reservation.starts_at)))).scalars()
        return [_reservation(row) for row in rows]

    async def open_stay(self, site_id: str, bay_id: str, *, lock: bool = True) -> Stay | None:
        query = select(models.Stay).where(
            col(models.Stay.site_id) == site_id, col(models.Stay.bay_id) == bay_id,
            col(models.Stay.departed_at).is_(None)).order_by(col(models.Stay.arrived_at).desc())
        row = (await self._session.execute(self._for_update(query) if lock else query)).scalars().first()
        return None if row is None else _stay(row)

    async def get_stay(self, stay_id: str) -> Stay | None:
        row = (await self._session.execute(self._for_update(select(models.Stay).where(
            col(models.Stay.stay_id) == stay_id)))).scalar()
        return None if row is None else _stay(row)

    async def save_stay(self, stay: Stay) -> None:
        row = await self._session.get(models.Stay, stay.stay_id)
        values = {name: getattr(stay, name) for name in _STAY_FIELDS}
        values["session_ids"] = list(stay.session_ids)
        if row is None:
            self._session.add(models.Stay(**values))
            return
        for name, value in values.items():
            setattr(row, name, value)

    async def stays_of_vehicle(self, vehicle_id: str) -> list[Stay]:
        rows = (await self._session.execute(select(models.Stay).where(col(models.Stay.vehicle_id) == vehicle_id)
                                            .order_by(col(models.Stay.arrived_at).desc()))).scalars()
        return [_stay(row) for row in rows]

    async def open_stays_past_limit(self, at: datetime) -> list[Stay]:
        rows = (await self._session.execute(select(models.Stay).where(
            col(models.Stay.departed_at).is_(None), col(models.Stay.overstay_at).is_(None),
            col(models.Stay.limit_at) < at))).scalars()
        return [_stay(row) for row in rows]

    async def debt(self, invoice_id: str) -> Debt | None:
        row = await self._session.get(models.ParkingDebt, invoice_id, with_for_update=self._locks)
        return None if row is None else _debt(row)

    async def save_debt(self, debt: Debt) -> None:
        row = await self._session.get(models.ParkingDebt, debt.invoice_id)
        if row is None:
            row = models.ParkingDebt(invoice_id=debt.invoice_id, account_id=debt.account_id, site_id=debt.site_id,
                                     amount="0", currency=debt.currency)
            self._session.add(row)
        row.amount, row.currency, row.refuse = str(debt.amount), debt.currency, debt.refuse
        row.failed_at, row.paid_at = debt.failed_at, debt.paid_at

    async def refusing_debt(self, account_id: str, site_id: str) -> Debt | None:
        statement = (select(models.ParkingDebt)
                     .where(col(models.ParkingDebt.account_id) == account_id,
                            col(models.ParkingDebt.site_id) == site_id,
                            col(models.ParkingDebt.paid_at).is_(None), col(models.ParkingDebt.refuse).is_(True))
                     .order_by(col(models.ParkingDebt.failed_at), col(models.ParkingDebt.invoice_id)).limit(1))
        row = (await self._session.execute(statement)).scalars().first()
        return None if row is None else _debt(row)


def _debt(row: models.ParkingDebt) -> Debt:
    return Debt(invoice_id=row.invoice_id, account_id=row.account_id, site_id=row.site_id,
                amount=Decimal(row.amount), currency=row.currency, refuse=row.refuse, failed_at=row.failed_at,
                paid_at=row.paid_at)


def _reservation(row: models.Reservation) -> Reservation:
    return Reservation(**{name: getattr(row, name) for name in _RESERVATION_FIELDS})


def _stay(row: models.Stay) -> Stay:
    values = {name: getattr(row, name) for name in _STAY_FIELDS}
    values["session_ids"] = list(row.session_ids or [])
    return Stay(**values)
