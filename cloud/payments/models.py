"""Tables of the payment service (its own database)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from cloud.platform.types import UtcDateTime


class BillingRate(SQLModel, table=True):
    """The tariff a site charges now (``cloud.pricing.Tariff`` as JSON, amounts as decimal strings)."""

    __tablename__ = "billing_rates"

    site_id: str = Field(primary_key=True, max_length=64)
    tariff: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    version: int = Field(description="1 for the site's first tariff, one more per change")
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    updated_by: str = Field(max_length=255, description="the account (sub) that set this version")


# --- billing: stays and sessions awaiting their invoice ------------------------------------------
# Money is stored as an integer count of the currency's minor unit (cents): exact and atomic to add
# to in SQL on both SQLite and PostgreSQL; the domain reads it back as a Decimal.


class BillingStay(SQLModel, table=True):
    """A stay that ended (``parking.released``), or one still open (``parking.arrived``, so that a
    session on its charger waits for it); billed once every session it lists has completed."""

    __tablename__ = "billing_stays"

    stay_id: str = Field(primary_key=True, max_length=64)
    site_id: str = Field(max_length=64, index=True)
    charger_id: str | None = Field(default=None, max_length=64)
    connector_id: int | None = None
    owner_id: str | None = Field(default=None, max_length=64)
    released: bool = False
    facts: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    invoice_id: str | None = Field(default=None, max_length=36)
    outcome: str | None = Field(default=None, max_length=32, description="invoiced, unattributed, no_tariff, free")


class BillingSession(SQLModel, table=True):
    """A completed charging session (``charging.completed``), waiting for its stay or billed alone."""

    __tablename__ = "billing_sessions"

    session_id: str = Field(primary_key=True, max_length=64)
    site_id: str = Field(max_length=64, index=True)
    charger_id: str = Field(max_length=64)
    connector_id: int | None = None
    owner_id: str | None = Field(default=None, max_length=64)
    facts: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    completed_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False),
                                   description="when its charging.completed arrived here")
    stay_id: str | None = Field(default=None, max_length=64, description="the stay that lists it")
    invoice_id: str | None = Field(default=None, max_length=36)
    outcome: str | None = Field(default=None, max_length=32)


class StaySession(SQLModel, table=True):
    """Which stay listed a session (``parking.released``'s ``session_ids``)."""

    __tablename__ = "billing_stay_sessions"

    session_id: str = Field(primary_key=True, max_length=64)
    stay_id: str = Field(max_length=64, index=True)


# --- documents ----------------------------------------------------------------------------------


class DocumentCounter(SQLModel, table=True):
    """The last number given in a site's series (``invoice`` or ``credit_note``)."""

    __tablename__ = "document_counters"

    site_id: str = Field(primary_key=True, max_length=64)
    series: str = Field(primary_key=True, max_length=16)
    last: int = 0


class InvoiceRow(SQLModel, table=True):
    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("site_id", "number", name="uq_invoices_site_number"),)

    id: str = Field(primary_key=True, max_length=36)
    site_id: str = Field(max_length=64, index=True)
    account_id: str = Field(max_length=64, index=True)
    number: str = Field(max_length=96)
    sequence: int
    stay_id: str | None = Field(default=None, max_length=64, unique=True)
    session_id: str | None = Field(default=None, max_length=64, unique=True)
    payment_id: str | None = Field(default=None, max_length=36, unique=True, description="an ad-hoc charge's")
    currency: str = Field(max_length=3)
    tariff_version: int | None = None
    document: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False), description="lines, periods, facts")
    net_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    tax_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    total_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    paid_minor: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    status: str = Field(max_length=16, description="due or paid")
    issued_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class CreditNoteRow(SQLModel, table=True):
    __tablename__ = "credit_notes"
    __table_args__ = (UniqueConstraint("site_id", "number", name="uq_credit_notes_site_number"),)

    id: str = Field(primary_key=True, max_length=36)
    site_id: str = Field(max_length=64, index=True)
    account_id: str = Field(max_length=64, index=True)
    invoice_id: str = Field(max_length=36, index=True)
    refund_id: str | None = Field(default=None, max_length=36)
    number: str = Field(max_length=96)
    sequence: int
    currency: str = Field(max_length=3)
    reason: str = Field(max_length=500)
    net_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    tax_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    total_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    issued_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


# --- money movements ----------------------------------------------------------------------------


class PaymentRow(SQLModel, table=True):
    __tablename__ = "payments"
    __table_args__ = (CheckConstraint("refunded_minor <= amount_minor", name="ck_payments_refund_within_amount"),)

    id: str = Field(primary_key=True, max_length=36)
    account_id: str = Field(max_length=64, index=True)
    site_id: str | None = Field(default=None, max_length=64)
    invoice_id: str | None = Field(default=None, max_length=36, index=True)
    method: str = Field(max_length=16, description="wallet or card")
    method_id: str | None = Field(default=None, max_length=36)
    currency: str = Field(max_length=3)
    amount_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    refunded_minor: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    status: str = Field(max_length=16, description="completed or failed")
    reason: str | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=500)
    provider_ref: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class TransactionRow(SQLModel, table=True):
    """Every money movement: authorise, capture, refund, top_up, wallet_debit, wallet_credit."""

    __tablename__ = "transactions"

    id: str = Field(primary_key=True, max_length=36)
    account_id: str = Field(max_length=64, index=True)
    payment_id: str | None = Field(default=None, max_length=36, index=True)
    kind: str = Field(max_length=16)
    method: str = Field(max_length=16)
    currency: str = Field(max_length=3)
    amount_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    provider_ref: str | None = Field(default=None, max_length=128)
    at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class RefundRow(SQLModel, table=True):
    __tablename__ = "refunds"

    id: str = Field(primary_key=True, max_length=36)
    payment_id: str = Field(max_length=36, index=True)
    account_id: str = Field(max_length=64, index=True)
    currency: str = Field(max_length=3)
    amount_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    reason: str = Field(max_length=500)
    credit_note_id: str | None = Field(default=None, max_length=36)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class PaymentMethodRow(SQLModel, table=True):
    __tablename__ = "payment_methods"

    id: str = Field(primary_key=True, max_length=36)
    account_id: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=16, description="card or wallet")
    brand: str | None = Field(default=None, max_length=32)
    last4: str | None = Field(default=None, max_length=4)
    provider_token: str | None = Field(default=None, max_length=128, description="the provider's token, never a PAN")
    is_default: bool = False
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class WalletRow(SQLModel, table=True):
    __tablename__ = "wallets"
    __table_args__ = (CheckConstraint("balance_minor >= 0", name="ck_wallets_never_negative"),)

    account_id: str = Field(primary_key=True, max_length=64)
    currency: str = Field(primary_key=True, max_length=3)
    balance_minor: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class IdempotencyRecord(SQLModel, table=True):
    """The first answer to a request with an ``Idempotency-Key``, replayed for 24 h."""

    __tablename__ = "idempotency_keys"

    account_id: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=255)
    route: str = Field(max_length=64)
    request_hash: str = Field(max_length=64)
    state: str = Field(max_length=16, description="in_flight or done")
    status_code: int | None = None
    response: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class SiteBillingSettings(SQLModel, table=True):
    __tablename__ = "billing_site_settings"

    site_id: str = Field(primary_key=True, max_length=64)
    refuse_when_in_debt: bool = False
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
