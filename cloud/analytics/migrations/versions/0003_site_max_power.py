"""analytics: a site's chargers' maximum power together (parking.inventory_changed 1.1)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    # Sites known before keep NULL (not known: energy utilisation stays null) until their next inventory.
    op.add_column("analytics_sites", sa.Column("max_power_w", sa.BigInteger))


def downgrade() -> None:
    op.drop_column("analytics_sites", "max_power_w")
