"""parking: bay type and charger from the site inventory; charger stations

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("bays") as batch:
        batch.add_column(sa.Column("type", sa.String(16)))
        batch.add_column(sa.Column("charger_id", sa.String(64)))
        batch.add_column(sa.Column("connector_id", sa.Integer))
        batch.add_column(sa.Column("in_service", sa.Boolean, nullable=False, server_default=sa.true()))
    op.create_table(
        "charger_stations",
        sa.Column("site_id", sa.String(64), primary_key=True),
        sa.Column("charger_id", sa.String(64), primary_key=True),
        sa.Column("connectors", sa.Integer, nullable=False),
        sa.Column("max_power_w", sa.Integer),
        sa.Column("in_service", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("charger_stations")
    with op.batch_alter_table("bays") as batch:
        for column in ("in_service", "connector_id", "charger_id", "type"):
            batch.drop_column(column)
