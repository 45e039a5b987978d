"""The list of sites for the operator's tools (``evpark sites``): open the parking database
(migrating it first), run the parking service's own use cases, close it.

Registering a site and writing its broker credentials happen in one unit of work: if the
credentials cannot be written, the site is not registered."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from cloud.parking import SPEC
from cloud.parking.repository import SqlParkingRepository
from cloud.parking.service import ParkingService
from cloud.parking.views import SiteListed
from cloud.platform.cache import MemoryCache
from cloud.platform.db import Database
from cloud.platform.outbox import Outbox
from cloud.platform.settings import CloudSettings
from cloud.platform.unit_of_work import sql_units_of_work


@asynccontextmanager
async def _parking(settings: CloudSettings) -> AsyncIterator[ParkingService]:
    db = Database(settings.database_url_for(SPEC.name))
    await db.connect()
    cache = MemoryCache()
    try:
        assert SPEC.migrations is not None
        await db.migrate(SPEC.migrations)
        outbox = Outbox(db, source=SPEC.name, publishes=SPEC.publishes)
        yield ParkingService(sql_units_of_work(outbox, SqlParkingRepository), cache)
    finally:
        await cache.close()
        await db.close()


async def add_site(settings: CloudSettings, site_id: str, provision: Callable[[str], Awaitable[None]]) -> None:
    async with _parking(settings) as parking:
        await parking.register_site(site_id, provision)


async def list_sites(settings: CloudSettings) -> list[SiteListed]:
    async with _parking(settings) as parking:
        return await parking.list_sites()


async def remove_site(settings: CloudSettings, site_id: str, deprovision: Callable[[str], Awaitable[None]]) -> None:
    async with _parking(settings) as parking:
        await parking.remove_site(site_id, deprovision)
