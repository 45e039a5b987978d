"""charging: sessions, vehicle idTags, platform tables

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from cloud.platform.tables import create_platform_tables, drop_platform_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_platform_tables(op.get_bind())
    op.create_table(
        "charging_sessions",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("site_id", sa.String(64), nullable=False, index=True),
        sa.Column("transaction_id", sa.Integer, nullable=False),
        sa.Column("charger_id", sa.String(64), nullable=False),
        sa.Column("connector_id", sa.Integer),
        sa.Column("id_tag", sa.String(20), index=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("stopped_at", sa.DateTime(timezone=True)),
        sa.Column("meter_start_wh", sa.BigInteger),
        sa.Column("meter_stop_wh", sa.BigInteger),
        sa.Column("meter_last_wh", sa.BigInteger),
        sa.Column("energy_wh", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("stop_reason", sa.String(32)),
        sa.Column("clock_suspect", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("reconciled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("site_id", "transaction_id", name="uq_session_site_tx"),
    )
    op.create_table(
        "vehicle_id_tags",
        sa.Column("id_tag", sa.String(20), primary_key=True),
        sa.Column("vehicle_id", sa.String(36), nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("vehicle_id_tags")
    op.drop_table("charging_sessions")
    drop_platform_tables(op.get_bind())
