"""parking: the uplink streams of end-to-end delivery (what arrived of each site's categories, the gaps asked for)

Revision ID: 0006
Revises: 0005
"""

from alembic import op

from cloud.platform.tables import upgrade_platform_tables

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    upgrade_platform_tables(op.get_bind(), "parking")  # creates uplink_streams (cloud/platform/delivery.py)


def downgrade() -> None:
    op.drop_table("uplink_streams")
