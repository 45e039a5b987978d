from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cloud.parking.service import ParkingService
from cloud.platform.cache import MemoryCache
from mqtt import (
    BayOccupancy,
    BayUsage,
    Command,
    CommandResult,
    CommandStatus,
    Envelope,
    InventoryBay,
    InventoryCharger,
    SiteHello,
    SiteInventory,
)
from tests.support.identity import PRINCIPALS
from tests.support.uow import MemoryUnits
from tests.unit.cloud.parking.fakes import InMemoryParkingRepository, RecordingSender

T0 = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)

ADMIN = PRINCIPALS["admin"]
"""Sees and changes every site: the caller of the tests about what a use case does (not who may)."""

Units = MemoryUnits[InMemoryParkingRepository]


class Clock:
    """A monotonic clock the tests move by hand (for the availability cache's TTL)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class EdgeSite:
    """Plays one site's edge towards the parking service: each message in its own unit of work,
    as the MQTT link delivers it."""

    def __init__(self, parking: ParkingService, units: Units, site_id: str = "site-1") -> None:
        self.parking, self.units, self.site_id, self.seq = parking, units, site_id, 0

    async def send(self, body: Any, ts: datetime | None = None) -> Envelope:
        self.seq += 1
        envelope = Envelope.wrap(self.site_id, self.seq, body, ts=ts)
        async with self.units() as uow:
            await self.parking.record_site_message(uow, envelope)
        return envelope

    async def inventory(self, *bays: InventoryBay, chargers: tuple[InventoryCharger, ...] | None = None,
                        power_limit_a: float | None = 32.0, ts: datetime | None = None) -> None:
        listed = bays or (InventoryBay(bay_id="EV-1", type="ev", charger_id="CP-1", connector_id=1),
                          InventoryBay(bay_id="EV-2", type="ev", charger_id="CP-1", connector_id=2),
                          InventoryBay(bay_id="R-1", type="regular"))
        if chargers is None:
            chargers = (InventoryCharger(charger_id="CP-1", connectors=2, max_power_w=22_000),)
        await self.send(SiteInventory(bays=list(listed), chargers=list(chargers), power_limit_a=power_limit_a,
                                      phases=3, voltage=230.0), ts=ts or T0)

    async def occupancy(self, bay_id: str, state: str, at: datetime) -> None:
        await self.send(BayOccupancy(bay_id=bay_id, state=state, changed_at=at))  # type: ignore[arg-type]

    async def usage(self, bay_id: str, state: str, since: datetime, transaction_id: int | None = None, *,
                    ts: datetime | None = None) -> None:
        connector = {"EV-1": 1, "EV-2": 2}.get(bay_id, 1)
        await self.send(BayUsage(bay_id=bay_id, charger_id="CP-1", connector_id=connector, state=state,  # type: ignore[arg-type]
                                 since=since, transaction_id=transaction_id, words=2), ts=ts or since)

    async def hello(self) -> None:
        await self.send(SiteHello(edge_version="t", authlist_version=0))

    async def answer(self, command: Command, status: CommandStatus, *, detail: str | None = None,
                     data: dict[str, Any] | None = None, ts: datetime | None = None) -> None:
        await self.send(CommandResult(command_id=command.id, command_type=command.type, status=status,
                                      detail=detail, data=data or {}), ts=ts)


@pytest.fixture
def repo() -> InMemoryParkingRepository:
    return InMemoryParkingRepository()


@pytest.fixture
def units(repo: InMemoryParkingRepository) -> Units:
    return MemoryUnits(repo)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def parking(units: Units, clock: Clock) -> ParkingService:
    return ParkingService(units, MemoryCache(clock=clock))


@pytest.fixture
def site(parking: ParkingService, units: Units) -> EdgeSite:
    return EdgeSite(parking, units)


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()
