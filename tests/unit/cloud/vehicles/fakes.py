"""An in-memory vehicle registry for unit tests of its use cases."""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence

from cloud.vehicles.domain import AuthListChange, IdTag, SiteSync, Vehicle
from mqtt import AuthListUpdate
from tests.support import commands


class InMemoryVehicleRepository:
    """:class:`~cloud.vehicles.repository.VehicleRepository` in dicts; hands out copies, as a database would."""

    def __init__(self) -> None:
        self.vehicles: dict[str, Vehicle] = {}
        self.changes: list[AuthListChange] = []
        self.site_syncs: dict[str, SiteSync] = {}

    async def get(self, vehicle_id: str) -> Vehicle | None:
        vehicle = self.vehicles.get(vehicle_id)
        return None if vehicle is None else copy.deepcopy(vehicle)

    async def find_by_plate(self, plate: str) -> Vehicle | None:
        found = [v for v in self.vehicles.values() if v.plate == plate]
        return copy.deepcopy(found[0]) if found else None

    async def taken_id_tags(self, id_tags: Collection[str]) -> list[str]:
        return sorted(tag.id_tag for tag in self._tags() if tag.id_tag in id_tags)

    async def add(self, vehicle: Vehicle, changes: Sequence[AuthListChange]) -> None:
        stored = copy.deepcopy(vehicle)
        stored.id_tags.sort(key=lambda t: t.id_tag)
        self.vehicles[vehicle.vehicle_id] = stored
        for change in changes:
            change.version = len(self.changes) + 1
            self.changes.append(copy.deepcopy(change))

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

    def _tags(self) -> list[IdTag]:
        return [tag for vehicle in self.vehicles.values() for tag in vehicle.id_tags]


class RecordingSender(commands.RecordingSender):

    def updates(self, site_id: str | None = None) -> list[AuthListUpdate]:
        return [AuthListUpdate.model_validate(c.body) for c in self.commands
                if site_id is None or c.site_id == site_id]
