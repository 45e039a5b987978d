"""What the payment use cases return and its REST API answers: a site's tariff with its version,
and the estimate of a stay. Money is a decimal string in JSON, never a float."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, Field, PlainSerializer

from cloud.payments.domain import EstimateQuery, SiteTariff
from cloud.pricing import Invoice, InvoiceLine, Tariff

Money = Annotated[Decimal, PlainSerializer(str, return_type=str, when_used="json")]
"""An exact decimal, written as a string in JSON (``"12.34"``)."""


class RatesOut(BaseModel):
    site_id: str
    version: int = Field(description="1 for the site's first tariff, one more per change")
    updated_at: datetime
    updated_by: str | None = Field(description="the account that set this version (for admins and the site's "
                                   "operators and technicians; null for drivers)")
    tariff: Tariff

    @classmethod
    def of(cls, rates: SiteTariff, *, show_who: bool) -> RatesOut:
        return cls(site_id=rates.site_id, version=rates.version, updated_at=rates.updated_at,
                   updated_by=rates.updated_by if show_who else None, tariff=rates.tariff)


class EstimateLineOut(BaseModel):
    type: str = Field(description="energy, charging_time, parking_time, flat, idle, minimum, maximum or tax")
    description: str
    quantity: Money = Field(description="kWh, minutes, hours or 1, after steps")
    unit: str
    unit_price: Money
    amount: Money = Field(description="rounded once, half-up to the currency's minor unit")
    period_start: datetime | None
    period_end: datetime | None

    @classmethod
    def of(cls, line: InvoiceLine) -> EstimateLineOut:
        return cls(type=line.type, description=line.description, quantity=line.quantity, unit=line.unit,
                   unit_price=line.unit_price, amount=line.amount, period_start=line.period_start,
                   period_end=line.period_end)


class EstimateOut(BaseModel):
    site_id: str
    tariff_version: int = Field(description="the version of the site's tariff that priced the stay")
    currency: str
    bay_type: str
    power_class: str
    arrive: datetime
    leave: datetime
    energy_kwh: Money
    lines: list[EstimateLineOut]
    subtotal: Money = Field(description="net: the sum of the lines before tax")
    tax: Money
    total: Money = Field(description="subtotal + tax")

    @classmethod
    def of(cls, rates: SiteTariff, query: EstimateQuery, invoice: Invoice) -> EstimateOut:
        return cls(site_id=rates.site_id, tariff_version=rates.version, currency=invoice.currency,
                   bay_type=query.bay_type, power_class=query.power_class, arrive=query.arrive, leave=query.leave,
                   energy_kwh=query.energy_kwh, lines=[EstimateLineOut.of(line) for line in invoice.lines],
                   subtotal=invoice.subtotal, tax=invoice.tax, total=invoice.total)
