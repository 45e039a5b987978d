"""An in-memory parking repository, and a fake site link, for unit tests of the parking use cases."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime

from cloud.parking import domain
from cloud.parking.domain import Bay, ChargerStation, Site
from tests.support.commands import RecordingSender


class InMemoryParkingRepository:
    """:class:`~cloud.parking.repository.ParkingRepository` in dicts; hands out copies, as a database would."""

    def __init__(self) -> None:
        self.sites: dict[str, Site] = {}
        self.bays: dict[tuple[str, str], Bay] = {}
        self.stations: dict[tuple[str, str], ChargerStation] = {}
        self.wakeups = 0
        """Callbacks run by :meth:`after_commit`."""

    async def get_site(self, site_id: str) -> Site | None:
        return copy.deepcopy(self.sites.get(site_id))

    async def preload(self, site_ids: object, bays: object) -> None:
        return None

    async def lock_site(self, site_id: str) -> Site | None:
        return await self.get_site(site_id)

    async def save_site(self, site: Site) -> None:
        self.sites[site.site_id] = copy.deepcopy(site)

    async def get_bay(self, site_id: str, bay_id: str) -> Bay | None:
        return copy.deepcopy(self.bays.get((site_id, bay_id)))

    async def bays_of(self, site_id: str) -> list[Bay]:
        return copy.deepcopy([self.bays[key] for key in sorted(self.bays) if key[0] == site_id])

    async def save_bay(self, bay: Bay) -> None:
        self.bays[(bay.site_id, bay.bay_id)] = copy.deepcopy(bay)

    async def stations_of(self, site_id: str) -> list[ChargerStation]:
        return copy.deepcopy([self.stations[key] for key in sorted(self.stations) if key[0] == site_id])

    async def save_station(self, station: ChargerStation) -> None:
        self.stations[(station.site_id, station.charger_id)] = copy.deepcopy(station)

    async def in_service_counts(self, site_id: str) -> tuple[int, int]:
        bays = sum(1 for bay in self.bays.values() if bay.site_id == site_id and bay.in_service)
        chargers = sum(1 for s in self.stations.values() if s.site_id == site_id and s.in_service)
        return bays, chargers

    async def sites_with_power_due(self, now: datetime) -> list[str]:
        return [site.site_id for site in self.sites.values()
                if site.power_request is not None and site.power_request.status == domain.PENDING
                and site.power_request.next_send_at is not None and site.power_request.next_send_at <= now]

    async def all_sites(self) -> list[Site]:
        return copy.deepcopy([self.sites[key] for key in sorted(self.sites)])

    async def delete_site(self, site_id: str) -> None:
        self.sites.pop(site_id, None)

    def after_commit(self, callback: Callable[[], None]) -> None:
        # A unit of work of this fake cannot fail to commit once the use case asks this.
        self.wakeups += 1
        callback()


__all__ = ["InMemoryParkingRepository", "RecordingSender"]
