"""A charging service over an in-memory repository, and the edge's session messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloud.charging.repository import ChargingRepository
from cloud.charging.service import ChargingService
from cloud.contracts import Received
from cloud.contracts.vehicles import VehicleRegistered
from cloud.platform.cache import MemoryCache
from mqtt import (
    ChargerConnection,
    Envelope,
    IdTagStatus,
    SessionAnomaly,
    SessionMeter,
    SessionsOpen,
    SessionStarted,
    SessionStopped,
)
from tests.support.events import received
from tests.support.identity import PRINCIPALS
from tests.support.uow import MemoryUnits
from tests.unit.cloud.charging.fakes import InMemoryChargingRepository

T0 = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)

SiteMessage = SessionStarted | SessionMeter | SessionStopped | ChargerConnection | SessionAnomaly | SessionsOpen

OWNER = PRINCIPALS["driver_a"]
"""Who registers the vehicles of these tests, unless a test says otherwise."""
ADMIN = PRINCIPALS["admin"]


def registered(vehicle_id: str, *id_tags: str, owner: str | None = OWNER.subject) -> Received[VehicleRegistered]:
    """``vehicle.registered`` 1.1 of a vehicle with these idTags, registered by ``owner``
    (``owner=None``: as a 1.0 event, a vehicle of no driver)."""
    return received(VehicleRegistered(vehicle_id=vehicle_id, plate=vehicle_id.upper(), id_tags=list(id_tags),
                                      owner_id=owner), source="vehicles")


class Charging:
    """The service under test, what it committed, and a way to feed it the edge's messages."""

    def __init__(self) -> None:
        self.repo = InMemoryChargingRepository()
        self.units: MemoryUnits[ChargingRepository] = MemoryUnits(self.repo)
        self.cache = MemoryCache()
        self.service = ChargingService(self.units, self.cache)
        self._seq = 0

    async def receive(self, body: SiteMessage, site_id: str = "site-a", store_id: str | None = None) -> Envelope:
        """One session envelope (of an edge store ``store_id``; None: an edge before store ids), handled in
        its own unit of work as the MQTT link does."""
        self._seq += 1
        envelope = Envelope.wrap(site_id, self._seq, body, store_id=store_id)
        async with self.units() as uow:
            await self.service.record_session_message(uow, envelope)
        return envelope


@pytest.fixture
def charging() -> Charging:
    return Charging()


def started(transaction_id: int = 7, id_tag: str = "TAG1", meter_start: int = 1_000, at: datetime = T0,
            charger_id: str = "CP1") -> SessionStarted:
    return SessionStarted(charger_id=charger_id, connector_id=1, transaction_id=transaction_id, id_tag=id_tag,
                          id_tag_status=IdTagStatus.ACCEPTED, meter_start_wh=meter_start, started_at=at)


def meter(register_wh: int | None, transaction_id: int | None = 7) -> SessionMeter:
    return SessionMeter(charger_id="CP1", connector_id=1, transaction_id=transaction_id,
                        energy_register_wh=register_wh, sampled_at=T0)


def stopped(transaction_id: int = 7, energy: int = 7_500, at: datetime = T0 + timedelta(hours=1),
            id_tag: str | None = None, charger_id: str = "CP1") -> SessionStopped:
    return SessionStopped(charger_id=charger_id, transaction_id=transaction_id, meter_stop_wh=1_000 + energy,
                          energy_wh=energy, stopped_at=at, reason="Local", id_tag=id_tag)
