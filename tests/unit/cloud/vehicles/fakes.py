"""An in-memory vehicle registry for unit tests of its use cases."""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence

from cloud.contracts.errors import Conflict
from cloud.vehicles.domain import (
    AuthListChange,
    BayLink,
    IdTag,
    Registration,
    SiteSync,
    Vehicle,
    VehicleStatus,
    VehicleType,
    fold_id_tag,
    plate_key,
)
from cloud.vehicles.repository import SearchFilters
from mqtt import AuthListUpdate
from tests.support import commands


class InMemoryVehicleRepository:
    """:class:`~cloud.vehicles.repository.VehicleRepository` in dicts; hands out copies, as a database would."""

    def __init__(self) -> None:
        self.vehicles: dict[str, Vehicle] = {}
        self.changes: list[AuthListChange] = []
        self.site_syncs: dict[str, SiteSync] = {}
        self.history: list[Registration] = []
        self.catalogue: dict[str, VehicleType] = {}
        self.statuses: dict[str, VehicleStatus] = {}
        self.bays: dict[tuple[str, str], BayLink] = {}

    async def get(self, vehicle_id: str) -> Vehicle | None:
        vehicle = self.vehicles.get(vehicle_id)
        return None if vehicle is None else copy.deepcopy(vehicle)

    async def find_by_plate(self, plate: str) -> Vehicle | None:
        found = [v for v in self.vehicles.values() if plate_key(v.plate) == plate_key(plate)]
        return copy.deepcopy(found[0]) if found else None

    async def taken_id_tags(self, id_tags: Collection[str], *, except_vehicle: str | None = None) -> list[str]:
        folded = {fold_id_tag(t) for t in id_tags}
        return sorted(tag.id_tag for tag in self._tags()
                      if fold_id_tag(tag.id_tag) in folded and tag.vehicle_id != except_vehicle)

    async def add(self, vehicle: Vehicle, changes: Sequence[AuthListChange]) -> None:
        if await self.find_by_plate(vehicle.plate) is not None:
            raise Conflict("plate taken", code="plate_taken")
        stored = copy.deepcopy(vehicle)
        stored.id_tags.sort(key=lambda t: t.id_tag)
        self.vehicles[vehicle.vehicle_id] = stored
        self.history.append(Registration(vehicle.vehicle_id, vehicle.plate, vehicle.owner_id, vehicle.created_at))
        self._record(changes)

    async def save(self, vehicle: Vehicle, changes: Sequence[AuthListChange], *, expected_version: int,
                   new_registration: str | None) -> None:
        if self.vehicles[vehicle.vehicle_id].version != expected_version:
            raise Conflict("changed meanwhile", code="stale_version")
        self.vehicles[vehicle.vehicle_id] = copy.deepcopy(vehicle)
        if new_registration is not None and vehicle.updated_at is not None:
            self._close(vehicle.vehicle_id, new_registration, vehicle.updated_at)
            self.history.append(Registration(vehicle.vehicle_id, vehicle.plate, vehicle.owner_id, vehicle.updated_at))
        self._record(changes)

    async def delete(self, vehicle: Vehicle, changes: Sequence[AuthListChange]) -> None:
        del self.vehicles[vehicle.vehicle_id]
        self.statuses.pop(vehicle.vehicle_id, None)
        if vehicle.updated_at is not None:
            self._close(vehicle.vehicle_id, "deleted", vehicle.updated_at)
        self._record(changes)

    async def registrations(self, vehicle_id: str) -> list[Registration]:
        return copy.deepcopy([r for r in self.history if r.vehicle_id == vehicle_id])

    async def search(self, filters: SearchFilters, *, limit: int, offset: int) -> tuple[list[Vehicle], int]:
        found = [v for v in self.vehicles.values()
                 if (filters.kind is None or v.kind == filters.kind)
                 and (filters.plate is None or plate_key(v.plate).startswith(plate_key(filters.plate)))
                 and (filters.make is None or (v.make or "").lower() == filters.make.lower())
                 and (filters.model is None or (v.model or "").lower() == filters.model.lower())
                 and (filters.owner_id is None or v.owner_id == filters.owner_id)]
        found.sort(key=lambda v: (plate_key(v.plate), v.vehicle_id))
        return copy.deepcopy(found[offset:offset + limit]), len(found)

    async def current_version(self) -> int:
        return max((c.version or 0 for c in self.changes), default=0)

    async def version_needed_by(self, vehicle_id: str) -> int:
        return max((c.version or 0 for c in self.changes if c.vehicle_id == vehicle_id), default=0)

    async def all_id_tags(self) -> list[IdTag]:
        return copy.deepcopy(sorted(self._tags(), key=lambda t: t.id_tag))

    async def changes_since(self, version: int) -> list[AuthListChange]:
        return copy.deepcopy([c for c in self.changes if (c.version or 0) > version])

    async def get_site(self, site_id: str) -> SiteSync | None:
        site = self.site_syncs.get(site_id)
        return None if site is None else copy.deepcopy(site)

    async def save_site(self, site: SiteSync) -> None:
        self.site_syncs[site.site_id] = copy.deepcopy(site)

    async def sites(self) -> list[SiteSync]:
        return copy.deepcopy([self.site_syncs[k] for k in sorted(self.site_syncs)])

    async def sites_behind(self, version: int) -> list[SiteSync]:
        return [site for site in await self.sites() if site.synced_version < version]

    async def types(self) -> list[VehicleType]:
        return copy.deepcopy(sorted(self.catalogue.values(), key=lambda t: (t.make, t.model)))

    async def get_type(self, type_id: str) -> VehicleType | None:
        return copy.deepcopy(self.catalogue.get(type_id))

    async def save_type(self, vehicle_type: VehicleType, *, new: bool) -> None:
        if new and vehicle_type.type_id in self.catalogue:
            raise Conflict("id taken", code="vehicle_type_taken")
        if any((t.make, t.model) == (vehicle_type.make, vehicle_type.model) and t.type_id != vehicle_type.type_id
               for t in self.catalogue.values()):
            raise Conflict("make and model taken", code="vehicle_type_taken")
        self.catalogue[vehicle_type.type_id] = copy.deepcopy(vehicle_type)

    async def get_status(self, vehicle_id: str) -> VehicleStatus | None:
        return copy.deepcopy(self.statuses.get(vehicle_id))

    async def save_status(self, status: VehicleStatus) -> None:
        self.statuses[status.vehicle_id] = copy.deepcopy(status)

    async def statuses_at(self, site_id: str, charger_id: str | None = None,
                          bay_id: str | None = None) -> list[VehicleStatus]:
        return copy.deepcopy([s for _, s in sorted(self.statuses.items())
                              if s.site_id == site_id and s.left_at is None
                              and (charger_id is None or s.charger_id == charger_id)
                              and (bay_id is None or s.bay_id == bay_id)])

    async def get_bay(self, site_id: str, bay_id: str) -> BayLink | None:
        return copy.deepcopy(self.bays.get((site_id, bay_id)))

    async def bay_served_by(self, site_id: str, charger_id: str, connector_id: int | None) -> BayLink | None:
        found = [b for _, b in sorted(self.bays.items()) if b.site_id == site_id and b.charger_id == charger_id
                 and (connector_id is None or b.connector_id == connector_id)]
        return copy.deepcopy(found[0]) if found else None

    async def save_bay(self, bay: BayLink) -> None:
        self.bays[(bay.site_id, bay.bay_id)] = copy.deepcopy(bay)

    def _record(self, changes: Sequence[AuthListChange]) -> None:
        for change in changes:
            change.version = len(self.changes) + 1
            self.changes.append(copy.deepcopy(change))

    def _close(self, vehicle_id: str, because: str, at: object) -> None:
        for stretch in self.history:
            if stretch.vehicle_id == vehicle_id and stretch.ended_at is None:
                stretch.ended_at, stretch.ended_because = at, because  # type: ignore[assignment]

    def _tags(self) -> list[IdTag]:
        return [tag for vehicle in self.vehicles.values() for tag in vehicle.id_tags]


class RecordingSender(commands.RecordingSender):

    def updates(self, site_id: str | None = None) -> list[AuthListUpdate]:
        return [AuthListUpdate.model_validate(c.body) for c in self.commands
                if site_id is None or c.site_id == site_id]
