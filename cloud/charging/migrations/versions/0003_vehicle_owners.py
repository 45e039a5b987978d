"""charging: the vehicle → owner projection (vehicle.registered 1.1)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "vehicle_owners",
        sa.Column("vehicle_id", sa.String(36), primary_key=True),
        sa.Column("owner_id", sa.String(255)),
    )


def downgrade() -> None:
    op.drop_table("vehicle_owners")
