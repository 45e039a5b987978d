"""Events of the payment domain, on the ``payment.events`` exchange.

The tariff travels whole, as JSON (``cloud.pricing.Tariff.model_dump(mode="json")``: money as
decimal strings), so that this package needs nothing of the pricing engine; a consumer that
prices with it reads the tariff back with ``Tariff.model_validate(event.tariff)``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, Field

from cloud.contracts.base import EventBody, event


@event("payment.tariff_changed", "1.0", "A site's tariff was set or changed; the event carries the whole tariff.")
class TariffChanged(EventBody):
    site_id: str = Field(description="the site whose tariff changed")
    currency: str = Field(description="ISO 4217 code of the tariff's prices, e.g. EUR")
    version: int = Field(ge=1, description="the site's tariff version: 1 for its first tariff, one more per change")
    changed_at: AwareDatetime = Field(description="when this version was set")
    tariff: dict[str, Any] = Field(description="the whole tariff as GET /billing/rates/{site_id} answers it "
                                   "(cloud.pricing.Tariff in JSON; amounts as decimal strings)")


Money = Decimal
"""An amount in the currency named beside it; on the wire a decimal string."""


class PaymentFacts(EventBody):
    payment_id: str
    account_id: str = Field(description="the account that pays")
    site_id: str | None = None
    amount: Money = Field(description="the amount of the payment (tax included)")
    currency: str
    invoice_id: str | None = None
    stay_id: str | None = None
    method: Literal["wallet", "card"] | None = None


@event("payment.completed", "1.0", "A payment was captured.")
class PaymentCompleted(PaymentFacts):
    completed_at: AwareDatetime


@event("payment.failed", "1.1", "A payment failed (declined, insufficient funds, provider timeout); its invoice "
       "stays due.")
class PaymentFailed(PaymentFacts):
    """1.1 added ``refuse_driver``."""

    reason: str = Field(description="declined, insufficient_funds, provider_timeout, no_method, ...")
    failed_at: AwareDatetime
    refuse_driver: bool = Field(default=False, description=(
        "the site refuses this account new reservations and remote starts until the invoice is paid "
        "(payment.completed with the same invoice_id); the site's billing setting (since 1.1)"))


@event("payment.refunded", "1.0", "Part or all of a payment was refunded, with a credit note.")
class PaymentRefunded(EventBody):
    refund_id: str
    payment_id: str
    account_id: str
    site_id: str | None = None
    amount: Money
    currency: str
    credit_note_id: str
    credit_note_number: str
    reason: str
    refunded_at: AwareDatetime


class DocumentFacts(EventBody):
    """An invoice or a credit note as finalised (numbered), with its amounts per component."""

    site_id: str
    account_id: str
    currency: str
    number: str = Field(description="the gap-free number of the site's series")
    issued_at: AwareDatetime
    components: dict[str, Money] = Field(description="net amount per component: parking, energy, charging_time, "
                                         "idle, session_fee, adjustment ... (an analytics breakdown)")
    net: Money
    tax: Money
    total: Money


@event("payment.invoice_issued", "1.0", "An invoice was finalised (numbered); it never changes afterwards.")
class InvoiceIssued(DocumentFacts):
    invoice_id: str
    stay_id: str | None = None
    session_ids: list[str] = Field(default_factory=list)


@event("payment.credit_note_issued", "1.0", "A credit note (a correction or refund of an invoice) was finalised.")
class CreditNoteIssued(DocumentFacts):
    credit_note_id: str
    invoice_id: str
    refund_id: str | None = None
