"""The debt rule on the parking side over HTTP, in both run modes (embedded: SQLite and the in-process bus;
production: PostgreSQL, RabbitMQ, Redis): payments' ``payment.failed`` with ``refuse_driver`` (published here
as payments publishes it) makes ``POST /parking/reserve`` a 402 problem naming the unpaid invoice, storing
nothing, and ``payment.completed`` of that invoice (a wallet top-up paid it) lifts the refusal. The lot and
its stand-in edge are those of :mod:`tests.integration.cloud.test_parking_reservations`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from cloud.contracts.payments import PaymentCompleted, PaymentFailed
from cloud.parking.booking import slot_id_of
from cloud.platform.ports import Event
from tests.integration.cloud import test_parking_reservations as reservations
from tests.support.identity import PRINCIPALS
from tests.support.waiting import eventually

lot = reservations.lot
Lot = reservations.Lot
DRIVER_A = PRINCIPALS["driver_a"].subject
NOW = datetime.now(UTC).replace(microsecond=0)


def failed(invoice: str, *, refuse: bool = True, site_id: str = "site-1") -> Event:
    return Event.of(PaymentFailed(payment_id=str(uuid.uuid4()), account_id=DRIVER_A, site_id=site_id,
                                  amount=Decimal("23.85"), currency="EUR", invoice_id=invoice, stay_id="stay-9",
                                  method="card", reason="declined", failed_at=NOW, refuse_driver=refuse),
                    source="payments")


def paid(invoice: str) -> Event:
    return Event.of(PaymentCompleted(payment_id=str(uuid.uuid4()), account_id=DRIVER_A, site_id="site-1",
                                     amount=Decimal("23.85"), currency="EUR", invoice_id=invoice, method="wallet",
                                     completed_at=NOW + timedelta(minutes=10)), source="payments")


async def test_a_declined_invoice_refuses_new_reservations_with_a_402_until_it_is_paid(lot: Lot) -> None:
    # another site's debt, and a debt at a site that does not refuse, change nothing here
    await lot.bus.publish(failed("inv-elsewhere", site_id="site-2"))
    await lot.bus.publish(failed("inv-tolerated", refuse=False))
    declined = failed("inv-7")
    await lot.bus.publish(declined)

    async def debt_known(known: bool) -> bool:
        """Asked with a window in the past (422 when not refused), so that polling reserves nothing."""
        answer = await reservations.reserve(lot, bay_id="R-01", start_in=-2 * reservations.HOUR)
        assert answer.status_code in (402, 422), answer.text
        return (answer.status_code == 402) == known

    await eventually(lambda: debt_known(True), what="parking learned the unpaid invoice")
    answer = await reservations.reserve(lot, bay_id="R-01")
    assert answer.status_code == 402, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert (problem["status"], problem["code"], problem["invoice_id"], problem["amount"], problem["currency"]) == (
        402, "unpaid_invoice", "inv-7", "23.85", "EUR")
    assert "inv-7" in problem["detail"] and problem["instance"] == "/parking/reserve"
    slot = (await lot.api.get(f"/parking/slots/{slot_id_of('site-1', 'R-01')}")).json()
    assert slot["next_reservations"] == [] and lot.names("parking.reserved") == [], "nothing stored"
    # the debt is driver_a's: driver_b reserves at the same site meanwhile
    other = await reservations.reserve(lot, "driver_b", vehicle_id="veh-b", bay_id="R-02")
    assert other.status_code == 201, other.text

    await lot.bus.publish(paid("inv-7"))
    await eventually(lambda: debt_known(False), what="parking learned the invoice was paid")
    await lot.bus.publish(declined)  # redelivered after the payment: reopens nothing
    made = await reservations.reserve(lot, bay_id="R-01")
    assert made.status_code == 201, made.text
    assert made.json()["reservation_id"] in [
        r["reservation_id"] for r in (await lot.api.get(f"/parking/slots/{made.json()['slot_id']}"))
        .json()["next_reservations"]]
    await eventually(lambda: len(lot.names("parking.reserved")) == 2, what="both reservations published")
