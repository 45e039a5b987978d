"""The payment service: each site's tariff (``billing_rates``) and the price estimate of a stay,
priced by the one engine (:mod:`cloud.pricing`); stays and sessions billed automatically,
invoices and credit notes numbered per site without gaps, payments, refunds, wallets."""

from pathlib import Path

from cloud.contracts.charging import ChargingCompleted
from cloud.contracts.parking import Arrived, Released
from cloud.contracts.payments import (
    CreditNoteIssued,
    InvoiceIssued,
    PaymentCompleted,
    PaymentFailed,
    PaymentRefunded,
    TariffChanged,
)
from cloud.platform.spec import ServiceSpec

SPEC = ServiceSpec(
    name="payments",
    port=8105,
    app="cloud.payments.app:build_app",
    description="Tariffs per site (OCPI-style: energy, time, parking, flat and idle fees) and the price "
                "estimate of a stay, from the one pricing engine; automatic billing, invoices, credit notes, "
                "payments, refunds and wallets.",
    prefixes=("/billing", "/payments", "/invoices"),
    migrations=Path(__file__).parent / "migrations",
    publishes=(TariffChanged, PaymentCompleted, PaymentFailed, PaymentRefunded, InvoiceIssued, CreditNoteIssued),
    consumes=(Released, Arrived, ChargingCompleted),
)
