"""The vehicle registry's storage: domain objects in and out of its tables."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from sqlalchemy import func
from sqlmodel import col, select

from cloud.platform.outbox import Transaction
from cloud.platform.unit_of_work import SqlUnitOfWork
from cloud.vehicles import models
from cloud.vehicles.domain import AuthListChange, IdTag, SiteSync, Vehicle
from mqtt import IdTagStatus


class VehicleRepository(Protocol):
    async def get(self, vehicle_id: str) -> Vehicle | None:
        """The vehicle with its idTags (by idTag)."""

    async def find_by_plate(self, plate: str) -> Vehicle | None:
        """The vehicle with this normalised plate."""

    async def taken_id_tags(self, id_tags: Collection[str]) -> list[str]:
        """Those of ``id_tags`` that belong to a vehicle already, in order."""

    async def add(self, vehicle: Vehicle, changes: Sequence[AuthListChange]) -> None:
        """Store a new vehicle, its idTags and the authorization-list changes (versions issued here)."""

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
        return Vehicle(vehicle_id=row.id, plate=row.plate, make=row.make, model=row.model,
                       created_at=row.created_at, id_tags=[_id_tag(t) for t in tags], owner_id=row.owner_id)

    async def find_by_plate(self, plate: str) -> Vehicle | None:
        vehicle_id = await self._session.scalar(select(models.Vehicle.id).where(col(models.Vehicle.plate) == plate))
        return None if vehicle_id is None else await self.get(vehicle_id)

    async def taken_id_tags(self, id_tags: Collection[str]) -> list[str]:
        return list((await self._session.execute(
            select(models.IdTag.id_tag).where(col(models.IdTag.id_tag).in_(id_tags))
            .order_by(col(models.IdTag.id_tag)))).scalars())

    async def add(self, vehicle: Vehicle, changes: Sequence[AuthListChange]) -> None:
        self._session.add(models.Vehicle(id=vehicle.vehicle_id, plate=vehicle.plate, make=vehicle.make,
                                         model=vehicle.model, created_at=vehicle.created_at,
                                         owner_id=vehicle.owner_id))
        await self._session.flush()  # the idTags refer to it
        for tag in vehicle.id_tags:
            self._session.add(models.IdTag(id_tag=tag.id_tag, vehicle_id=tag.vehicle_id, status=tag.status.value,
                                           created_at=tag.created_at))
        rows = [models.AuthListChange(id_tag=c.id_tag, status=c.status.value, vehicle_id=c.vehicle_id,
                                      changed_at=c.changed_at) for c in changes]
        self._session.add_all(rows)
        await self._session.flush()
        for change, row in zip(changes, rows, strict=True):
            change.version = row.version

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


def unit_of_work(tx: Transaction) -> SqlUnitOfWork[VehicleRepository]:
    """The registry's unit of work over a transaction someone else opened (the MQTT link's)."""
    return SqlUnitOfWork(tx, SqlVehicleRepository(tx))


def _id_tag(row: models.IdTag) -> IdTag:
    return IdTag(id_tag=row.id_tag, vehicle_id=row.vehicle_id, status=IdTagStatus(row.status),
                 created_at=row.created_at)


def _site(row: models.Site) -> SiteSync:
    return SiteSync(site_id=row.site_id, last_seen_at=row.last_seen_at, synced_version=row.synced_version,
                    pending_command_id=row.pending_command_id, pending_version=row.pending_version,
                    pending_sent_at=row.pending_sent_at)
