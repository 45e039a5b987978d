from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloud.vehicles.service import VehicleService
from tests.support.uow import MemoryUnits
from tests.unit.cloud.vehicles.fakes import InMemoryVehicleRepository, RecordingSender


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def units() -> MemoryUnits[InMemoryVehicleRepository]:
    return MemoryUnits(InMemoryVehicleRepository())


@pytest.fixture
def registry(units: MemoryUnits[InMemoryVehicleRepository], clock: Clock) -> VehicleService:
    return VehicleService(units, clock=clock)


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()
