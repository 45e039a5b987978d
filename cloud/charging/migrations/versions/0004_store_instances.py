"""charging: sessions keyed by (site, store instance, charger, transaction); anomalies

Existing sessions keep their ids and move to the store "legacy" (edges before store ids).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("charging_sessions") as batch:
        batch.add_column(sa.Column("store_id", sa.String(64), nullable=False, server_default="legacy"))
        batch.add_column(sa.Column("closed_by", sa.String(16)))
        batch.drop_constraint("uq_session_site_tx", type_="unique")
        batch.create_unique_constraint("uq_session_key", ["site_id", "store_id", "charger_id", "transaction_id"])
    op.execute("UPDATE charging_sessions SET closed_by = 'stop' WHERE status = 'completed'")
    op.create_index("ix_charging_sessions_open", "charging_sessions", ["site_id", "store_id", "status"])
    op.create_table(
        "charging_anomalies",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("site_id", sa.String(64), nullable=False, index=True),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("charger_id", sa.String(64), nullable=False),
        sa.Column("transaction_id", sa.BigInteger),
        sa.Column("session_id", sa.String(100)),
        sa.Column("detail", sa.String(500), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("charging_anomalies")
    op.drop_index("ix_charging_sessions_open", "charging_sessions")
    with op.batch_alter_table("charging_sessions") as batch:
        batch.drop_constraint("uq_session_key", type_="unique")
        batch.create_unique_constraint("uq_session_site_tx", ["site_id", "transaction_id"])
        batch.drop_column("closed_by")
        batch.drop_column("store_id")
