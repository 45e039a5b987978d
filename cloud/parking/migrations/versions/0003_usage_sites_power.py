"""parking: bay usage (idle/overstay), parking_sites (inventory power settings, uplink drops, power limit)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

BAY_COLUMNS = ("usage_reported_at", "usage_transaction_id", "usage_since", "usage")


def upgrade() -> None:
    with op.batch_alter_table("bays") as batch:
        batch.add_column(sa.Column("usage", sa.String(16)))
        batch.add_column(sa.Column("usage_since", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("usage_transaction_id", sa.Integer))
        batch.add_column(sa.Column("usage_reported_at", sa.DateTime(timezone=True)))
    op.create_table(
        "parking_sites",
        sa.Column("site_id", sa.String(64), primary_key=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True)),
        sa.Column("inventory_at", sa.DateTime(timezone=True)),
        sa.Column("power_limit_a", sa.Float),
        sa.Column("phases", sa.Integer),
        sa.Column("voltage", sa.Float),
        sa.Column("dropped_total", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("last_drop_at", sa.DateTime(timezone=True)),
        sa.Column("last_drop_policy", sa.String(32)),
        sa.Column("last_drop_dropped", sa.Integer),
        sa.Column("last_drop_by_type", sa.JSON),
        sa.Column("last_drop_first_seq", sa.BigInteger),
        sa.Column("last_drop_last_seq", sa.BigInteger),
        sa.Column("last_drop_backlog", sa.BigInteger),
        sa.Column("last_drop_backlog_bytes", sa.BigInteger),
        sa.Column("power_requested_a", sa.Float),
        sa.Column("power_requested_w", sa.Float),
        sa.Column("power_requested_at", sa.DateTime(timezone=True)),
        sa.Column("power_status", sa.String(16)),
        sa.Column("power_detail", sa.String(500)),
        sa.Column("power_command_id", sa.String(36)),
        sa.Column("power_command_issued_at", sa.DateTime(timezone=True)),
        sa.Column("power_command_expires_at", sa.DateTime(timezone=True)),
        sa.Column("power_command_sent_at", sa.DateTime(timezone=True)),
        sa.Column("power_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("power_next_send_at", sa.DateTime(timezone=True)),
        sa.Column("power_settled_at", sa.DateTime(timezone=True)),
        sa.Column("power_applied_a", sa.Float),
        sa.Column("power_applied_at", sa.DateTime(timezone=True)),
        sa.Column("power_applied_source", sa.String(16)),
    )
    op.create_index("ix_parking_sites_power_status", "parking_sites", ["power_status"])
    # Every site known so far (from its bays or chargers) gets its row, so it answers at once.
    op.execute("INSERT INTO parking_sites (site_id, dropped_total, power_attempts) "
               "SELECT site_id, 0, 0 FROM bays UNION SELECT site_id, 0, 0 FROM charger_stations")


def downgrade() -> None:
    op.drop_index("ix_parking_sites_power_status", table_name="parking_sites")
    op.drop_table("parking_sites")
    with op.batch_alter_table("bays") as batch:
        for column in BAY_COLUMNS:
            batch.drop_column(column)
