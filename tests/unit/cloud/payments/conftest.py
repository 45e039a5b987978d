from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloud.payments.service import PaymentService
from cloud.pricing import Tariff
from tests.support.identity import PRINCIPALS
from tests.support.uow import MemoryUnits
from tests.unit.cloud.payments.fakes import InMemoryPaymentsRepository

T0 = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)

ADMIN = PRINCIPALS["admin"]
"""Sees and changes every site: the caller of the tests about what a use case does (not who may)."""

Units = MemoryUnits[InMemoryPaymentsRepository]


def tariff_json(site_id: str | None = "site-1", **changes: Any) -> dict[str, Any]:
    """A tariff as a client sends it: parking by the quarter hour in regular bays; energy and a
    flat fee everywhere; 19 % tax."""
    body: dict[str, Any] = {
        "currency": "EUR", "tax_rate": "0.19", "time_zone": "Europe/Berlin",
        "elements": [
            {"components": [{"type": "parking_time", "price": "2.00", "step_size": 900}],
             "restrictions": {"bay_types": ["regular"]}},
            {"components": [{"type": "energy", "price": "0.35", "step_size": 1},
                            {"type": "flat", "price": "0.50"}]},
        ],
    }
    if site_id is not None:
        body["site_id"] = site_id
    return {**body, **changes}


def tariff(site_id: str = "site-1", **changes: Any) -> Tariff:
    return Tariff.model_validate(tariff_json(site_id, **changes))


class Clock:
    """The service's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def repo() -> InMemoryPaymentsRepository:
    return InMemoryPaymentsRepository()


@pytest.fixture
def units(repo: InMemoryPaymentsRepository) -> Units:
    return MemoryUnits(repo)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def payments(units: Units, clock: Clock) -> PaymentService:
    return PaymentService(units, clock)
