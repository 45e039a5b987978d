"""Parking use cases: keep each site's bays as their sensors report them; answer availability."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime

from sqlmodel import col, select

from cloud.parking import domain, events
from cloud.parking.models import Bay, ChargerStation
from cloud.platform.errors import NotFound
from cloud.platform.outbox import Outbox, Transaction
from cloud.platform.ports import Cache
from mqtt import BayOccupancy, Envelope, SiteInventory, parse_body

AVAILABILITY_TTL_SECONDS = 10.0


class ParkingService:
    def __init__(self, outbox: Outbox, cache: Cache) -> None:
        self._outbox = outbox
        self._cache = cache

    async def record_site_message(self, tx: Transaction, envelope: Envelope) -> None:
        """A message of a site's edge (already deduplicated by the inbox)."""
        body = parse_body(envelope.type, envelope.body)
        if isinstance(body, BayOccupancy):
            await self._record_occupancy(tx, envelope.site_id, body)
        elif isinstance(body, SiteInventory):
            await self._mirror_inventory(tx, envelope.site_id, body)
        await self._cache.delete(_availability_key(envelope.site_id))

    async def _mirror_inventory(self, tx: Transaction, site_id: str, inventory: SiteInventory) -> None:
        """The site's inventory replaces what we knew: new bays and chargers appear, missing ones
        go out of service (kept, with their history, in case they come back)."""
        now = datetime.now(UTC)
        bays = {bay.bay_id: bay for bay in (await tx.session.execute(
            select(Bay).where(col(Bay.site_id) == site_id))).scalars()}
        for item in inventory.bays:
            bay = bays.pop(item.bay_id, None)
            if bay is None:
                bay = Bay(site_id=site_id, bay_id=item.bay_id, state=domain.UNKNOWN,
                          changed_at=domain.NEVER_REPORTED, updated_at=now)
                tx.session.add(bay)
            domain.apply_inventory_bay(bay, item, now)
        for gone in bays.values():
            gone.in_service = False
            gone.updated_at = now
        stations = {s.charger_id: s for s in (await tx.session.execute(
            select(ChargerStation).where(col(ChargerStation.site_id) == site_id))).scalars()}
        for charger in inventory.chargers:
            station = stations.pop(charger.charger_id, None)
            if station is None:
                station = ChargerStation(site_id=site_id, charger_id=charger.charger_id, connectors=0, updated_at=now)
                tx.session.add(station)
            station.connectors = charger.connectors
            station.max_power_w = charger.max_power_w
            station.in_service = True
            station.updated_at = now
        for gone_station in stations.values():
            gone_station.in_service = False
            gone_station.updated_at = now
        tx.emit(events.inventory_changed(site_id, len(inventory.bays), len(inventory.chargers)))

    async def _record_occupancy(self, tx: Transaction, site_id: str, report: BayOccupancy) -> None:
        now = datetime.now(UTC)
        bay = await tx.session.get(Bay, (site_id, report.bay_id))
        if bay is None:
            bay = Bay(site_id=site_id, bay_id=report.bay_id, state=report.state,
                      changed_at=report.changed_at, updated_at=now)
            tx.session.add(bay)
            changed = True
        else:
            changed = domain.apply_occupancy(bay, report, now)
        if changed:
            tx.emit(events.bay_changed(bay))

    async def bays(self, site_id: str) -> list[dict[str, object]]:
        return [_bay_view(bay) for bay in await self._bays_of(site_id) if bay.in_service]

    async def chargers(self, site_id: str) -> list[dict[str, object]]:
        async with self._outbox.db.session() as session:
            stations = list((await session.execute(
                select(ChargerStation).where(col(ChargerStation.site_id) == site_id, col(ChargerStation.in_service))
                .order_by(col(ChargerStation.charger_id)))).scalars())
        if not stations:
            raise NotFound(f"no charger stations are known for site {site_id!r}", code="unknown_site")
        return [{"charger_id": s.charger_id, "connectors": s.connectors, "max_power_w": s.max_power_w}
                for s in stations]

    async def availability(self, site_id: str) -> dict[str, object]:
        cached = await self._cache.get(_availability_key(site_id))
        if cached is not None:
            return dict(json.loads(cached))
        result: dict[str, object] = {"site_id": site_id, **asdict(domain.Availability.of(await self._bays_of(site_id)))}
        await self._cache.set(_availability_key(site_id), json.dumps(result).encode(), AVAILABILITY_TTL_SECONDS)
        return result

    async def _bays_of(self, site_id: str) -> list[Bay]:
        async with self._outbox.db.session() as session:
            bays = list((await session.execute(
                select(Bay).where(col(Bay.site_id) == site_id).order_by(col(Bay.bay_id)))).scalars())
        if not bays:
            raise NotFound(f"no bays are known for site {site_id!r}", code="unknown_site")
        return bays


def _availability_key(site_id: str) -> str:
    return f"parking:availability:{site_id}"


def _bay_view(bay: Bay) -> dict[str, object]:
    changed_at = None if bay.changed_at == domain.NEVER_REPORTED else bay.changed_at
    return {"bay_id": bay.bay_id, "state": bay.state, "changed_at": changed_at, "type": bay.type,
            "charger_id": bay.charger_id, "connector_id": bay.connector_id}
