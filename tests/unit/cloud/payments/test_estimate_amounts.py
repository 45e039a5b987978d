"""The estimate's amounts, from the real engine (``cloud.pricing.estimate``), computed by hand.

The tariff (conftest): parking 2.00/h by the quarter hour in regular bays; energy 0.35/kWh per
Wh and a flat 0.50 per stay everywhere; 19 % tax on the net subtotal, rounded half-up to cents.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from cloud.payments.domain import EstimateQuery
from cloud.payments.service import PaymentService
from tests.support.identity import PRINCIPALS
from tests.unit.cloud.payments.conftest import ADMIN, T0, tariff


async def test_energy_and_the_flat_fee_in_an_ev_bay(payments: PaymentService) -> None:
    await payments.change_rates(ADMIN, "site-1", tariff())
    answer = await payments.estimate(PRINCIPALS["driver_a"], "site-1", EstimateQuery(
        bay_type="ev", power_class="ac", arrive=T0, leave=T0 + timedelta(hours=2), energy_kwh=Decimal(10)))
    # 10 kWh x 0.35 = 3.50, + 0.50 = 4.00 net; tax 0.76; no parking time outside regular bays
    assert (answer.subtotal, answer.tax, answer.total) == (Decimal("4.00"), Decimal("0.76"), Decimal("4.76"))
    assert {line.type: line.amount for line in answer.lines if line.type != "tax"} == {
        "energy": Decimal("3.50"), "flat": Decimal("0.50")}


async def test_parking_only_in_a_regular_bay_with_steps_and_half_up_tax(payments: PaymentService) -> None:
    await payments.change_rates(ADMIN, "site-1", tariff())
    answer = await payments.estimate(PRINCIPALS["driver_a"], "site-1", EstimateQuery(
        bay_type="regular", power_class="ac", arrive=T0, leave=T0 + timedelta(minutes=80), energy_kwh=Decimal(0)))
    # 80 min → 6 quarter hours = 1.5 h x 2.00 = 3.00, + 0.50 = 3.50 net; tax 0.665 → 0.67
    assert (answer.subtotal, answer.tax, answer.total) == (Decimal("3.50"), Decimal("0.67"), Decimal("4.17"))
    assert {line.type: line.amount for line in answer.lines if line.type != "tax"} == {
        "parking_time": Decimal("3.00"), "flat": Decimal("0.50")}


async def test_a_minimum_price_lifts_a_short_stay(payments: PaymentService) -> None:
    await payments.change_rates(ADMIN, "site-1", tariff(min_price="5.00"))
    answer = await payments.estimate(ADMIN, "site-1", EstimateQuery(
        bay_type="ev", power_class="dc", arrive=T0, leave=T0 + timedelta(minutes=20), energy_kwh=Decimal(1)))
    # 0.35 + 0.50 = 0.85 net, lifted to the minimum 5.00; tax 0.95
    assert (answer.subtotal, answer.tax, answer.total) == (Decimal("5.00"), Decimal("0.95"), Decimal("5.95"))
