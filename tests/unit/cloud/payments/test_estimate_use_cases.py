"""The estimate of a stay: who may ask, what is refused before the engine is asked, what the
engine is asked, and how its invoice is answered (money as decimal strings).

The engine is replaced here by a recorder (the amounts it computes are
``test_estimate_amounts.py``'s), so these tests hold whatever the engine's numbers are.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from cloud import pricing
from cloud.contracts.errors import NotFound
from cloud.payments import domain
from cloud.payments.domain import EstimateQuery
from cloud.payments.service import PaymentService
from cloud.pricing import Invoice, InvoiceLine, Tariff
from tests.support.identity import PRINCIPALS
from tests.unit.cloud.payments.conftest import ADMIN, T0, tariff

INVOICE = Invoice(currency="EUR", lines=[
    InvoiceLine(type="energy", description="energy", quantity=Decimal("10.000"), unit="kWh",
                unit_price=Decimal("0.35"), amount=Decimal("3.50"), period_start=T0,
                period_end=T0 + timedelta(hours=2)),
    InvoiceLine(type="flat", description="session fee", quantity=Decimal(1), unit="stay", unit_price=Decimal("0.50"),
                amount=Decimal("0.50")),
    InvoiceLine(type="tax", description="VAT 19 %", quantity=Decimal(19), unit="%", unit_price=Decimal("4.00"),
                amount=Decimal("0.76")),
], subtotal=Decimal("4.00"), tax=Decimal("0.76"), total=Decimal("4.76"))


class Engine:
    """Stands in for ``cloud.pricing.estimate``: records each call, answers :data:`INVOICE`."""

    def __init__(self) -> None:
        self.calls: list[tuple[Tariff, dict[str, Any]]] = []
        self.refuse: Exception | None = None

    def __call__(self, tariff: Tariff, **stay: Any) -> Invoice:
        self.calls.append((tariff, stay))
        if self.refuse is not None:
            raise self.refuse
        return INVOICE


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Engine:
    fake = Engine()
    monkeypatch.setattr(pricing, "estimate", fake, raising=False)
    return fake


def query(**changes: Any) -> EstimateQuery:
    stay: dict[str, Any] = {"bay_type": "ev", "power_class": "ac", "arrive": T0, "leave": T0 + timedelta(hours=2),
                            "energy_kwh": Decimal(10)}
    return EstimateQuery(**{**stay, **changes})


async def test_the_estimate_is_the_engines_invoice_under_the_tariff_in_force(
        payments: PaymentService, engine: Engine) -> None:
    await payments.change_rates(ADMIN, "site-1", tariff())
    await payments.change_rates(ADMIN, "site-1", tariff(tax_rate="0.20"))
    answer = await payments.estimate(PRINCIPALS["driver_a"], "site-1", query())
    [(used, stay)] = engine.calls
    assert used == tariff(tax_rate="0.20")
    assert stay == {"bay_type": "ev", "power_class": "ac", "arrive": T0, "leave": T0 + timedelta(hours=2),
                    "energy_kwh": Decimal(10)}
    assert (answer.site_id, answer.tariff_version, answer.currency) == ("site-1", 2, "EUR")
    assert [(line.type, line.amount) for line in answer.lines] == [
        ("energy", Decimal("3.50")), ("flat", Decimal("0.50")), ("tax", Decimal("0.76"))]
    assert (answer.subtotal, answer.tax, answer.total) == (Decimal("4.00"), Decimal("0.76"), Decimal("4.76"))


async def test_money_is_answered_as_decimal_strings(payments: PaymentService, engine: Engine) -> None:
    await payments.change_rates(ADMIN, "site-1", tariff())
    body = (await payments.estimate(ADMIN, "site-1", query())).model_dump(mode="json")
    assert (body["subtotal"], body["tax"], body["total"], body["energy_kwh"]) == ("4.00", "0.76", "4.76", "10")
    assert body["lines"][0] == {"type": "energy", "description": "energy", "quantity": "10.000", "unit": "kWh",
                                "unit_price": "0.35", "amount": "3.50", "period_start": "2026-11-23T18:00:00Z",
                                "period_end": "2026-11-23T20:00:00Z"}
    assert not any(isinstance(v, float) for line in body["lines"] for v in line.values())


@pytest.mark.parametrize("who", sorted(PRINCIPALS))
async def test_every_caller_gets_an_estimate_for_any_site(payments: PaymentService, engine: Engine, who: str) -> None:
    await payments.change_rates(ADMIN, "site-1", tariff())
    assert (await payments.estimate(PRINCIPALS[who], "site-1", query())).total == Decimal("4.76")


async def test_a_site_without_a_tariff_has_no_estimate(payments: PaymentService, engine: Engine) -> None:
    await payments.change_rates(ADMIN, "site-2", tariff("site-2"))
    with pytest.raises(NotFound) as missing:
        await payments.estimate(ADMIN, "site-1", query())
    assert missing.value.code == "unknown_tariff"
    assert engine.calls == []


@pytest.mark.parametrize("changes, field", [
    ({"leave": T0 - timedelta(minutes=1)}, ("leave",)),
    ({"leave": T0}, ("leave",)),
    ({"leave": T0 + domain.MAX_ESTIMATE_STAY + timedelta(seconds=1)}, ("leave",)),
    ({"energy_kwh": Decimal("-0.001")}, ("energy_kwh",)),
    ({"energy_kwh": Decimal("NaN")}, ("energy_kwh",)),
    ({"energy_kwh": domain.MAX_ESTIMATE_KWH + 1}, ("energy_kwh",)),
    ({"arrive": T0.replace(tzinfo=None)}, ("arrive",)),
])
async def test_a_stay_that_cannot_be_is_refused_before_the_engine_is_asked(
        payments: PaymentService, engine: Engine, changes: dict[str, Any], field: tuple[str, ...]) -> None:
    await payments.change_rates(ADMIN, "site-1", tariff())
    with pytest.raises(domain.InvalidEstimate) as refused:
        await payments.estimate(ADMIN, "site-1", query(**changes))
    assert (refused.value.status, refused.value.code) == (422, "invalid_estimate")
    assert [loc for loc, _ in refused.value.errors] == [field]
    assert engine.calls == []


async def test_the_longest_stay_and_zero_energy_are_priced(payments: PaymentService, engine: Engine) -> None:
    await payments.change_rates(ADMIN, "site-1", tariff())
    await payments.estimate(ADMIN, "site-1", query(leave=T0 + domain.MAX_ESTIMATE_STAY, energy_kwh=Decimal(0)))
    assert len(engine.calls) == 1


async def test_a_stay_the_engine_refuses_is_an_invalid_estimate(payments: PaymentService, engine: Engine) -> None:
    await payments.change_rates(ADMIN, "site-1", tariff())
    engine.refuse = ValueError("a DC session in an accessible bay cannot be priced")
    with pytest.raises(domain.InvalidEstimate) as refused:
        await payments.estimate(ADMIN, "site-1", query())
    assert refused.value.errors == [((), "a DC session in an accessible bay cannot be priced")]
