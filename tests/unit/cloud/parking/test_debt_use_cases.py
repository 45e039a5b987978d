"""The debt rule of the booking use cases on the in-memory repository: ``payment.failed`` of an invoice with
``refuse_driver`` makes a reservation of that driver at that site a :class:`DriverInDebt` (402) naming the
invoice, storing nothing; ``payment.completed`` of the invoice (a wallet top-up paid it) lifts it. Only debts
at the same site and with ``refuse_driver`` count; redeliveries and a failure after the payment change
nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from cloud.contracts import Received
from cloud.contracts.payments import PaymentCompleted, PaymentFailed
from cloud.parking.booking import DriverInDebt, Vehicle
from cloud.parking.booking_service import BookingService
from cloud.parking.domain import Bay
from cloud.platform.cache import MemoryCache
from mqtt import BayOccupancy
from tests.support.events import received
from tests.support.identity import PRINCIPALS
from tests.support.uow import MemoryUnits
from tests.unit.cloud.parking.booking_fakes import InMemoryBookingRepository

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
DRIVER_A = PRINCIPALS["driver_a"]
DRIVER_B = PRINCIPALS["driver_b"]
World = tuple[BookingService, MemoryUnits[InMemoryBookingRepository]]


@pytest.fixture
def world() -> World:
    repo = InMemoryBookingRepository()
    for site_id in ("s1", "s2"):
        repo.sites[site_id] = [0, 0]
        for bay_id in ("R-1", "R-2"):
            bay = Bay.sensed(site_id, BayOccupancy(bay_id=bay_id, state="free", changed_at=T0), T0)
            bay.type = "regular"
            repo.bays[(site_id, bay_id)] = bay
    repo.vehicles["veh-a"] = Vehicle("veh-a", "electric", DRIVER_A.subject, "TAG-A")
    repo.vehicles["veh-b"] = Vehicle("veh-b", "electric", DRIVER_B.subject, "TAG-B")
    units = MemoryUnits(repo)
    return BookingService(units, MemoryCache(), clock=lambda: T0), units


def failed(invoice: str, *, refuse: bool = True, site_id: str = "s1", account: str = DRIVER_A.subject,
           at: datetime = T0) -> Received[PaymentFailed]:
    return received(PaymentFailed(payment_id=str(uuid.uuid4()), account_id=account, site_id=site_id,
                                  amount=Decimal("23.85"), currency="EUR", invoice_id=invoice, method="card",
                                  reason="declined", failed_at=at, refuse_driver=refuse), source="payments")


def paid(invoice: str, *, at: datetime = T0 + 10 * MIN) -> Received[PaymentCompleted]:
    return received(PaymentCompleted(payment_id=str(uuid.uuid4()), account_id=DRIVER_A.subject, site_id="s1",
                                     amount=Decimal("23.85"), currency="EUR", invoice_id=invoice, method="wallet",
                                     completed_at=at), source="payments")


async def reserve(service: BookingService, who: str = "driver_a", vehicle_id: str = "veh-a",
                  site_id: str = "s1") -> str:
    made = await service.reserve(PRINCIPALS[who], vehicle_id=vehicle_id, site_id=site_id, bay_id=None,
                                 bay_type="regular", starts_at=T0 + 60 * MIN, ends_at=T0 + 90 * MIN)
    return made.reservation_id


async def test_an_unpaid_invoice_refuses_the_driver_a_reservation_until_it_is_paid(world: World) -> None:
    service, units = world
    declined = failed("inv-7")
    await service.on_payment_failed(declined)
    await service.on_payment_failed(declined)  # redelivered: claimed once
    with pytest.raises(DriverInDebt) as refused:
        await reserve(service)
    assert (refused.value.status, refused.value.code, refused.value.invoice_id, refused.value.amount,
            refused.value.currency) == (402, "unpaid_invoice", "inv-7", Decimal("23.85"), "EUR")
    assert "inv-7" in refused.value.detail
    assert (units.repo.reservations, units.events, units.repo.sites["s1"]) == ({}, [], [0, 0]), "nothing stored"
    # the debt is the driver's at that site: another driver here, and this driver elsewhere, reserve
    await reserve(service, "driver_b", "veh-b")
    await reserve(service, site_id="s2")
    await service.on_payment_completed(paid("inv-7"))
    await service.on_payment_failed(declined)  # a late redelivery of the failure reopens nothing
    await service.on_payment_failed(failed("inv-7", at=T0 + 5 * MIN))  # nor a later failure once paid
    reservation_id = await reserve(service)
    assert units.repo.reservations[reservation_id].owner_id == DRIVER_A.subject


async def test_only_debts_the_site_refuses_for_count_and_the_oldest_is_named(world: World) -> None:
    service, _ = world
    await service.on_payment_failed(failed("inv-tolerated", refuse=False))
    await service.on_payment_failed(failed("inv-elsewhere", site_id="s2"))
    await service.on_payment_failed(failed("inv-of-b", account=DRIVER_B.subject))
    await reserve(service)  # none of these is driver_a's refusing debt at s1
    await service.on_payment_failed(failed("inv-new", at=T0 + 2 * MIN))
    await service.on_payment_failed(failed("inv-old", at=T0 + MIN))
    with pytest.raises(DriverInDebt) as refused:
        await reserve(service)
    assert refused.value.invoice_id == "inv-old"
    await service.on_payment_completed(paid("inv-old"))
    with pytest.raises(DriverInDebt) as still:
        await reserve(service)
    assert still.value.invoice_id == "inv-new"


async def test_a_payment_before_its_failure_arrives_leaves_no_debt(world: World) -> None:
    """Out of order (the top-up's payment.completed delivered before the card's payment.failed): settled."""
    service, _ = world
    await service.on_payment_completed(paid("inv-7"))
    await service.on_payment_failed(failed("inv-7"))
    await reserve(service)


async def test_a_failure_without_an_invoice_opens_no_debt(world: World) -> None:
    service, units = world
    body = failed("x").body.model_copy(update={"invoice_id": None})
    await service.on_payment_failed(received(body, source="payments"))
    assert units.repo.debts == {}
    await reserve(service)
