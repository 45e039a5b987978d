"""parking: parked messages record their consumer and attempts, and can be replayed

Revision ID: 0004
Revises: 0003
"""

from alembic import op

from cloud.platform.tables import upgrade_platform_tables

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    upgrade_platform_tables(op.get_bind(), "parking")


def downgrade() -> None:
    pass  # the columns are harmless to an older version
