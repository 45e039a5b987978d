"""payments: automatic billing, invoices and credit notes (gap-free numbers per site), payments,
transactions, refunds, payment methods, wallets, idempotency keys, site billing settings

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

TZ = sa.DateTime(timezone=True)


def _money(name: str, default: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.BigInteger, nullable=False, server_default="0" if default else None)


def upgrade() -> None:
    op.create_table(
        "billing_stays",
        sa.Column("stay_id", sa.String(64), primary_key=True),
        sa.Column("site_id", sa.String(64), nullable=False, index=True),
        sa.Column("charger_id", sa.String(64)),
        sa.Column("connector_id", sa.Integer),
        sa.Column("owner_id", sa.String(64)),
        sa.Column("released", sa.Boolean, nullable=False),
        sa.Column("facts", sa.JSON, nullable=False),
        sa.Column("invoice_id", sa.String(36)),
        sa.Column("outcome", sa.String(32)),
    )
    op.create_table(
        "billing_sessions",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("site_id", sa.String(64), nullable=False, index=True),
        sa.Column("charger_id", sa.String(64), nullable=False),
        sa.Column("connector_id", sa.Integer),
        sa.Column("owner_id", sa.String(64)),
        sa.Column("facts", sa.JSON, nullable=False),
        sa.Column("completed_at", TZ, nullable=False),
        sa.Column("stay_id", sa.String(64)),
        sa.Column("invoice_id", sa.String(36)),
        sa.Column("outcome", sa.String(32)),
    )
    op.create_table(
        "billing_stay_sessions",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("stay_id", sa.String(64), nullable=False, index=True),
    )
    op.create_table(
        "document_counters",
        sa.Column("site_id", sa.String(64), primary_key=True),
        sa.Column("series", sa.String(16), primary_key=True),
        sa.Column("last", sa.Integer, nullable=False),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("site_id", sa.String(64), nullable=False, index=True),
        sa.Column("account_id", sa.String(64), nullable=False, index=True),
        sa.Column("number", sa.String(96), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("stay_id", sa.String(64), unique=True),
        sa.Column("session_id", sa.String(64), unique=True),
        sa.Column("payment_id", sa.String(36), unique=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("tariff_version", sa.Integer),
        sa.Column("document", sa.JSON, nullable=False),
        _money("net_minor"), _money("tax_minor"), _money("total_minor"), _money("paid_minor", True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("issued_at", TZ, nullable=False),
        sa.UniqueConstraint("site_id", "number", name="uq_invoices_site_number"),
    )
    op.create_table(
        "credit_notes",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("site_id", sa.String(64), nullable=False, index=True),
        sa.Column("account_id", sa.String(64), nullable=False, index=True),
        sa.Column("invoice_id", sa.String(36), nullable=False, index=True),
        sa.Column("refund_id", sa.String(36)),
        sa.Column("number", sa.String(96), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        _money("net_minor"), _money("tax_minor"), _money("total_minor"),
        sa.Column("issued_at", TZ, nullable=False),
        sa.UniqueConstraint("site_id", "number", name="uq_credit_notes_site_number"),
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(64), nullable=False, index=True),
        sa.Column("site_id", sa.String(64)),
        sa.Column("invoice_id", sa.String(36), index=True),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("method_id", sa.String(36)),
        sa.Column("currency", sa.String(3), nullable=False),
        _money("amount_minor"), _money("refunded_minor", True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64)),
        sa.Column("description", sa.String(500)),
        sa.Column("provider_ref", sa.String(128)),
        sa.Column("created_at", TZ, nullable=False),
        sa.CheckConstraint("refunded_minor <= amount_minor", name="ck_payments_refund_within_amount"),
    )
    op.create_table(
        "transactions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(64), nullable=False, index=True),
        sa.Column("payment_id", sa.String(36), index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        _money("amount_minor"),
        sa.Column("provider_ref", sa.String(128)),
        sa.Column("at", TZ, nullable=False),
    )
    op.create_table(
        "refunds",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("payment_id", sa.String(36), nullable=False, index=True),
        sa.Column("account_id", sa.String(64), nullable=False, index=True),
        sa.Column("currency", sa.String(3), nullable=False),
        _money("amount_minor"),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("credit_note_id", sa.String(36)),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "payment_methods",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(64), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("brand", sa.String(32)),
        sa.Column("last4", sa.String(4)),
        sa.Column("provider_token", sa.String(128)),
        sa.Column("is_default", sa.Boolean, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "wallets",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("currency", sa.String(3), primary_key=True),
        _money("balance_minor", True),
        sa.CheckConstraint("balance_minor >= 0", name="ck_wallets_never_negative"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("route", sa.String(64), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("response", sa.JSON),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "billing_site_settings",
        sa.Column("site_id", sa.String(64), primary_key=True),
        sa.Column("refuse_when_in_debt", sa.Boolean, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )


def downgrade() -> None:
    for table in ("billing_site_settings", "idempotency_keys", "wallets", "payment_methods", "refunds",
                  "transactions", "payments", "credit_notes", "invoices", "document_counters",
                  "billing_stay_sessions", "billing_sessions", "billing_stays"):
        op.drop_table(table)
