"""The debt rule on the charging side: ``payment.failed`` (``refuse_driver``) opens a debt in the
projection, ``payment.completed`` of the same invoice settles it, and a remote start for a driver who owes
the site an invoice the site refuses over is a 402 naming it (the use cases on an in-memory repository)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from cloud.charging.domain import DriverInDebt
from cloud.charging.service import ChargingService
from cloud.charging.views import StartRequest
from cloud.contracts import Received
from cloud.contracts.payments import PaymentCompleted, PaymentFailed
from mqtt import ChargerConnection, InventoryCharger, SiteInventory
from tests.support.events import received
from tests.support.identity import PRINCIPALS
from tests.unit.cloud.charging.conftest import OWNER, Charging, registered
from tests.unit.cloud.charging.test_remote_commands import FakeEdge, status

NOW = datetime.now(UTC).replace(microsecond=0)
ADMIN = PRINCIPALS["admin"]


@pytest.fixture
async def site(charging: Charging) -> Charging:
    """site-1 with charger CP1 online and Available (answered by a stand-in edge); veh-1 of driver A."""
    charging.service = ChargingService(charging.units, charging.cache, sender=FakeEdge(charging), answer_within=0.5,
                                       command_ttl=0.4, session_wait=0.5)
    await charging.service.on_vehicle_registered(registered("veh-1", "TAG1"))
    await charging.receive(SiteInventory(bays=[], chargers=[InventoryCharger(charger_id="CP1", connectors=1)]),
                           site_id="site-1")
    await charging.receive(ChargerConnection(charger_id="CP1", online=True, at=NOW), site_id="site-1")
    for connector in (0, 1):
        await charging.receive(status("CP1", connector, "Available"), site_id="site-1")
    return charging


def start(**changes: Any) -> StartRequest:
    return StartRequest(**{"vehicle_id": "veh-1", "site_id": "site-1", "charger_id": "CP1", **changes})


def failed(invoice: str | None = "inv-1", *, refuse: bool = True, site_id: str = "site-1",
           account: str = OWNER.subject, at: datetime = NOW, amount: str = "12.40") -> Received[PaymentFailed]:
    return received(PaymentFailed(payment_id=str(uuid.uuid4()), account_id=account, site_id=site_id,
                                  amount=Decimal(amount), currency="EUR", invoice_id=invoice, method="card",
                                  reason="declined", failed_at=at, refuse_driver=refuse), source="payments")


def completed(invoice: str | None = "inv-1", *, site_id: str = "site-1", account: str = OWNER.subject,
              at: datetime = NOW + timedelta(minutes=5)) -> Received[PaymentCompleted]:
    return received(PaymentCompleted(payment_id=str(uuid.uuid4()), account_id=account, site_id=site_id,
                                     amount=Decimal("12.40"), currency="EUR", invoice_id=invoice, method="wallet",
                                     completed_at=at), source="payments")


async def refused(charging: Charging) -> DriverInDebt:
    with pytest.raises(DriverInDebt) as refusal:
        await charging.service.remote_start(OWNER, start())
    return refusal.value


async def test_a_declined_invoice_at_a_refusing_site_is_a_402_naming_it_until_a_top_up_pays_it(site: Charging) -> None:
    await site.service.on_payment_failed(failed())
    refusal = await refused(site)
    assert (refusal.status, refusal.code, refusal.invoice_id, refusal.amount, refusal.currency) == (
        402, "unpaid_invoice", "inv-1", Decimal("12.40"), "EUR")
    assert "inv-1" in refusal.detail and "12.40 EUR" in refusal.detail
    assert site.repo.commands == {}  # nothing was sent to the charger
    with pytest.raises(DriverInDebt):  # whoever asks for the driver's vehicle (an admin too)
        await site.service.remote_start(ADMIN, start())

    await site.service.on_payment_completed(completed())
    answer = await site.service.remote_start(OWNER, start())
    assert answer.status == "Accepted"


async def test_a_site_that_does_not_refuse_or_another_site_or_driver_is_not_refused(site: Charging) -> None:
    await site.service.on_payment_failed(failed("inv-1", refuse=False))
    await site.service.on_payment_failed(failed("inv-2", site_id="site-2"))
    await site.service.on_payment_failed(failed("inv-3", account=PRINCIPALS["driver_b"].subject))
    await site.service.on_payment_failed(failed(None))  # an ad-hoc charge that failed: no invoice, no debt
    assert (await site.service.remote_start(OWNER, start())).status == "Accepted"
    assert set(site.repo.debts) == {"inv-1", "inv-2", "inv-3"}


async def test_the_oldest_of_several_unpaid_invoices_is_named_and_each_must_be_paid(site: Charging) -> None:
    await site.service.on_payment_failed(failed("inv-new", at=NOW))
    await site.service.on_payment_failed(failed("inv-old", at=NOW - timedelta(days=2)))
    assert (await refused(site)).invoice_id == "inv-old"
    await site.service.on_payment_completed(completed("inv-old"))
    assert (await refused(site)).invoice_id == "inv-new"


async def test_a_redelivered_failure_after_payment_reopens_nothing(site: Charging) -> None:
    failure = failed()
    await site.service.on_payment_failed(failure)
    await site.service.on_payment_completed(completed())
    await site.service.on_payment_failed(failure)  # the same event again: claimed already
    await site.service.on_payment_failed(failed())  # a stale failure of the paid invoice
    assert (await site.service.remote_start(OWNER, start())).status == "Accepted"


async def test_a_completion_delivered_before_the_failure_leaves_the_invoice_paid(site: Charging) -> None:
    await site.service.on_payment_completed(completed(at=NOW + timedelta(minutes=5)))
    await site.service.on_payment_failed(failed(at=NOW))
    assert site.repo.debts["inv-1"].paid_at == NOW + timedelta(minutes=5)
    assert (await site.service.remote_start(OWNER, start())).status == "Accepted"


async def test_a_later_failure_takes_the_sites_newer_setting(site: Charging) -> None:
    await site.service.on_payment_failed(failed(refuse=False, at=NOW))
    assert (await site.service.remote_start(OWNER, start())).status == "Accepted"
    await site.service.on_payment_failed(failed(refuse=True, at=NOW + timedelta(hours=1), amount="12.40"))
    assert (await refused(site)).invoice_id == "inv-1"
