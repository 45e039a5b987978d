"""The debt rule on the charging side over HTTP, in both run modes (embedded: SQLite and the in-process bus;
production: PostgreSQL, RabbitMQ, Redis): payments' ``payment.failed`` with ``refuse_driver`` (published
here as payments publishes it) makes ``POST /charging/start`` a 402 problem naming the unpaid invoice, and
``payment.completed`` of that invoice (a wallet top-up paid it) lifts the refusal. The site and its stand-in
edge are those of :mod:`tests.integration.cloud.test_charging_remote`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from cloud.contracts.payments import PaymentCompleted, PaymentFailed
from cloud.platform.ports import Event
from cloud.platform.runtime import Platform
from tests.integration.cloud import test_charging_remote as remote
from tests.support.identity import PRINCIPALS, headers
from tests.support.waiting import eventually

site = remote.site
Site = remote.Site
START = remote.START
OFFLINE = {**START, "charger_id": "CP2"}
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


async def test_a_declined_invoice_refuses_remote_starts_with_a_402_until_it_is_paid(site: Site) -> None:
    platform: Platform = site.app.state.platform
    # another site's debt, and a debt at a site that does not refuse, change nothing here
    await platform.bus.publish(failed("inv-elsewhere", site_id="site-2"))
    await platform.bus.publish(failed("inv-tolerated", refuse=False))
    declined = failed("inv-7")
    await platform.bus.publish(declined)

    async def debt_known(known: bool) -> bool:
        """Asked on the offline CP2 (409 charger_offline when not refused), so that polling starts nothing."""
        answer = await site.api.post("/charging/start", headers=headers("driver_a"), json=OFFLINE)
        assert answer.status_code in (402, 409), answer.text
        return (answer.status_code == 402) == known

    await eventually(lambda: debt_known(True), what="charging learned the unpaid invoice")
    sent_before = len(site.sent)
    answer = await site.api.post("/charging/start", headers=headers("driver_a"), json=START)
    assert answer.status_code == 402
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert (problem["code"], problem["invoice_id"], problem["amount"], problem["currency"]) == (
        "unpaid_invoice", "inv-7", "23.85", "EUR")
    assert "inv-7" in problem["detail"]
    assert len(site.sent) == sent_before  # no command went to the charger
    # another driver's vehicle is still 404, not a hint about driver A's debt
    assert (await site.api.post("/charging/start", headers=headers("driver_b"), json=START)).status_code == 404

    await platform.bus.publish(paid("inv-7"))
    await platform.bus.publish(declined)  # the failure redelivered after the payment reopens nothing

    await eventually(lambda: debt_known(False), what="the paid invoice lifted the refusal")
    started = await site.api.post("/charging/start", headers=headers("driver_a"), json=START)
    assert (started.status_code, started.json()["status"]) == (200, "Accepted")
