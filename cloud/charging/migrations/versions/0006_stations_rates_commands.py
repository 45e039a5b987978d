"""charging: live session figures, history, charger stations, the tariff read model, remote commands

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from cloud.platform.types import UtcDateTime

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    with op.batch_alter_table("charging_sessions") as batch:
        batch.add_column(sa.Column("power_w", sa.Float(), nullable=True))
        batch.add_column(sa.Column("sampled_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("low_power_since", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("energy_finished_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("meter_backwards", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("power_class", sa.String(2), nullable=True))
    op.create_table(
        "charging_history",
        sa.Column("session_id", sa.String(100), primary_key=True),
        sa.Column("site_id", sa.String(64), nullable=False, index=True),
        sa.Column("charger_id", sa.String(64), nullable=False),
        sa.Column("connector_id", sa.Integer(), nullable=True),
        sa.Column("vehicle_id", sa.String(36), nullable=True, index=True),
        sa.Column("started_at", UtcDateTime(), nullable=True),
        sa.Column("stopped_at", UtcDateTime(), nullable=True),
        sa.Column("duration_s", sa.Integer(), nullable=True),
        sa.Column("energy_wh", sa.BigInteger(), nullable=False),
        sa.Column("meter_start_wh", sa.BigInteger(), nullable=True),
        sa.Column("meter_stop_wh", sa.BigInteger(), nullable=True),
        sa.Column("stop_reason", sa.String(32), nullable=True),
        sa.Column("energy_finished_at", UtcDateTime(), nullable=True),
        sa.Column("power_class", sa.String(2), nullable=True),
        sa.Column("meter_backwards", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("closed_by", sa.String(16), nullable=True),
    )
    op.create_table(
        "charging_stations",
        sa.Column("site_id", sa.String(64), primary_key=True),
        sa.Column("charger_id", sa.String(64), primary_key=True),
        sa.Column("connector_id", sa.Integer(), primary_key=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("info", sa.String(255), nullable=True),
        sa.Column("status_at", UtcDateTime(), nullable=True),
        sa.Column("profile_limit", sa.Float(), nullable=True),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("online_since", UtcDateTime(), nullable=True),
        sa.Column("max_power_w", sa.BigInteger(), nullable=True),
        sa.Column("connector_count", sa.Integer(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "charging_rates",
        sa.Column("site_id", sa.String(64), primary_key=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("changed_at", UtcDateTime(), nullable=False),
        sa.Column("tariff", sa.Text(), nullable=False),
    )
    op.create_table(
        "charging_commands",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("site_id", sa.String(64), nullable=False, index=True),
        sa.Column("charger_id", sa.String(64), nullable=False),
        sa.Column("connector_id", sa.Integer(), nullable=True),
        sa.Column("type", sa.String(48), nullable=False),
        sa.Column("vehicle_id", sa.String(36), nullable=True),
        sa.Column("owner_id", sa.String(255), nullable=True),
        sa.Column("id_tag", sa.String(20), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(1000), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("issued_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("answered_at", UtcDateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("charging_commands")
    op.drop_table("charging_rates")
    op.drop_table("charging_stations")
    op.drop_table("charging_history")
    with op.batch_alter_table("charging_sessions") as batch:
        for column in ("power_class", "meter_backwards", "energy_finished_at", "low_power_since", "sampled_at",
                       "power_w"):
            batch.drop_column(column)
