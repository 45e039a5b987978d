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


# --- billing -------------------------------------------------------------------------------------


class InvoiceLineOut(BaseModel):
    type: str = Field(description="parking_time, energy, charging_time, idle, flat, minimum, maximum, charge or tax")
    description: str
    quantity: Money
    unit: str
    unit_price: Money
    amount: Money = Field(description="rounded once, half-up to the currency's minor unit")
    period_start: datetime | None = None
    period_end: datetime | None = None


class InvoiceOut(BaseModel):
    id: str
    number: str = Field(description="gap-free within the site's series, given when the invoice was finalised")
    site_id: str
    account_id: str
    stay_id: str | None
    session_ids: list[str]
    payment_id: str | None
    bay_id: str | None
    arrived_at: datetime | None
    departed_at: datetime | None
    currency: str
    tariff_version: int | None = Field(description="the version of the site's tariff that priced it")
    lines: list[InvoiceLineOut]
    net: Money
    tax: Money
    total: Money
    paid: Money
    amount_due: Money
    status: str = Field(description="due or paid")
    issued_at: datetime


class CreditNoteOut(BaseModel):
    id: str
    number: str = Field(description="gap-free within the site's credit-note series")
    invoice_id: str
    site_id: str
    refund_id: str | None
    currency: str
    reason: str
    net: Money
    tax: Money
    total: Money
    issued_at: datetime


class PaymentOut(BaseModel):
    id: str
    account_id: str
    site_id: str | None
    invoice_id: str | None
    method: str = Field(description="wallet or card")
    currency: str
    amount: Money
    refunded: Money
    status: str = Field(description="completed or failed")
    reason: str | None = Field(description="why it failed: declined, insufficient_funds, provider_timeout")
    description: str | None
    created_at: datetime


class RefundOut(BaseModel):
    id: str
    payment_id: str
    currency: str
    amount: Money
    reason: str
    created_at: datetime
    credit_note: CreditNoteOut | None = None


class HistoryOut(BaseModel):
    account_id: str
    payments: list[PaymentOut]
    refunds: list[RefundOut]
    invoices: list[InvoiceOut]
    credit_notes: list[CreditNoteOut]


class BalanceOut(BaseModel):
    currency: str
    balance: Money


class WalletOut(BaseModel):
    account_id: str
    balances: list[BalanceOut]
    paid_invoices: list[str] = Field(default_factory=list, description="due invoices this top-up paid")


class MethodOut(BaseModel):
    id: str
    kind: str = Field(description="card or wallet")
    brand: str | None
    last4: str | None
    is_default: bool
    created_at: datetime


class MethodsOut(BaseModel):
    methods: list[MethodOut]


class DueOut(BaseModel):
    invoice_id: str
    number: str
    site_id: str
    account_id: str
    currency: str
    amount_due: Money
    issued_at: datetime


class DebtOut(BaseModel):
    account_id: str
    site_id: str | None
    in_debt: bool
    refused: bool = Field(description="the site refuses this driver new reservations and remote starts until paid "
                          "(only with site_id: the site's setting and a due invoice at it)")
    due: list[DueOut]


class SiteDebtsOut(BaseModel):
    site_id: str
    due: list[DueOut]


class SiteSettingsOut(BaseModel):
    site_id: str
    refuse_when_in_debt: bool = Field(description="refuse drivers with a due invoice at this site new reservations "
                                      "and remote starts")
