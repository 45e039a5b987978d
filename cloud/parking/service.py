"""Parking use cases: keep each site's bays as their sensors report them; answer availability."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime

from sqlmodel import col, select

from cloud.parking import domain, events
from cloud.parking.models import Bay
from cloud.platform.errors import NotFound
from cloud.platform.outbox import Outbox, Transaction
from cloud.platform.ports import Cache
from mqtt import BayOccupancy, Envelope, parse_body

AVAILABILITY_TTL_SECONDS = 10.0


class ParkingService:
    def __init__(self, outbox: Outbox, cache: Cache) -> None:
        self._outbox = outbox
        self._cache = cache

    async def record_bay_message(self, tx: Transaction, envelope: Envelope) -> None:
        """One ``bay.occupancy`` from a site's edge (already deduplicated by the inbox)."""
        report = parse_body(envelope.type, envelope.body)
        if not isinstance(report, BayOccupancy):
            return
        now = datetime.now(UTC)
        bay = await tx.session.get(Bay, (envelope.site_id, report.bay_id))
        if bay is None:
            bay = Bay(site_id=envelope.site_id, bay_id=report.bay_id, state=report.state,
                      changed_at=report.changed_at, updated_at=now)
            tx.session.add(bay)
            changed = True
        else:
            changed = domain.apply_occupancy(bay, report, now)
        if changed:
            tx.emit(events.bay_changed(bay))
            await self._cache.delete(_availability_key(envelope.site_id))

    async def bays(self, site_id: str) -> list[dict[str, object]]:
        return [_bay_view(bay) for bay in await self._bays_of(site_id)]

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
    return {"bay_id": bay.bay_id, "state": bay.state, "changed_at": bay.changed_at}
