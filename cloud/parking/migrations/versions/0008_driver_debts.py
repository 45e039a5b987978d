"""parking: the driver-debt projection (payment.failed / payment.completed per invoice)

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from cloud.platform.types import UtcDateTime

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.create_table(
        "parking_debts",
        sa.Column("invoice_id", sa.String(64), primary_key=True),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(64), nullable=True),
        sa.Column("amount", sa.String(32), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("refuse", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("failed_at", UtcDateTime(), nullable=True),
        sa.Column("paid_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_parking_debts_account_site", "parking_debts", ["account_id", "site_id"])


def downgrade() -> None:
    op.drop_index("ix_parking_debts_account_site", table_name="parking_debts")
    op.drop_table("parking_debts")
