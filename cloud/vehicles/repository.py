"""The vehicle registry's storage: domain objects in and out of its tables."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from cloud.contracts.errors import Conflict
from cloud.platform.outbox import Transaction
from cloud.platform.unit_of_work import SqlUnitOfWork
from cloud.vehicles import models
from cloud.vehicles.domain import (
    AuthListChange,
    BayLink,
    IdTag,
    Registration,
    SiteSync,
    Vehicle,
    VehicleStatus,
    VehicleType,
    canonical,
    fold_id_tag,
    plate_key,
)
from mqtt import IdTagStatus


@dataclass(frozen=True)
class SearchFilters:
    """A search's filters, each optional; ``plate`` matches plates that start with it (case,
    spaces and dashes ignored); ``make`` and ``model`` match whole, case-insensitively."""

    kind: str | None = None
    plate: str | None = None
    make: str | None = None
    model: str | None = None
    owner_id: str | None = None


class VehicleRepository(Protocol):
    async def get(self, vehicle_id: str) -> Vehicle | None:
        """The vehicle with its idTags (by idTag)."""

    async def find_by_plate(self, plate: str) -> Vehicle | None:
        """The vehicle whose plate is this one without regard to case, spaces and dashes."""

    async def taken_id_tags(self, id_tags: Collection[str], *, except_vehicle: str | None = None) -> list[str]:
        """Those of ``id_tags`` that another vehicle has (case-insensitively), as that vehicle has them."""

    async def add(self, vehicle: Vehicle, changes: Sequence[AuthListChange]) -> None:
        """Store a new vehicle, its idTags, the authorization-list changes (versions issued here)
        and the first stretch of its registration history; Conflict when a racing registration
        took the plate or an idTag first."""

    async def save(self, vehicle: Vehicle, changes: Sequence[AuthListChange], *, expected_version: int,
                   new_registration: str | None) -> None:
        """Store a full update over ``expected_version`` (Conflict when another update came first)."""

    async def delete(self, vehicle: Vehicle, changes: Sequence[AuthListChange]) -> None:
        """Remove the vehicle, its idTags and status; record the changes; close its registration."""

    async def registrations(self, vehicle_id: str) -> list[Registration]:
        """The vehicle's registration history, oldest first."""

    async def search(self, filters: SearchFilters, *, limit: int, offset: int) -> tuple[list[Vehicle], int]:
        """A page of the vehicles matching ``filters`` by plate, and how many match in all."""

    async def current_version(self) -> int:
        """The latest authorization-list version issued (0: none yet)."""

    async def version_needed_by(self, vehicle_id: str) -> int:
        """The list version a site needs to authorize every idTag of the vehicle (0: none)."""

    async def all_id_tags(self) -> list[IdTag]:
        """Every idTag: the full authorization list."""

    async def changes_since(self, version: int) -> list[AuthListChange]:
        """The authorization-list changes after ``version``, by version."""

    async def get_site(self, site_id: str) -> SiteSync | None: ...

    async def save_site(self, site: SiteSync) -> None: ...

    async def sites(self) -> list[SiteSync]:
        """Every site, by id."""

    async def sites_behind(self, version: int) -> list[SiteSync]:
        """The sites whose confirmed list version is below ``version``."""

    async def types(self) -> list[VehicleType]:
        """The catalogue, by make and model."""

    async def get_type(self, type_id: str) -> VehicleType | None: ...

    async def save_type(self, vehicle_type: VehicleType, *, new: bool) -> None:
        """Insert (``new``) or replace an entry; Conflict when its make and model are another's."""

    async def get_status(self, vehicle_id: str) -> VehicleStatus | None: ...

    async def save_status(self, status: VehicleStatus) -> None: ...

    async def statuses_at(self, site_id: str, charger_id: str | None = None,
                          bay_id: str | None = None) -> list[VehicleStatus]:
        """The statuses placed at the site (and charger, or bay) that have not left."""

    async def get_bay(self, site_id: str, bay_id: str) -> BayLink | None: ...

    async def bay_served_by(self, site_id: str, charger_id: str, connector_id: int | None) -> BayLink | None: ...

    async def save_bay(self, bay: BayLink) -> None: ...


class SqlVehicleRepository:
    """:class:`VehicleRepository` over a platform transaction."""

    def __init__(self, tx: Transaction) -> None:
        self._session = tx.session

    async def get(self, vehicle_id: str) -> Vehicle | None:
        row = await self._session.get(models.Vehicle, vehicle_id)
        if row is None:
            return None
        tags = (await self._session.execute(select(models.IdTag).where(col(models.IdTag.vehicle_id) == vehicle_id)
                                            .order_by(col(models.IdTag.id_tag)))).scalars().all()
        return _vehicle(row, [_id_tag(t) for t in tags])

    async def find_by_plate(self, plate: str) -> Vehicle | None:
        vehicle_id = await self._session.scalar(select(models.Vehicle.id)
                                                .where(col(models.Vehicle.plate_key) == plate_key(plate)))
        return None if vehicle_id is None else await self.get(vehicle_id)

    async def taken_id_tags(self, id_tags: Collection[str], *, except_vehicle: str | None = None) -> list[str]:
        query = select(models.IdTag.id_tag).where(col(models.IdTag.id_tag_folded).in_([fold_id_tag(t)
                                                                                        for t in id_tags]))
        if except_vehicle is not None:
            query = query.where(col(models.IdTag.vehicle_id) != except_vehicle)
        return list((await self._session.execute(query.order_by(col(models.IdTag.id_tag)))).scalars())

    async def add(self, vehicle: Vehicle, changes: Sequence[AuthListChange]) -> None:
        self._session.add(models.Vehicle(id=vehicle.vehicle_id, plate=vehicle.plate, plate_key=plate_key(vehicle.plate),
                                         created_at=vehicle.created_at, **_columns(vehicle)))
        await self._flush_or_conflict(vehicle)  # the idTags refer to it
        self._add_tags(vehicle.id_tags)
        self._session.add(models.VehicleRegistration(vehicle_id=vehicle.vehicle_id, plate=vehicle.plate,
                                                     owner_id=vehicle.owner_id, started_at=vehicle.created_at))
        await self._flush_or_conflict(vehicle)
        await self._record(changes)

    async def save(self, vehicle: Vehicle, changes: Sequence[AuthListChange], *, expected_version: int,
                   new_registration: str | None) -> None:
        # Conditional: of two updates that read the same version, the second changes no row.
        result = await self._session.execute(
            update(models.Vehicle).where(col(models.Vehicle.id) == vehicle.vehicle_id,
                                         col(models.Vehicle.version) == expected_version)
            .values(plate=vehicle.plate, plate_key=plate_key(vehicle.plate), **_columns(vehicle)))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(f"vehicle {vehicle.vehicle_id!r} was changed meanwhile: read it again",
                           code="stale_version")
        kept = {t.id_tag for t in vehicle.id_tags}
        await self._session.execute(delete(models.IdTag).where(col(models.IdTag.vehicle_id) == vehicle.vehicle_id,
                                                               col(models.IdTag.id_tag).not_in(kept)))
        existing = set((await self._session.execute(select(models.IdTag.id_tag).where(
            col(models.IdTag.vehicle_id) == vehicle.vehicle_id))).scalars())
        await self._flush_or_conflict(vehicle)
        self._add_tags([t for t in vehicle.id_tags if t.id_tag not in existing])
        if new_registration is not None and vehicle.updated_at is not None:
            await self._close_registration(vehicle.vehicle_id, new_registration, vehicle)
            self._session.add(models.VehicleRegistration(vehicle_id=vehicle.vehicle_id, plate=vehicle.plate,
                                                         owner_id=vehicle.owner_id, started_at=vehicle.updated_at))
        await self._flush_or_conflict(vehicle)
        await self._record(changes)

    async def delete(self, vehicle: Vehicle, changes: Sequence[AuthListChange]) -> None:
        await self._session.execute(delete(models.IdTag).where(col(models.IdTag.vehicle_id) == vehicle.vehicle_id))
        await self._session.execute(delete(models.VehicleStatus)
                                    .where(col(models.VehicleStatus.vehicle_id) == vehicle.vehicle_id))
        await self._session.execute(delete(models.Vehicle).where(col(models.Vehicle.id) == vehicle.vehicle_id))
        await self._close_registration(vehicle.vehicle_id, "deleted", vehicle)
        await self._record(changes)

    async def registrations(self, vehicle_id: str) -> list[Registration]:
        rows = (await self._session.execute(select(models.VehicleRegistration)
                                            .where(col(models.VehicleRegistration.vehicle_id) == vehicle_id)
                                            .order_by(col(models.VehicleRegistration.id)))).scalars()
        return [Registration(vehicle_id=r.vehicle_id, plate=r.plate, owner_id=r.owner_id, started_at=r.started_at,
                             ended_at=r.ended_at, ended_because=r.ended_because) for r in rows]

    async def search(self, filters: SearchFilters, *, limit: int, offset: int) -> tuple[list[Vehicle], int]:
        query = select(models.Vehicle)
        if filters.kind is not None:
            query = query.where(col(models.Vehicle.kind) == filters.kind)
        if filters.plate is not None:  # a % or _ in the filter is a character, not a wildcard
            query = query.where(col(models.Vehicle.plate_key).startswith(plate_key(filters.plate), autoescape=True))
        if filters.make is not None:
            query = query.where(func.lower(col(models.Vehicle.make)) == filters.make.lower())
        if filters.model is not None:
            query = query.where(func.lower(col(models.Vehicle.model)) == filters.model.lower())
        if filters.owner_id is not None:
            query = query.where(col(models.Vehicle.owner_id) == filters.owner_id)
        total = await self._session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = (await self._session.execute(query.order_by(col(models.Vehicle.plate_key), col(models.Vehicle.id))
                                            .limit(limit).offset(offset))).scalars().all()
        ids = [r.id for r in rows]
        tags = (await self._session.execute(select(models.IdTag).where(col(models.IdTag.vehicle_id).in_(ids))
                                            .order_by(col(models.IdTag.id_tag)))).scalars().all() if ids else []
        by_vehicle: dict[str, list[IdTag]] = {}
        for tag in tags:
            by_vehicle.setdefault(tag.vehicle_id, []).append(_id_tag(tag))
        return [_vehicle(r, by_vehicle.get(r.id, [])) for r in rows], total

    async def current_version(self) -> int:
        return await self._session.scalar(select(func.max(col(models.AuthListChange.version)))) or 0

    async def version_needed_by(self, vehicle_id: str) -> int:
        return await self._session.scalar(select(func.max(col(models.AuthListChange.version)))
                                          .where(col(models.AuthListChange.vehicle_id) == vehicle_id)) or 0

    async def all_id_tags(self) -> list[IdTag]:
        rows = (await self._session.execute(select(models.IdTag).order_by(col(models.IdTag.id_tag)))).scalars()
        return [_id_tag(row) for row in rows]

    async def changes_since(self, version: int) -> list[AuthListChange]:
        rows = (await self._session.execute(select(models.AuthListChange)
                                            .where(col(models.AuthListChange.version) > version)
                                            .order_by(col(models.AuthListChange.version)))).scalars()
        return [AuthListChange(id_tag=r.id_tag, status=IdTagStatus(r.status), vehicle_id=r.vehicle_id,
                               changed_at=r.changed_at, version=r.version) for r in rows]

    async def get_site(self, site_id: str) -> SiteSync | None:
        row = await self._session.get(models.Site, site_id)
        return None if row is None else _site(row)

    async def save_site(self, site: SiteSync) -> None:
        row = await self._session.get(models.Site, site.site_id)
        if row is None:
            row = models.Site(site_id=site.site_id, last_seen_at=site.last_seen_at)
            self._session.add(row)
        row.last_seen_at = site.last_seen_at
        row.synced_version = site.synced_version
        row.pending_command_id = site.pending_command_id
        row.pending_version = site.pending_version
        row.pending_sent_at = site.pending_sent_at
        await self._session.flush()

    async def sites(self) -> list[SiteSync]:
        rows = (await self._session.execute(select(models.Site).order_by(col(models.Site.site_id)))).scalars()
        return [_site(row) for row in rows]

    async def sites_behind(self, version: int) -> list[SiteSync]:
        rows = (await self._session.execute(select(models.Site).where(col(models.Site.synced_version) < version)
                                            .order_by(col(models.Site.site_id)))).scalars()
        return [_site(row) for row in rows]

    # --- the vehicle-type catalogue ---------------------------------------------------------

    async def types(self) -> list[VehicleType]:
        rows = (await self._session.execute(select(models.VehicleType).order_by(
            col(models.VehicleType.make), col(models.VehicleType.model)))).scalars()
        return [_type(r) for r in rows]

    async def get_type(self, type_id: str) -> VehicleType | None:
        row = await self._session.get(models.VehicleType, type_id)
        return None if row is None else _type(row)

    async def save_type(self, vehicle_type: VehicleType, *, new: bool) -> None:
        values: dict[str, Any] = {"make": vehicle_type.make, "model": vehicle_type.model, "kind": vehicle_type.kind,
                  "battery_wh": _wh(vehicle_type.battery_kwh), "max_ac_w": _wh(vehicle_type.max_ac_kw),
                  "max_dc_w": _wh(vehicle_type.max_dc_kw), "connector_types": ",".join(vehicle_type.connector_types),
                  "source": vehicle_type.source, "version": vehicle_type.version}
        try:
            async with self._session.begin_nested():
                if new:
                    self._session.add(models.VehicleType(id=vehicle_type.type_id, **values))
                else:
                    result = await self._session.execute(update(models.VehicleType).where(
                        col(models.VehicleType.id) == vehicle_type.type_id,
                        col(models.VehicleType.version) == vehicle_type.version - 1).values(**values))
                    if result.rowcount != 1:  # type: ignore[attr-defined]
                        raise Conflict(f"vehicle type {vehicle_type.type_id!r} was changed meanwhile",
                                       code="stale_version")
                await self._session.flush()
        except IntegrityError:
            raise Conflict(f"the catalogue has {vehicle_type.make} {vehicle_type.model} already (or the id "
                           f"{vehicle_type.type_id!r})", code="vehicle_type_taken") from None

    # --- where vehicles are ------------------------------------------------------------------

    async def get_status(self, vehicle_id: str) -> VehicleStatus | None:
        row = await self._session.get(models.VehicleStatus, vehicle_id)
        return None if row is None else VehicleStatus(**row.model_dump())

    async def save_status(self, status: VehicleStatus) -> None:
        await self._session.merge(models.VehicleStatus(**status.__dict__))
        await self._session.flush()

    async def statuses_at(self, site_id: str, charger_id: str | None = None,
                          bay_id: str | None = None) -> list[VehicleStatus]:
        query = select(models.VehicleStatus).where(col(models.VehicleStatus.site_id) == site_id,
                                                   col(models.VehicleStatus.left_at).is_(None))
        if charger_id is not None:
            query = query.where(col(models.VehicleStatus.charger_id) == charger_id)
        if bay_id is not None:
            query = query.where(col(models.VehicleStatus.bay_id) == bay_id)
        rows = (await self._session.execute(query.order_by(col(models.VehicleStatus.vehicle_id)))).scalars()
        return [VehicleStatus(**r.model_dump()) for r in rows]

    async def get_bay(self, site_id: str, bay_id: str) -> BayLink | None:
        row = await self._session.get(models.StatusBay, (site_id, bay_id))
        return None if row is None else BayLink(**row.model_dump())

    async def bay_served_by(self, site_id: str, charger_id: str, connector_id: int | None) -> BayLink | None:
        query = select(models.StatusBay).where(col(models.StatusBay.site_id) == site_id,
                                               col(models.StatusBay.charger_id) == charger_id)
        if connector_id is not None:
            query = query.where(col(models.StatusBay.connector_id) == connector_id)
        row = (await self._session.execute(query.order_by(col(models.StatusBay.bay_id)).limit(1))).scalars().first()
        return None if row is None else BayLink(**row.model_dump())

    async def save_bay(self, bay: BayLink) -> None:
        await self._session.merge(models.StatusBay(**bay.__dict__))
        await self._session.flush()

    # --- helpers -----------------------------------------------------------------------------

    def _add_tags(self, tags: Sequence[IdTag]) -> None:
        for tag in tags:
            self._session.add(models.IdTag(id_tag=tag.id_tag, id_tag_folded=fold_id_tag(tag.id_tag),
                                           vehicle_id=tag.vehicle_id, status=tag.status.value,
                                           created_at=tag.created_at, blocked_reason=tag.blocked_reason))

    async def _flush_or_conflict(self, vehicle: Vehicle) -> None:
        """A racing registration that committed first holds the plate or an idTag: 409, never 500."""
        try:
            async with self._session.begin_nested():
                await self._session.flush()
        except IntegrityError as exc:
            if "plate" in str(exc.orig).lower():
                raise Conflict(f"a vehicle with plate {vehicle.plate!r} is already registered",
                               code="plate_taken") from None
            raise Conflict("an idTag of this vehicle already belongs to another vehicle", code="id_tag_taken") from None

    async def _record(self, changes: Sequence[AuthListChange]) -> None:
        rows = [models.AuthListChange(id_tag=c.id_tag, status=c.status.value, vehicle_id=c.vehicle_id,
                                      changed_at=c.changed_at) for c in changes]
        self._session.add_all(rows)
        await self._session.flush()
        for change, row in zip(changes, rows, strict=True):
            change.version = row.version

    async def _close_registration(self, vehicle_id: str, because: str, vehicle: Vehicle) -> None:
        await self._session.execute(
            update(models.VehicleRegistration).where(col(models.VehicleRegistration.vehicle_id) == vehicle_id,
                                                     col(models.VehicleRegistration.ended_at).is_(None))
            .values(ended_at=vehicle.updated_at, ended_because=because))


def unit_of_work(tx: Transaction) -> SqlUnitOfWork[VehicleRepository]:
    """The registry's unit of work over a transaction someone else opened (the MQTT link's)."""
    return SqlUnitOfWork(tx, SqlVehicleRepository(tx))


def _wh(kilo: Decimal | None) -> int | None:
    return None if kilo is None else int(kilo * 1000)


def _kilo(units: int | None) -> Decimal | None:
    return None if units is None else canonical(Decimal(units) / 1000)


def _connectors(text: str) -> tuple[str, ...]:
    return tuple(c for c in text.split(",") if c)


def _columns(vehicle: Vehicle) -> dict[str, Any]:
    return {"make": vehicle.make, "model": vehicle.model, "owner_id": vehicle.owner_id, "kind": vehicle.kind,
            "vehicle_type_id": vehicle.vehicle_type_id, "battery_wh": _wh(vehicle.battery_kwh),
            "connector_types": ",".join(vehicle.connector_types), "version": vehicle.version,
            "updated_at": vehicle.updated_at}


def _vehicle(row: models.Vehicle, tags: list[IdTag]) -> Vehicle:
    return Vehicle(vehicle_id=row.id, plate=row.plate, make=row.make, model=row.model, created_at=row.created_at,
                   id_tags=tags, owner_id=row.owner_id, kind=row.kind, vehicle_type_id=row.vehicle_type_id,
                   battery_kwh=_kilo(row.battery_wh), connector_types=_connectors(row.connector_types),
                   version=row.version, updated_at=row.updated_at)


def _type(row: models.VehicleType) -> VehicleType:
    return VehicleType(type_id=row.id, make=row.make, model=row.model, battery_kwh=_kilo(row.battery_wh),
                       max_ac_kw=_kilo(row.max_ac_w), max_dc_kw=_kilo(row.max_dc_w),
                       connector_types=_connectors(row.connector_types), kind=row.kind, source=row.source,
                       version=row.version)


def _id_tag(row: models.IdTag) -> IdTag:
    return IdTag(id_tag=row.id_tag, vehicle_id=row.vehicle_id, status=IdTagStatus(row.status),
                 created_at=row.created_at, blocked_reason=row.blocked_reason)


def _site(row: models.Site) -> SiteSync:
    return SiteSync(site_id=row.site_id, last_seen_at=row.last_seen_at, synced_version=row.synced_version,
                    pending_command_id=row.pending_command_id, pending_version=row.pending_version,
                    pending_sent_at=row.pending_sent_at)
